"""KvmVCpu running tiny guests: every exit kind a guest can provoke, and the X86VCpu state interface."""

from __future__ import annotations

import os
import typing

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import ArchVCpu, AxVCpuExitReason, FailEntry, Halt, IoRead, IoWrite, MmioRead, MmioWrite, PendingReadError
from axvcpu.backends.kvm import FpuState, KvmError
from axvcpu.x86 import GENERAL_REGISTERS, Segment, X86VCpu

from . import kvm_programs as prog
from .arch_contract import ArchVCpuContract
from .kvm_guest import CODE, GDT, SEL_CODE, SEL_DATA, UNMAPPED, Guest, kvm_guest, make_guest, require_kvm

COM1 = 0x3F8
BYTE, WORD, DWORD, QWORD = AccessWidth.BYTE, AccessWidth.WORD, AccessWidth.DWORD, AccessWidth.QWORD
MSR_SYSENTER_CS, MSR_LSTAR = 0x174, 0xC000_0082


class TestKvmContract(ArchVCpuContract):
    register_names = (*GENERAL_REGISTERS, "cr2", "cr3")

    @pytest.fixture(autouse=True)
    def _guests(self) -> typing.Iterator[None]:
        self.guests: list[Guest] = []
        yield
        for guest in self.guests:
            guest.close()

    def make_vcpu(self) -> ArchVCpu:
        require_kvm()
        guest = make_guest(prog.IN_PLUS_ONE)
        self.guests.append(guest)
        return guest.vcpu

    def exit_after_read(self, value: int) -> AxVCpuExitReason:
        return IoWrite(COM1, BYTE, value + 1)  # IN_PLUS_ONE: in al, inc al, out to COM1


def test_out_then_hlt() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        assert guest.vcpu.run() == IoWrite(COM1, BYTE, ord("A"))
        assert guest.vcpu.run() == Halt()
        assert guest.vcpu.get_register("rip") == CODE + len(prog.OUT_A)


def test_word_out_carries_both_bytes() -> None:
    with kvm_guest(prog.OUT_WORD) as guest:
        assert guest.vcpu.run() == IoWrite(COM1, WORD, 0xBEEF)


def test_in_is_answered_by_complete_read() -> None:
    with kvm_guest(prog.IN_PLUS_ONE) as guest:
        assert guest.vcpu.run() == IoRead(0x71, BYTE)
        guest.vcpu.complete_read(0x41)
        assert guest.vcpu.run() == IoWrite(COM1, BYTE, 0x42)
        assert guest.vcpu.run() == Halt()


def test_an_unanswered_in_reads_all_ones() -> None:
    with kvm_guest(prog.IN_PLUS_ONE) as guest:
        assert guest.vcpu.run() == IoRead(0x71, BYTE)
        assert guest.vcpu.run() == IoWrite(COM1, BYTE, 0x00)  # 0xff + 1


def test_complete_read_without_a_read_is_refused() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        guest.vcpu.run()
        with pytest.raises(PendingReadError):
            guest.vcpu.complete_read(1)


def test_mmio_at_an_unmapped_address() -> None:
    with kvm_guest(prog.MMIO) as guest:
        vcpu = guest.vcpu
        assert vcpu.run() == MmioWrite(GuestPhysAddr(UNMAPPED), DWORD, 0x1234_5678)
        assert vcpu.run() == MmioRead(GuestPhysAddr(UNMAPPED + 8), DWORD)
        vcpu.complete_read(0xABCD_1234)
        assert vcpu.run() == IoWrite(COM1, DWORD, 0xABCD_1234)
        assert vcpu.run() == MmioRead(GuestPhysAddr(UNMAPPED + 0x10), QWORD)
        vcpu.complete_read(0x1122_3344_5566_7788)
        assert vcpu.run() == MmioWrite(GuestPhysAddr(UNMAPPED + 0x18), QWORD, 0x1122_3344_5566_7788)


def test_rep_outsb_reports_each_byte_in_order() -> None:
    with kvm_guest(prog.REP_OUTSB_HELLO) as guest:
        exits = [guest.vcpu.run() for _ in range(6)]
        assert exits == [*(IoWrite(COM1, BYTE, c) for c in b"hello"), Halt()]


