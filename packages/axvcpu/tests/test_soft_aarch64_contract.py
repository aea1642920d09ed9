"""Aarch64SoftVCpu against the ArchVCpu contract, and the MMIO-exit mode the contract relies on.

With ``mmio_exits=True`` and no MMIO handler, a single-register load or store to an address
with no RAM comes back from run() as MmioRead/MmioWrite (as on KVM); without it, the same
access is a synchronous external abort in the guest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import ArchVCpu, AxVCpuExitReason, Halt, MmioRead, MmioWrite, Nothing, PendingReadError

from .a64_machine import DEVICE, RAM_BASE, U64, A64Machine
from .aarch64_asm import requires_aarch64_toolchain
from .arch_contract import ArchVCpuContract

pytestmark = requires_aarch64_toolchain

READ_FIRST = """
    ldr x2, =DEVICE
    ldr w0, [x2]
    add w0, w0, #1
    str w0, [x2, #4]
1:  wfi
    b 1b
"""


class TestAarch64SoftContract(ArchVCpuContract):
    register_names = (
        "pc", "sp", "x0", "x7", "x28", "x29", "x30", "lr", "fp",
        "elr_el1", "vbar_el1", "sp_el0", "tpidr_el1", "tpidr_el0", "spsr_el1", "ttbr0_el1", "cntv_cval_el0",
    )  # fmt: skip

    def make_vcpu(self) -> ArchVCpu:
        self.machine = A64Machine(READ_FIRST, mmio_exits=True)
        return self.machine.vcpu

    def exit_after_read(self, value: int) -> AxVCpuExitReason:
        return MmioWrite(GuestPhysAddr(DEVICE + 4), AccessWidth.DWORD, value + 1)  # READ_FIRST adds 1

    @pytest.fixture
    def vcpu(self) -> Iterator[ArchVCpu]:
        vcpu = self.make_vcpu()
        yield vcpu
        self.machine.close()


@pytest.fixture
def machine() -> Iterator[A64Machine]:
    m = A64Machine(READ_FIRST, mmio_exits=True)
    yield m
    m.close()


def test_the_vcpu_starts_at_el1h_with_interrupts_masked_and_halts_in_wfi() -> None:
    m = A64Machine("mrs x1, CurrentEL\n mrs x2, daif\n mrs x3, mpidr_el1\n1: wfi\n b 1b\n", cpus=2)
    try:
        assert m.vcpu.run() == Halt()
        assert m.reg("x1") == 1 << 2  # EL1
        assert m.reg("x2") == 0x3C0  # D, A, I, F masked
        assert m.reg("x3") == 0x8000_0000
        assert m.vcpus[1].run() == Halt()
        assert m.reg("x3", cpu=1) == 0x8000_0001  # Aff0 = vCPU index, as QEMU virt numbers them
        assert m.reg("pc") == RAM_BASE + 16  # past the wfi
    finally:
        m.close()


def test_read_then_write_exits_carry_address_width_register_and_value(machine: A64Machine) -> None:
    vcpu = machine.vcpu
    assert vcpu.run() == MmioRead(GuestPhysAddr(DEVICE), AccessWidth.DWORD, reg=0, reg_width=AccessWidth.DWORD)
    with pytest.raises(PendingReadError):
        vcpu.run()
    vcpu.complete_read(0xFFFF_FFFF_8000_0000)  # masked to the width
    assert machine.reg("x0") == 0x8000_0000
    assert vcpu.run() == MmioWrite(GuestPhysAddr(DEVICE + 4), AccessWidth.DWORD, 0x8000_0001)
    assert vcpu.run() == Halt()


@pytest.mark.parametrize(
    ("insn", "value", "reg", "expected"),
    [
        ("ldrb w1, [x2, #3]", 0x1FF, "x1", 0xFF),
        ("ldrsb x1, [x2, #3]", 0xFF, "x1", U64),
        ("ldrsb w1, [x2, #3]", 0xFF, "x1", 0xFFFF_FFFF),
        ("ldrsh x1, [x2, #2]", 0x8001, "x1", U64 - 0x7FFE),
        ("ldr x1, [x2, #8]", 0x1122_3344_5566_7788, "x1", 0x1122_3344_5566_7788),
        ("ldrsw x1, [x2, x3]", 0xFFFF_FFFE, "x1", U64 - 1),
        ("ldur w1, [x2, #-4]", 7, "x1", 7),
        ("ldar w1, [x2]", 9, "x1", 9),
        ("ldr wzr, [x2]", 5, "x1", 0x77),  # xzr stays zero; x1 keeps its value
    ],
)
def test_complete_read_writes_the_destination_and_moves_past_the_load(
    insn: str, value: int, reg: str, expected: int
) -> None:
    src = f"ldr x2, =DEVICE + 0x100\n mov x3, #4\n mov x1, #0x77\n{insn}\nafter:\n mov x4, #1\n1: wfi\n b 1b\n"
    m = A64Machine(src, mmio_exits=True)
    try:
        exit_reason = m.vcpu.run()
        assert isinstance(exit_reason, MmioRead)
        m.vcpu.complete_read(value)
        assert m.reg("pc") == m.sym("after")
        assert m.reg(reg) == expected
        assert m.vcpu.run() == Halt() and m.reg("x4") == 1
    finally:
        m.close()


@pytest.mark.parametrize(
    ("insn", "width", "data"),
    [
        ("str x1, [x2]", AccessWidth.QWORD, U64),
        ("strh w1, [x2]", AccessWidth.WORD, 0xFFFF),
        ("stlrb w1, [x2]", AccessWidth.BYTE, 0xFF),
        ("str xzr, [x2]", AccessWidth.QWORD, 0),
    ],
)
def test_a_store_exit_carries_the_value_and_moves_past_the_store(insn: str, width: AccessWidth, data: int) -> None:
    m = A64Machine(f"ldr x2, =DEVICE\n mov x1, #-1\n {insn}\n mov x4, #1\n1: wfi\n b 1b\n", mmio_exits=True)
    try:
        assert m.vcpu.run() == MmioWrite(GuestPhysAddr(DEVICE), width, data)
        assert m.vcpu.run() == Halt() and m.reg("x4") == 1
    finally:
        m.close()


def test_without_mmio_exits_the_same_access_is_a_synchronous_external_abort() -> None:
    m = A64Machine(READ_FIRST)
    try:
        m.vcpu.set_register("vbar_el1", RAM_BASE + 0x800)
        assert m.vcpu.run() == Nothing()
        assert m.reg("pc") == RAM_BASE + 0x800 + 0x200  # current EL with SP_EL1, synchronous
        assert m.reg("far_el1") == DEVICE
        assert m.reg("elr_el1") == RAM_BASE + 4  # the ldr w0 (after the literal load of x2)
        esr = m.reg("esr_el1")
        assert esr >> 26 == 0x25  # data abort from the current EL
        assert esr & 0x3F == 0x10  # synchronous external abort
        assert esr >> 24 & 1 == 1 and esr >> 22 & 3 == 2 and esr >> 16 & 31 == 0  # ISV, SAS=word, SRT=w0
        assert not esr >> 6 & 1  # a read
    finally:
        m.close()
