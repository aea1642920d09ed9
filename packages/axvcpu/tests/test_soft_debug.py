"""The soft riscv hart's debugger: breakpoints (bounded code hooks), single step, watchpoints,
the hold after a stop, and removal (the guest then runs past the old addresses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from axaddrspace import GuestPhysAddr
from axvcpu import Halt, Nothing, VCpu
from axvcpu.backends.debug import attach_debugger
from axvcpu.debug import DebugStop, StopReason, WatchKind

from .riscv_asm import RAM_BASE, requires_riscv_toolchain
from .soft_machine import DATA, SoftMachine

pytestmark = requires_riscv_toolchain

LOOP = """
    li t0, 0
    li t1, DATA
loop:
    addi t0, t0, 1
middle:
    sd t0, 0(t1)
    li t2, 5
    blt t0, t2, loop
done:
    wfi
    j done
"""


@pytest.fixture
def machine() -> Iterator[SoftMachine]:
    made = SoftMachine(LOOP)
    yield made
    made.close()


def ready(machine: SoftMachine) -> VCpu:
    vcpu = VCpu(0, machine.vcpu)
    vcpu.setup(GuestPhysAddr(RAM_BASE))
    vcpu.bind()
    return vcpu


def run_until_stop(vcpu: VCpu, heard: list[DebugStop], max_runs: int = 50) -> None:
    for _ in range(max_runs):
        exit_reason = vcpu.run()
        if heard:
            assert isinstance(exit_reason, Nothing)
            return
        assert not isinstance(exit_reason, Halt), "halted without reaching the stop"
    raise AssertionError("no stop")


def test_breakpoint_stops_before_the_instruction_and_holds(machine: SoftMachine) -> None:
    vcpu = ready(machine)
    debug = attach_debugger(vcpu)
    heard: list[DebugStop] = []
    debug.set_listener(heard.append)
    middle = machine.sym("middle")
    assert debug.insert_breakpoint(middle)
    run_until_stop(vcpu, heard)
    assert heard == [DebugStop(StopReason.BREAKPOINT, middle)]
    assert vcpu.get_register("pc") == middle and vcpu.get_register("t0") == 1
    assert machine.u64(DATA) == 0  # the sd at the breakpoint has not run
    assert isinstance(vcpu.run(), Nothing) and vcpu.get_register("pc") == middle  # held: no progress
    # step over the breakpoint (as gdb does: remove, step, insert), then on to the next hit
    assert debug.remove_breakpoint(middle)
    debug.set_single_step(True)
    debug.release()
    heard.clear()
    run_until_stop(vcpu, heard)
    assert heard[0].reason is StopReason.STEP and heard[0].pc == middle + 4
    assert machine.u64(DATA) == 1  # the sd ran, exactly one instruction
    assert debug.insert_breakpoint(middle)
    debug.release()
    heard.clear()
    run_until_stop(vcpu, heard)
    assert heard == [DebugStop(StopReason.BREAKPOINT, middle)] and vcpu.get_register("t0") == 2
    debug.clear()  # detach: the guest runs to its wfi
    heard.clear()
    for _ in range(20):
        if isinstance(vcpu.run(), Halt):
            break
    assert not heard and vcpu.get_register("t0") == 5


def test_write_watchpoint_stops_after_the_store(machine: SoftMachine) -> None:
    vcpu = ready(machine)
    debug = attach_debugger(vcpu)
    heard: list[DebugStop] = []
    debug.set_listener(heard.append)
    assert debug.insert_watchpoint(WatchKind.WRITE, DATA, 8)
    run_until_stop(vcpu, heard)
    assert heard[0].reason is StopReason.WATCHPOINT and heard[0].watch == (WatchKind.WRITE, DATA)
    assert machine.u64(DATA) == 1
    assert debug.remove_watchpoint(WatchKind.WRITE, DATA, 8) and not debug.remove_watchpoint(WatchKind.WRITE, DATA, 8)


def test_unsupported_backend_is_named() -> None:
    from axvcpu import ScriptedVCpu
    from axvcpu.backends.debug import DebugUnsupported

    with pytest.raises(DebugUnsupported, match="ScriptedVCpu"):
        attach_debugger(VCpu(0, ScriptedVCpu([])))


def test_translate_through_the_engine(machine: SoftMachine) -> None:
    vcpu = ready(machine)
    debug = attach_debugger(vcpu)
    assert debug.translate(DATA) == DATA  # M mode, satp bare: untranslated
    assert debug.translate(0x4000_0000_0000) == 0x4000_0000_0000  # an address, RAM or not
