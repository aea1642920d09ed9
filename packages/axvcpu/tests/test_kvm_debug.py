"""The KVM vCPU's debugger: DR7 encoding (pure), and single step on a real vCPU at CPL0 (what
PVM's KVM delivers; debug-register hits need a hardware KVM, see axvcpu.backends.kvm.debug)."""

from __future__ import annotations

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import IoWrite, Nothing, VCpu
from axvcpu.backends.debug import attach_debugger, detach_debugger
from axvcpu.backends.kvm.debug import Slot, dr7_for
from axvcpu.debug import DebugStop, StopReason, WatchKind

from . import kvm_programs as prog
from .kvm_guest import CODE, kvm_guest


def test_dr7_encoding() -> None:
    assert dr7_for([None] * 4) == 0x400
    assert dr7_for([Slot(0x1000), None, None, None]) == 0x401  # L0, execute, length 1
    # slot 1: write, 4 bytes -> L1 (bit 2), R/W1 = 01 (bits 20-21), LEN1 = 11 (bits 22-23)
    assert dr7_for([None, Slot(0x2000, WatchKind.WRITE, 4), None, None]) == 0x400 | 0x4 | (0b1101 << 20)
    # slot 3: access, 8 bytes -> L3 (bit 6), R/W3 = 11, LEN3 = 10 (bits 28-31)
    assert dr7_for([None, None, None, Slot(0x8, WatchKind.ACCESS, 8)]) == 0x400 | 0x40 | (0b1011 << 28)


def test_single_step_stops_after_each_instruction_then_runs_on() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        vcpu = VCpu(0, guest.vcpu)
        vcpu.setup(GuestPhysAddr(CODE))
        vcpu.bind()
        guest.vcpu.set_register("rip", CODE)
        debug = attach_debugger(vcpu)
        heard: list[DebugStop] = []
        debug.set_listener(heard.append)
        debug.set_single_step(True)
        assert isinstance(vcpu.run(), Nothing)
        assert heard == [DebugStop(StopReason.STEP, CODE + 4)]  # mov dx, 0x3f8 ran
        assert isinstance(vcpu.run(), Nothing) and len(heard) == 1  # held until released
        debug.set_single_step(True)
        debug.release()
        assert isinstance(vcpu.run(), Nothing)
        assert heard[-1] == DebugStop(StopReason.STEP, CODE + 6)  # mov al, 'A'
        debug.release()
        assert vcpu.run() == IoWrite(0x3F8, AccessWidth.BYTE, ord("A"))  # the step was one-shot
        detach_debugger(vcpu)
        assert vcpu.debug is None