def test_rep_insb_answers_each_element_into_its_slot() -> None:
    with kvm_guest(prog.REP_INSB_ECHO) as guest:
        for answer in b"abc":
            assert guest.vcpu.run() == IoRead(0x71, BYTE)
            guest.vcpu.complete_read(answer)
        exits = [guest.vcpu.run() for _ in range(4)]
        assert exits == [*(IoWrite(COM1, BYTE, c) for c in b"abc"), Halt()]


def test_triple_fault_is_fail_entry_naming_rip_and_code() -> None:
    with kvm_guest(prog.UD2) as guest:
        exit_reason = guest.vcpu.run()
        assert isinstance(exit_reason, FailEntry)
        assert "triple fault" in exit_reason.detail
        assert f"RIP {CODE:#x}" in exit_reason.detail and "0f 0b" in exit_reason.detail


def test_iretq_to_cpl3_then_port_io() -> None:
    with kvm_guest(prog.IRETQ_TO_CPL3) as guest:
        assert guest.vcpu.run() == IoWrite(COM1, BYTE, ord("U"))
        selector = guest.vcpu.run()
        assert isinstance(selector, IoWrite) and selector.data & 3 == 3  # CPL 3 (PVM shows its own selector)
        assert guest.vcpu.get_segment("cs").dpl == 3


def test_cpuid_reports_the_vcpu_apic_id() -> None:
    # At CPL0: PVM runs CPUID at CPL3 natively, showing the host's values.
    with kvm_guest(prog.CPUID_APIC_IDS, vcpu_id=3) as guest:
        assert guest.vcpu.run() == IoWrite(COM1, BYTE, 3)
        x2apic = guest.vcpu.run()
        if any(entry.function == 0xB for entry in guest.backend.vm.kvm.supported_cpuid()):
            assert x2apic == IoWrite(COM1, BYTE, 3)


def test_inject_interrupt_without_irqchip() -> None:
    with kvm_guest(prog.STI_HLT, handler=prog.HANDLER_OUT_I) as guest:
        assert guest.vcpu.run() == Halt()
        guest.vcpu.inject_interrupt(0x20)
        assert guest.vcpu.run() == IoWrite(COM1, BYTE, ord("I"))


def test_inject_interrupt_with_irqchip_points_to_irq_lines() -> None:
    with kvm_guest(prog.OUT_A, irqchip=True) as guest:
        with pytest.raises(RuntimeError, match="irq_line"):
            guest.vcpu.inject_interrupt(0x20)


def test_registers_are_written_back_before_the_run_and_fetched_after() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        vcpu = guest.vcpu
        untouched = [name for name in GENERAL_REGISTERS if name not in ("rax", "rdx", "rip", "rflags", "rsp")]
        for i, name in enumerate(untouched):
            vcpu.set_register(name, 0x1111_0000_0000_0000 + i)
        assert vcpu.run() == IoWrite(COM1, BYTE, ord("A"))
        assert [vcpu.get_register(name) for name in untouched] == [0x1111_0000_0000_0000 + i
                                                                    for i in range(len(untouched))]
        assert vcpu.get_register("rdx") & 0xFFFF == COM1  # set by the guest, read from KVM


def test_segments_tables_and_control_registers_round_trip_through_kvm() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        vcpu = guest.vcpu
        assert isinstance(vcpu, X86VCpu)
        vcpu.run()  # forces write-back and a fresh fetch
        cs = vcpu.get_segment("cs")
        assert (cs.selector, cs.l, cs.dpl, cs.present) == (SEL_CODE, 1, 0, 1)
        assert vcpu.get_segment("ss").selector == SEL_DATA
        assert vcpu.get_descriptor_table("gdt") == (GDT, 6 * 8 - 1)
        assert vcpu.get_register("efer") & 0x500 == 0x500  # LME | LMA
        assert vcpu.get_register("cr0") >> 31 == 1  # paging on


