"""The arm virt machine's PSCI power states in a snapshot: what is off comes back off, a
CPU_ON not yet taken comes back pending with its entry, and a bad saved table is refused
naming the field."""

import json

import pytest

from axvm.machines.arm.machine import ArmVirtMachine
from axvm.machines.arm.power import CpuPower, StartRequest
from axvm.machines.arm.psci import AffinityState, Fn

SMC64 = 0x4000_0000


def _saved(power: CpuPower) -> dict[str, object]:
    return json.loads(json.dumps(power.saved()))  # what machine.json holds


def test_off_and_pending_cpus_come_back_as_they_were() -> None:
    first = CpuPower(3)
    first.call(0, Fn.CPU_ON | SMC64, 1, 0x4008_0000, 7)  # vCPU 1 pending, vCPU 2 never started
    second = CpuPower(3)
    second.call(0, Fn.CPU_ON | SMC64, 2, 0x4000_0000, 0)  # a state to be overwritten
    second.restore_saved(_saved(first))
    assert [second.state(cpu) for cpu in range(3)] == [AffinityState.ON, AffinityState.ON_PENDING, AffinityState.OFF]
    assert second.take_start(2) is None  # off: runs nothing until a CPU_ON names it
    assert second.take_start(1) == StartRequest(0x4008_0000, 7)
    assert second.is_on(1)


def test_the_machine_saves_and_restores_its_power_states() -> None:
    machine = ArmVirtMachine()
    machine.power = CpuPower(2)
    saved = json.loads(json.dumps(machine.save_platform_state()))
    assert saved == {"power": {"states": ["ON", "OFF"], "starts": {}}}
    other = ArmVirtMachine()
    other.power = CpuPower(2)
    other.power.call(0, Fn.CPU_ON | SMC64, 1, 0x4000_0000, 0)
    other.restore_platform_state(saved)
    assert not other.power.is_on(1) and other.power.take_start(1) is None


@pytest.mark.parametrize(
    ("saved", "named"),
    [
        ({"states": ["ON"], "starts": {}}, "power.states"),
        ({"states": ["ON", "SLEEPING"], "starts": {}}, "power.states"),
        ({"states": ["ON", "OFF"], "starts": {"1": [0x4000_0000, 0]}}, r"power.starts\['1'\]"),
        ({"states": ["ON", "ON_PENDING"], "starts": {"1": [-1, 0]}}, r"power.starts\['1'\]"),
        ({"states": ["ON", "ON_PENDING"], "starts": []}, "power.starts"),
    ],
)
def test_a_bad_saved_table_is_refused_naming_the_field(saved: dict[str, object], named: str) -> None:
    power = CpuPower(2)
    with pytest.raises(ValueError, match=named):
        power.restore_saved(saved)
    assert power.is_on(0) and not power.is_on(1)  # left as it was
