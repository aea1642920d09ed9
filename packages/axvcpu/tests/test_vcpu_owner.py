"""``VCpu`` is the one owner of "a read is pending" and the one way above axvcpu to a backend's
vCPU: every backend answers a read out of order with the same ``PendingReadError``, and kick,
wait_for_interrupt and close go through ``VCpu``. The two lifecycles share one table helper."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import (
    LEGAL_TRANSITIONS,
    ArchVCpu,
    IllegalTransition,
    IllegalVCpuTransition,
    IoRead,
    Lifecycle,
    MmioRead,
    PendingReadError,
    ScriptedVCpu,
    VCpu,
    VCpuState,
)
from axvcpu.state import VCPU_LIFECYCLE

from . import kvm_programs as prog
from .host_tools import require
from .kvm_guest import CODE, make_guest, require_kvm
from .riscv_asm import PREFIX, RAM_BASE, TOOLS

DEVICE = 0x1000_0000
READ_FIRST = f"""
    li t0, {DEVICE:#x}
    lw a0, 0(t0)
1:  wfi
    j 1b
"""

Made = tuple[ArchVCpu, int, Callable[[], None]]
"""A backend vCPU whose first exit is a read, the entry of its program, and how to release it."""


def scripted() -> Made:
    return ScriptedVCpu([MmioRead(GuestPhysAddr(DEVICE), AccessWidth.DWORD)]), 0, lambda: None


def soft() -> Made:
    require(*(PREFIX + tool for tool in TOOLS), why="install binutils-riscv64-linux-gnu to run the soft backend")
    from .soft_machine import SoftMachine

    machine = SoftMachine(READ_FIRST, mmio_exits=True)
    return machine.vcpu, RAM_BASE, machine.close


def kvm() -> Made:
    require_kvm()
    guest = make_guest(prog.IN_PLUS_ONE)
    return guest.vcpu, CODE, guest.close


BACKENDS = {"scripted": scripted, "soft": soft, "kvm": kvm}


@pytest.fixture(params=sorted(BACKENDS))
def made(request: pytest.FixtureRequest) -> Iterator[Made]:
    made = BACKENDS[request.param]()
    yield made
    made[2]()


def test_every_backend_refuses_a_run_before_the_read_is_answered(made: Made) -> None:
    arch, entry, _ = made
    vcpu = VCpu(0, arch)
    vcpu.setup(GuestPhysAddr(entry))
    vcpu.bind()
    assert isinstance(vcpu.run(), MmioRead | IoRead)
    with pytest.raises(PendingReadError, match="complete_read"):
        vcpu.run()
    vcpu.complete_read(1)
    with pytest.raises(PendingReadError, match="no read"):
        vcpu.complete_read(1)


@pytest.mark.parametrize("backend", ["kvm", "soft"])  # the scripted one keeps no pending read of its own
def test_a_backend_that_checks_itself_raises_the_same_type(backend: str) -> None:
    """Backends need the pending read to answer it, so they check too: with VCpu's error type."""
    arch, _, close = BACKENDS[backend]()
    try:
        with pytest.raises(PendingReadError):
            arch.complete_read(1)  # nothing read yet
    finally:
        close()


def test_the_soft_backend_refuses_a_second_run_with_the_same_type() -> None:
    arch, _, close = soft()
    try:
        assert isinstance(arch.run(), MmioRead)
        with pytest.raises(PendingReadError, match="complete_read"):
            arch.run()
    finally:
        close()


class Recording(ScriptedVCpu):
    def __init__(self) -> None:
        super().__init__([])
        self.calls: list[tuple[str, object]] = []

    def kick(self) -> None:
        self.calls.append(("kick", None))

    def wait_for_interrupt(self, timeout: float) -> bool:
        self.calls.append(("wait_for_interrupt", timeout))
        return True

    def close(self) -> None:
        self.calls.append(("close", None))


def test_kick_wait_and_close_go_to_the_backend() -> None:
    arch = Recording()
    vcpu = VCpu(3, arch)
    vcpu.kick()
    assert vcpu.wait_for_interrupt(0.25) is True
    vcpu.close()
    assert arch.calls == [("kick", None), ("wait_for_interrupt", 0.25), ("close", None)]


def test_wait_for_interrupt_reports_the_backends_timeout() -> None:
    assert VCpu(0, ScriptedVCpu([])).wait_for_interrupt(0.0) is False  # the default waits, then times out


class Light(enum.Enum):
    RED = 0
    GREEN = 1


class IllegalLight(IllegalTransition):
    def __init__(self, where: str, current: Light, wanted: Light) -> None:
        super().__init__(f"light {where}", current, wanted)


def test_one_helper_enforces_any_table_with_its_own_named_error() -> None:
    lights: Lifecycle[str, Light] = Lifecycle({Light.RED: {Light.GREEN}, Light.GREEN: set()}, IllegalLight)
    lights.check("north", Light.RED, Light.GREEN)
    assert lights.allows(Light.RED, Light.GREEN) and not lights.allows(Light.GREEN, Light.RED)
    with pytest.raises(IllegalLight, match="light north: cannot go from GREEN to RED"):
        lights.check("north", Light.GREEN, Light.RED)


def test_the_vcpu_lifecycle_is_that_helper_over_its_table() -> None:
    assert isinstance(VCPU_LIFECYCLE, Lifecycle) and VCPU_LIFECYCLE.table is LEGAL_TRANSITIONS
    with pytest.raises(IllegalVCpuTransition, match="vCPU 7: cannot go from CREATED to RUNNING") as info:
        VCpu(7, ScriptedVCpu([])).run()
    assert isinstance(info.value, IllegalTransition)
    assert info.value.current is VCpuState.CREATED and info.value.wanted is VCpuState.RUNNING
