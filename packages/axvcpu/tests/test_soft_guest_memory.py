"""The soft backend reads guest RAM only through the one guest memory it was handed.

Its own reads (the instruction at a faulting PC, decoded to find the access; the page-table
entries walked to find which page of a crossing access faulted) go through the
``GuestMemoryReader`` the address space attached, and what the guest writes is what that memory
holds. The walk itself is a pure function over that Protocol, importable with no unicorn.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

from axaddrspace import (
    AccessWidth,
    GuestMemory,
    GuestMemoryReader,
    GuestMemoryRegion,
    GuestPhysAddr,
    MappingFlags,
)
from axvcpu import Halt, Nothing
from axvcpu.backends.soft import RiscvSoftVCpu, SoftRiscvBackend

RAM = 0x8000_0000
RAM_SIZE = 0x40_0000
HANDLER = RAM + 0x100
PT_ROOT, PT_L1, PT_L0 = RAM + 0x20_0000, RAM + 0x20_1000, RAM + 0x20_2000
DATA_PAGE = RAM + 0x30_0000
V, R, W, X, A, D = 1, 2, 4, 8, 64, 128
MPRV, MPP_S = 1 << 17, 1 << 11
LD_A1_0_T0 = 0x0002_B583  # ld a1, 0(t0)
SD_A1_0_T0 = 0x00B2_B023  # sd a1, 0(t0)
WFI, J_BACK = 0x1050_0073, 0xFFDF_F06F  # wfi; j .-4
LOAD_ACCESS_FAULT, LOAD_PAGE_FAULT = 5, 13


class RecordingReader:
    """A GuestMemoryReader that forwards to a GuestMemory and notes every range read."""

    def __init__(self, memory: GuestMemory) -> None:
        self.memory = memory
        self.reads: list[tuple[int, int]] = []

    def contains(self, gpa: GuestPhysAddr, size: int = 1) -> bool:
        return self.memory.contains(gpa, size)

    def read_into(self, gpa: GuestPhysAddr, buf: bytearray | memoryview) -> None:
        self.reads.append((int(gpa), memoryview(buf).nbytes))
        self.memory.read_into(gpa, buf)

    def read(self, gpa: GuestPhysAddr, size: int) -> bytes:
        buf = bytearray(size)
        self.read_into(gpa, buf)
        return bytes(buf)

    def read_int(self, gpa: GuestPhysAddr, width: AccessWidth) -> int:
        return int.from_bytes(self.read(gpa, int(width)), "little")

    def read_u8(self, gpa: GuestPhysAddr) -> int:
        return self.read_int(gpa, AccessWidth.BYTE)

    def read_u16(self, gpa: GuestPhysAddr) -> int:
        return self.read_int(gpa, AccessWidth.WORD)

    def read_u32(self, gpa: GuestPhysAddr) -> int:
        return self.read_int(gpa, AccessWidth.DWORD)

    def read_u64(self, gpa: GuestPhysAddr) -> int:
        return self.read_int(gpa, AccessWidth.QWORD)

    def read_struct(self, gpa: GuestPhysAddr, ctype_cls: type) -> object:
        raise AssertionError("the backend reads no structures")

    def view(self, gpa: GuestPhysAddr, size: int) -> memoryview:
        raise AssertionError("the backend takes no views")


@contextmanager
def hart() -> Iterator[tuple[RiscvSoftVCpu, GuestMemory, RecordingReader]]:
    """One hart whose stage-2 was handed ``reader`` over a one-region guest memory."""
    backend = SoftRiscvBackend(1)
    memory = GuestMemory([GuestMemoryRegion.anonymous(RAM, RAM_SIZE)])
    reader = RecordingReader(memory)
    assert isinstance(reader, GuestMemoryReader)
    backend.stage2.attach_memory(reader)
    backend.stage2.map(memory.regions[0], MappingFlags.READ | MappingFlags.WRITE | MappingFlags.EXECUTE)
    memory.write_u32(HANDLER, WFI)
    memory.write_u32(HANDLER + 4, J_BACK)
    vcpu = backend.create_vcpu(0)
    vcpu.setup(GuestPhysAddr(RAM), None)
    vcpu.set_register("mtvec", HANDLER)
    try:
        yield vcpu, memory, reader
    finally:
        backend.stage2.unmap(GuestPhysAddr(RAM), RAM_SIZE)  # stage-2 first, then the memory
        backend.close()
        memory.close()


def run_until_halt(vcpu: RiscvSoftVCpu) -> None:
    for _ in range(50):
        exit_reason = vcpu.run()
        if isinstance(exit_reason, Halt):
            return
        assert isinstance(exit_reason, Nothing), exit_reason
    raise AssertionError("the hart did not halt")


def test_the_faulting_instruction_is_fetched_through_the_guest_memory() -> None:
    with hart() as (vcpu, memory, reader):
        memory.write_u32(RAM, LD_A1_0_T0)  # written through the memory, fetched for decoding
        vcpu.set_register("t0", 0x4000_0010)  # not RAM, no device: a load access fault
        run_until_halt(vcpu)
        assert (vcpu.get_register("mcause"), vcpu.get_register("mtval")) == (LOAD_ACCESS_FAULT, 0x4000_0010)
        assert any(gpa == RAM for gpa, _ in reader.reads), reader.reads  # the decoder read the memory


def test_what_the_guest_stores_is_what_the_guest_memory_holds() -> None:
    with hart() as (vcpu, memory, _reader):
        memory.write_u32(RAM, SD_A1_0_T0)
        memory.write_u32(RAM + 4, WFI)
        vcpu.set_register("t0", DATA_PAGE)
        vcpu.set_register("a1", 0x1122_3344_5566_7788)
        run_until_halt(vcpu)
        assert memory.read_u64(DATA_PAGE) == 0x1122_3344_5566_7788


def test_the_page_table_walk_reads_tables_written_through_the_guest_memory() -> None:
    with hart() as (vcpu, memory, reader):
        memory.write_u64(PT_ROOT + 8 * 2, (RAM >> 12) << 10 | V | R | W | X | A | D)  # RAM gigapage
        memory.write_u64(PT_ROOT + 8 * 1, (PT_L1 >> 12) << 10 | V)
        memory.write_u64(PT_L1, (PT_L0 >> 12) << 10 | V)
        memory.write_u64(PT_L0, (DATA_PAGE >> 12) << 10 | V | R | W | A | D)  # 0x4000_0000; next page unmapped
        memory.write_u32(RAM, LD_A1_0_T0)
        vcpu.set_register("satp", 8 << 60 | PT_ROOT >> 12)
        vcpu.set_register("mstatus", MPRV | MPP_S)  # M-mode data accesses translated as S
        vcpu.set_register("t0", 0x4000_0FFC)  # 8 bytes crossing into the unmapped page
        run_until_halt(vcpu)
        # stval is the second page only if the Python walk found the first one mapped
        assert (vcpu.get_register("mcause"), vcpu.get_register("mtval")) == (LOAD_PAGE_FAULT, 0x4000_1000)
        ptes = {PT_ROOT + 8, PT_L1, PT_L0}
        assert ptes <= {gpa for gpa, size in reader.reads if size == 8}, reader.reads


WALK_WITHOUT_UNICORN = textwrap.dedent(
    """
    import pathlib, sys, types
    sys.modules["unicorn"] = None  # any import of unicorn now fails
    import axvcpu.backends
    # The soft package's __init__ exports the engine-backed backend; the walk must not need it.
    package = types.ModuleType("axvcpu.backends.soft")
    package.__path__ = [str(pathlib.Path(axvcpu.backends.__file__).parent / "soft")]
    sys.modules["axvcpu.backends.soft"] = package
    from axaddrspace import GuestMemory, GuestMemoryRegion
    from axvcpu.backends.soft.riscv_mmu import Access, translate

    base = 0x8000_0000
    memory = GuestMemory([GuestMemoryRegion.anonymous(base, 0x3000)])
    memory.write_u64(base + 8 * 1, ((base + 0x1000) >> 12) << 10 | 1)  # VPN2 1 -> L1
    memory.write_u64(base + 0x1000, ((base + 0x2000) >> 12) << 10 | 1)  # VPN1 0 -> L0
    memory.write_u64(base + 0x2000, (0x8765_4000 >> 12) << 10 | 0xC7)  # VPN0 0 -> leaf RWX A D
    memory.write_u64(base + 8 * 3, (0x1_0000_0000 >> 12) << 10 | 1)  # VPN2 3 -> a table outside RAM
    satp = 8 << 60 | base >> 12
    assert translate(memory, 0x4000_0123, Access.LOAD, priv=1, satp=satp, mstatus=0) == 0x8765_4123
    assert translate(memory, 0xC000_0000, Access.LOAD, priv=1, satp=satp, mstatus=0) is None
    assert sys.modules["unicorn"] is None
    print("walked")
    """
)


def test_the_walk_runs_on_a_plain_guest_memory_without_unicorn() -> None:
    result = subprocess.run([sys.executable, "-c", WALK_WITHOUT_UNICORN], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "walked"
