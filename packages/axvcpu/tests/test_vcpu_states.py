from __future__ import annotations

import itertools

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import (
    LEGAL_TRANSITIONS,
    Halt,
    IllegalVCpuTransition,
    IoRead,
    MmioRead,
    PendingReadError,
    ScriptedVCpu,
    VCpu,
    VCpuState,
    check_transition,
)


def make(script=()) -> tuple[VCpu, ScriptedVCpu]:
    arch = ScriptedVCpu(script)
    return VCpu(0, arch), arch


def test_lifecycle_created_free_ready_running_ready() -> None:
    vcpu, arch = make([Halt()])
    assert vcpu.state is VCpuState.CREATED
    vcpu.setup(GuestPhysAddr(0x1000))
    assert vcpu.state is VCpuState.FREE and arch.entry == 0x1000
    vcpu.bind()
    assert vcpu.state is VCpuState.READY and arch.bound
    assert vcpu.run() == Halt()
    assert vcpu.state is VCpuState.READY
    vcpu.block()
    assert vcpu.state is VCpuState.BLOCKED
    vcpu.unblock()
    vcpu.unbind()
    assert vcpu.state is VCpuState.FREE and not arch.bound


def test_run_before_setup_raises_named_error() -> None:
    vcpu, _ = make([Halt()])
    with pytest.raises(IllegalVCpuTransition, match="CREATED to RUNNING"):
        vcpu.run()
    assert vcpu.state is VCpuState.CREATED


def test_setup_twice_is_illegal_and_does_not_touch_backend() -> None:
    vcpu, arch = make()
    vcpu.setup(GuestPhysAddr(0x1000))
    with pytest.raises(IllegalVCpuTransition):
        vcpu.setup(GuestPhysAddr(0x2000))
    assert arch.entry == 0x1000


@pytest.mark.parametrize("current,wanted", list(itertools.product(VCpuState, VCpuState)))
def test_transition_table_is_enforced(current: VCpuState, wanted: VCpuState) -> None:
    if wanted in LEGAL_TRANSITIONS[current]:
        check_transition(0, current, wanted)
    else:
        with pytest.raises(IllegalVCpuTransition):
            check_transition(0, current, wanted)


def test_invalid_is_terminal() -> None:
    vcpu, _ = make()
    vcpu.invalidate()
    with pytest.raises(IllegalVCpuTransition):
        vcpu.setup(GuestPhysAddr(0))


def test_read_exit_must_be_completed_before_next_run() -> None:
    vcpu, arch = make([MmioRead(GuestPhysAddr(0x1000_0000), AccessWidth.DWORD), IoRead(0x60, AccessWidth.BYTE)])
    vcpu.setup(GuestPhysAddr(0))
    vcpu.bind()
    vcpu.run()
    with pytest.raises(PendingReadError):
        vcpu.run()
    vcpu.complete_read(0xDEAD)
    assert arch.completed_reads == [0xDEAD]
    vcpu.run()
    vcpu.complete_read(1)
    with pytest.raises(PendingReadError):
        vcpu.complete_read(2)


def test_backend_exception_leaves_vcpu_ready() -> None:
    class Boom(ScriptedVCpu):
        def run(self):
            raise OSError("KVM_RUN failed")

    vcpu = VCpu(3, Boom([]))
    vcpu.setup(GuestPhysAddr(0))
    vcpu.bind()
    with pytest.raises(OSError):
        vcpu.run()
    assert vcpu.state is VCpuState.READY
