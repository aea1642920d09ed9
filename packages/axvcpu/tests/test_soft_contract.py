"""RiscvSoftVCpu against the ArchVCpu contract, and the MMIO-exit mode the contract relies on.

With ``mmio_exits=True`` and no MMIO handler, an access to an address with no RAM comes back
from run() as MmioRead/MmioWrite (as on KVM), so the package is usable without a device bus.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import ArchVCpu, AxVCpuExitReason, Halt, MmioRead, MmioWrite, Nothing, PendingReadError, VCpu

from .arch_contract import ArchVCpuContract
from .riscv_asm import requires_riscv_toolchain
from .soft_machine import U64, SoftMachine

pytestmark = requires_riscv_toolchain

DEVICE = 0x1000_0000

READ_FIRST = f"""
    li t0, {DEVICE:#x}
    lw a0, 0(t0)
    addi a0, a0, 1
    sw a0, 4(t0)
1:  wfi
    j 1b
"""


class TestRiscvSoftContract(ArchVCpuContract):
    register_names = (
        "pc", "ra", "sp", "a0", "a7", "x5", "t6", "s11", "fp",
        "mscratch", "sscratch", "mepc", "sepc", "mtvec", "stvec", "satp",
    )  # fmt: skip

    def make_vcpu(self) -> ArchVCpu:
        self.machine = SoftMachine(READ_FIRST, mmio_exits=True)
        return self.machine.vcpu

    def exit_after_read(self, value: int) -> AxVCpuExitReason:
        return MmioWrite(GuestPhysAddr(DEVICE + 4), AccessWidth.DWORD, value + 1)  # READ_FIRST adds 1

    @pytest.fixture
    def vcpu(self) -> Iterator[ArchVCpu]:
        vcpu = self.make_vcpu()
        yield vcpu
        self.machine.close()


@pytest.fixture
def machine() -> Iterator[SoftMachine]:
    m = SoftMachine(READ_FIRST, mmio_exits=True)
    yield m
    m.close()


def test_read_then_write_exits_carry_address_width_and_value(machine: SoftMachine) -> None:
    vcpu = VCpu(0, machine.vcpu)
    vcpu.setup(GuestPhysAddr(0x8000_0000))
    vcpu.bind()
    assert vcpu.run() == MmioRead(GuestPhysAddr(DEVICE), AccessWidth.DWORD, reg=10, signed=True)
    with pytest.raises(PendingReadError):
        vcpu.run()
    vcpu.complete_read(0x8000_0000)  # lw sign-extends
    assert machine.reg("a0") == 0xFFFF_FFFF_8000_0000
    assert vcpu.run() == MmioWrite(GuestPhysAddr(DEVICE + 4), AccessWidth.DWORD, 0x8000_0001)
    assert vcpu.run() == Halt()


@pytest.mark.parametrize(
    ("insn", "value", "expected"),
    [
        ("lbu a1, 3(t0)", 0xFF, 0xFF),
        ("lb a1, 3(t0)", 0xFF, U64),
        ("lhu a1, 2(t0)", 0x1_8001, 0x8001),  # masked to the width
        ("ld a1, 8(t0)", 0x1122_3344_5566_7788, 0x1122_3344_5566_7788),
        ("c.lw a1, 4(s0)", 0xFFFF_FFFE, U64 - 1),
        ("lw zero, 0(t0)", 5, 0),  # x0 stays zero
    ],
)
def test_complete_read_writes_the_destination_and_moves_past_the_load(insn: str, value: int, expected: int) -> None:
    m = SoftMachine(f"li t0, {DEVICE:#x}\n mv s0, t0\n{insn}\nafter:\n li a2, 1\n1: wfi\n j 1b\n", mmio_exits=True)
    try:
        exit_reason = m.vcpu.run()
        assert isinstance(exit_reason, MmioRead)
        m.vcpu.complete_read(value)
        assert m.reg("pc") == m.sym("after")
        reg = "x0" if "zero" in insn else "a1"
        assert m.reg(reg) == expected
        assert m.vcpu.run() == Halt() and m.reg("a2") == 1
    finally:
        m.close()


def test_a_store_exit_moves_past_the_store(machine: SoftMachine) -> None:
    m = SoftMachine(f"li t0, {DEVICE:#x}\n li a1, -1\n sd a1, 0(t0)\n li a2, 1\n1: wfi\n j 1b\n", mmio_exits=True)
    try:
        assert m.vcpu.run() == MmioWrite(GuestPhysAddr(DEVICE), AccessWidth.QWORD, U64)
        assert m.vcpu.run() == Halt() and m.reg("a2") == 1
    finally:
        m.close()


def test_without_mmio_exits_the_same_access_is_an_access_fault() -> None:
    m = SoftMachine(READ_FIRST)
    try:
        assert m.vcpu.run() == Nothing()
        assert m.reg("mcause") == 5 and m.reg("mtval") == DEVICE
    finally:
        m.close()