def test_setup_sets_only_rip() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        vcpu = guest.vcpu
        vcpu.set_register("rbx", 7)
        cr0 = vcpu.get_register("cr0")
        vcpu.setup(GuestPhysAddr(0x1_2345), None)
        assert (vcpu.get_register("rip"), vcpu.get_register("rbx"), vcpu.get_register("cr0")) == (0x1_2345, 7, cr0)


def test_bad_names_and_values_are_rejected_naming_them() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        vcpu = guest.vcpu
        with pytest.raises(KeyError, match="xmm0"):
            vcpu.get_register("xmm0")
        with pytest.raises(KeyError, match="hs"):
            vcpu.set_segment("hs", Segment.null())
        with pytest.raises(KeyError, match="ldt"):
            vcpu.set_descriptor_table("ldt", 0, 0)
        with pytest.raises(ValueError, match="rax"):
            vcpu.set_register("rax", 1 << 64)
        with pytest.raises(ValueError, match="dpl"):
            Segment.code64(0x10, dpl=4)


def test_msrs_round_trip_and_a_bad_one_is_named() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        vcpu = guest.vcpu
        vcpu.set_msrs({MSR_SYSENTER_CS: 0x10, MSR_LSTAR: 0xFFFF_8000_0000_1000})
        assert vcpu.get_msrs([MSR_LSTAR, MSR_SYSENTER_CS]) == {MSR_LSTAR: 0xFFFF_8000_0000_1000, MSR_SYSENTER_CS: 0x10}
        with pytest.raises(KvmError, match="0xdeadbeef"):
            vcpu.get_msrs([MSR_LSTAR, 0xDEAD_BEEF])


def test_fpu_state_reaches_the_guest() -> None:
    with kvm_guest(prog.FPU_CONTROL_WORDS, user=True) as guest:
        vcpu = guest.vcpu
        assert vcpu.get_fpu() == FpuState()  # KVM's reset state: fcw 0x37f, mxcsr 0x1f80
        vcpu.set_fpu(FpuState(fcw=0x27F, mxcsr=0x1FC0))  # double precision; DAZ
        assert vcpu.get_fpu() == FpuState(fcw=0x27F, mxcsr=0x1FC0)
        assert vcpu.run() == IoWrite(COM1, DWORD, 0x27F)  # what fnstcw sees
        assert vcpu.run() == IoWrite(COM1, DWORD, 0x1FC0)  # what stmxcsr sees


def test_lapic_and_mp_state_with_the_in_kernel_irqchip() -> None:
    with kvm_guest(prog.OUT_A, irqchip=True) as guest:
        lib = guest.backend.vm.lib
        bsp, ap = guest.vcpu, guest.backend.create_vcpu(1)
        for vcpu, apic_id in ((bsp, 0), (ap, 1)):
            lapic = vcpu.get_lapic()
            assert len(lapic) == 1024 and lapic[0x23] == apic_id  # APIC ID register, bits 31:24
        assert bsp.get_mp_state() == lib.KVM_MP_STATE_RUNNABLE
        assert ap.get_mp_state() == lib.KVM_MP_STATE_UNINITIALIZED  # waits for INIT/SIPI
        ap.set_mp_state(lib.KVM_MP_STATE_RUNNABLE)
        assert ap.get_mp_state() == lib.KVM_MP_STATE_RUNNABLE
        bsp.set_lapic(bsp.get_lapic())
        with pytest.raises(ValueError, match="1024 bytes"):
            bsp.set_lapic(b"\0" * 10)


def test_lapic_needs_the_irqchip() -> None:
    with kvm_guest(prog.OUT_A) as guest, pytest.raises(RuntimeError, match="irqchip"):
        guest.vcpu.get_lapic()


def test_close_is_idempotent() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        fd = guest.vcpu.fd
        with open(os.devnull) as placeholder:  # opened first, so it has a number of its own
            guest.vcpu.close()
            os.dup2(placeholder.fileno(), fd)  # the freed number now names another file
            guest.vcpu.close()  # a second close must leave that file alone
            assert os.fstat(fd).st_ino == os.fstat(placeholder.fileno()).st_ino
            os.close(fd)
        guest.vcpu.kick()  # harmless once closed
