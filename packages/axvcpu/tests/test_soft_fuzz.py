"""Hostile guests against the soft backend's trap path: instruction bits, page tables, addresses.

Everything here comes from the guest: the instruction at a faulting PC, the page tables the
Python walk follows, the registers that form an effective address. The decoders must answer
every bit pattern with a decoded access or None, the walk must only ever read guest RAM, and a
hart running random code must end every slice with a defined exit. None of it needs an
assembler.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import AccessWidth, GuestMemory, GuestMemoryError, GuestMemoryRegion, GuestPhysAddr, MappingFlags
from axvcpu import FailEntry, Halt, MmioRead, MmioWrite, Nothing
from axvcpu.backends.soft import SoftRiscvBackend
from axvcpu.backends.soft.riscv_decode import AccessKind, decode_csr, decode_mem, insn_length, is_ebreak
from axvcpu.backends.soft.riscv_mmu import Access, faulting_address, read_phys, translate

U64 = (1 << 64) - 1
PAGE = 0x1000
MEM_OPCODES = (0x03, 0x07, 0x23, 0x27, 0x2F)  # LOAD, LOAD-FP, STORE, STORE-FP, AMO
VALID_WIDTHS = {1, 2, 4, 8}

# -- the instruction decoders ----------------------------------------------------------------------

# Mostly words with a memory or SYSTEM opcode (the decoders' interesting cases), then any 32 bits.
words = st.one_of(
    st.builds(lambda hi, op: hi << 7 | op, st.integers(0, (1 << 25) - 1), st.sampled_from((*MEM_OPCODES, 0x73))),
    st.builds(lambda hi, op: hi << 7 | op, st.integers(0, (1 << 25) - 1), st.integers(0, 0x7F)),
    st.integers(0, (1 << 32) - 1),
)
halves = st.integers(0, 0xFFFF).filter(lambda h: h & 3 != 3)  # compressed encodings


def check_access(insn: int) -> None:
    access = decode_mem(insn)
    if access is None:
        return
    compressed = insn & 3 != 3
    assert access.width in VALID_WIDTHS
    assert access.length == insn_length(insn & 0xFFFF) == (2 if compressed else 4)
    assert 0 <= access.base < 32 and 0 <= access.reg < 32
    assert not (access.fp and access.signed) and (not access.fp or access.width in (4, 8))
    assert access.kind is AccessKind.LOAD or not access.signed or access.kind is AccessKind.AMO
    if compressed:
        assert insn & 3 in (0, 2)
        assert access.base == 2 or 8 <= access.base < 16  # sp, or x8..x15
        assert 0 <= access.offset < 512 and access.offset % access.width == 0
        assert decode_mem(insn | 0xABCD_0000) == access  # only the low half is the instruction
    else:
        assert insn & 0x7F in MEM_OPCODES
        assert -2048 <= access.offset < 2048
        assert access.kind is not AccessKind.AMO or access.offset == 0


@settings(max_examples=1000)
@given(insn=words)
def test_any_32_bit_word_decodes_to_a_sane_access_or_none(insn: int) -> None:
    check_access(insn)
    op = decode_csr(insn)
    if op is not None:
        assert insn & 0x7F == 0x73 and op.funct3 in (1, 2, 3, 5, 6, 7)
        assert 0 <= op.csr < 4096 and 0 <= op.rd < 32 and 0 <= op.source < 32
    assert isinstance(is_ebreak(insn), bool)


def test_every_compressed_instruction_decodes_to_a_sane_access_or_none() -> None:
    """All 49152 compressed encodings: few enough to check each one."""
    for half in range(0x10000):
        if half & 3 != 3:
            check_access(half)


# -- the page-table walk over random guest memory ------------------------------------------------

RAM_A = 0x8000_0000  # 4 pages, a gap of 2, then 2 more pages: walks may run off either edge
RAM_B = RAM_A + 6 * PAGE
LAYOUT = ((RAM_A, 4 * PAGE), (RAM_B, 2 * PAGE))


def in_ram(gpa: int, size: int) -> bool:
    return any(start <= gpa and gpa + size <= start + length for start, length in LAYOUT)


class CheckedPhysMem(GuestMemory):
    """Guest memory that checks each read it serves against the RAM layout and the bytes there."""

    def __init__(self, regions: list[GuestMemoryRegion]) -> None:
        super().__init__(regions)
        self.reads = 0

    def read_into(self, gpa: int, buf: bytearray | memoryview) -> None:
        size = memoryview(buf).nbytes
        self.reads += 1
        try:
            super().read_into(gpa, buf)
            gpa = int(gpa)  # a plain int for the layout checks below (a GuestPhysAddr + size may pass 2^64)
        except GuestMemoryError:
            assert size == 0 or not in_ram(int(gpa), size), (hex(gpa), size)
            raise
        if size > 0:
            assert in_ram(gpa, size), (hex(gpa), size)
            region = next(r for r in self.regions if int(r.gpa) <= gpa < int(r.gpa) + r.size)
            off = gpa - int(region.gpa)
            assert bytes(buf)[: region.size - off] == bytes(region.view[off : off + size])


def random_tables(seed: int) -> CheckedPhysMem:
    """RAM full of PTEs: pointers to other pages of RAM, leaves of every kind, garbage."""
    rng = random.Random(seed)
    pages = [start + i * PAGE for start, length in LAYOUT for i in range(length // PAGE)]
    targets = [*pages, RAM_A + 4 * PAGE, RAM_B + 2 * PAGE, 0, 0xFFFF_FFFF_F000]

    def pte() -> int:
        kind = rng.randrange(6)
        flags = rng.randrange(256)
        if kind == 0:
            return 0
        if kind == 1:  # a pointer to a next-level table
            return (rng.choice(targets) >> 12) << 10 | 1
        if kind in (2, 3):  # a leaf with random permissions
            return (rng.choice(targets) >> 12) << 10 | flags | 1
        if kind == 4:  # a leaf for a superpage, maybe misaligned
            return rng.randrange(1 << 44) << 10 | flags | 1
        return rng.randrange(1 << 64)

    regions = []
    for start, length in LAYOUT:
        region = GuestMemoryRegion.anonymous(start, length)
        region.view[:] = b"".join(pte().to_bytes(8, "little") for _ in range(length // 8))
        regions.append(region)
    return CheckedPhysMem(regions)


def va_for(rng: random.Random) -> int:
    """A virtual address: mostly sign-extended Sv39/Sv48/Sv57 ones, some not, some at the edges."""
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randrange(1 << 38)
    if kind == 1:
        return U64 - rng.randrange(1 << 38)
    if kind == 2:
        return rng.choice([0, PAGE - 1, PAGE - 2, (1 << 38) - 1, 1 << 38, (1 << 47) - 1, 1 << 56, U64, U64 - PAGE + 1])
    return rng.randrange(1 << 64)


@settings(max_examples=80)
@given(seed=st.integers(0, 2**32 - 1), satp_mode=st.sampled_from([0, 8, 9, 10, 8, 9, 10, 1, 15]))
def test_walk_of_random_page_tables_reads_only_guest_ram(seed: int, satp_mode: int) -> None:
    mem = random_tables(seed)
    rng = random.Random(seed ^ 0x5A5A)
    root = rng.choice([RAM_A, RAM_A + PAGE, RAM_B + PAGE, RAM_A + 4 * PAGE, 0, 0xFFF_FFFF_F000])
    try:
        for _ in range(60):
            va = va_for(rng)
            satp = satp_mode << 60 | rng.randrange(1 << 16) << 44 | root >> 12
            mstatus = rng.randrange(1 << 64)
            priv = rng.choice([0, 1, 2, 3])
            access = rng.choice(list(Access))
            before = mem.reads
            pa = translate(mem, va, access, priv=priv, satp=satp, mstatus=mstatus)
            assert mem.reads - before <= {9: 4, 10: 5}.get(satp_mode, 3)  # one PTE per level at most
            if pa is not None:
                assert 0 <= pa < 1 << 64 and pa & 0xFFF == va & 0xFFF
            if satp_mode not in (8, 9, 10):
                assert pa == va and mem.reads == before  # Bare: no walk at all
            size = rng.choice([1, 2, 4, 8])
            tval = faulting_address(mem, va, size, access, priv=priv, satp=satp, mstatus=mstatus)
            last_page = ((va + size - 1) >> 12) << 12
            assert tval == va or (tval == last_page and va >> 12 != last_page >> 12)
    finally:
        for region in mem.regions:
            region.close()


PHYS = random_tables(1)  # read-only from here on: one memory serves every example


@settings(max_examples=400)
@given(
    gpa=st.one_of(
        st.integers(RAM_A - 16, RAM_B + 3 * PAGE),
        st.sampled_from([0, RAM_A + 4 * PAGE - 4, RAM_B - 1, RAM_B + 2 * PAGE - 8, U64 - 7, U64, 1 << 64]),
        st.integers(-(1 << 8), (1 << 65)),
    ),
    size=st.one_of(st.integers(0, 16), st.integers(0, 3 * PAGE), st.sampled_from([1 << 32, 1 << 64])),
)
def test_physmem_reads_only_whole_ram(gpa: int, size: int) -> None:
    data = read_phys(PHYS, gpa, size)
    if size <= 0:
        assert data == b""
    assert PHYS.contains(gpa) == in_ram(gpa, 1)


# -- a hart running random code --------------------------------------------------------------------

RAM = 0x8000_0000
RAM_SIZE = 0x1_0000
MMIO_WINDOW = 0x1000_0000  # served inline by a handler in half the examples
REG_VALUES = st.one_of(
    st.integers(RAM, RAM + RAM_SIZE - 1),
    st.sampled_from([0, 8, MMIO_WINDOW, MMIO_WINDOW + 0xFFC, RAM - 8, RAM + RAM_SIZE - 4, U64 - 7, U64, 1 << 63]),
    st.integers(0, U64),
)


class Handler:
    """The device manager the backend calls inline for the MMIO window."""

    def __init__(self, values: list[int]) -> None:
        self.values = values or [0]
        self.accesses = 0

    def read(self, addr: int, width: AccessWidth) -> int:
        self.check(addr, width)
        return self.values[self.accesses % len(self.values)]  # deliberately not cut to width

    def write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.check(addr, width)
        assert 0 <= value <= width.mask

    def check(self, addr: int, width: AccessWidth) -> None:
        self.accesses += 1
        assert MMIO_WINDOW <= addr and addr + width <= MMIO_WINDOW + PAGE


@contextmanager
def hart(mmio_exits: bool, handler: Handler | None) -> Iterator[tuple[SoftRiscvBackend, GuestMemoryRegion]]:
    backend = SoftRiscvBackend(1, mmio_exits=mmio_exits, slice_instructions=32)
    ram = GuestMemoryRegion.anonymous(RAM, RAM_SIZE)
    backend.stage2.attach_memory(GuestMemory([ram]))  # the hart's own reads go through it, as in a VM
    flags = MappingFlags.READ | MappingFlags.WRITE | MappingFlags.EXECUTE
    backend.stage2.map(ram, flags)
    if handler is not None:
        backend.set_mmio_handler([(MMIO_WINDOW, PAGE)], handler)
    try:
        yield backend, ram
    finally:
        backend.close()
        ram.close()


@settings(max_examples=100)
@given(
    code=st.lists(st.one_of(words, halves), min_size=1, max_size=64),
    seed=st.integers(0, 2**32 - 1),
    regs=st.lists(REG_VALUES, min_size=31, max_size=31),
    priv=st.sampled_from([0, 1, 3]),
    paging=st.booleans(),
    mode=st.sampled_from(["exits", "handler", "faults"]),
    answers=st.lists(st.integers(0, U64), max_size=4),
)
def test_random_code_ends_every_slice_with_a_defined_exit(
    code: list[int], seed: int, regs: list[int], priv: int, paging: bool, mode: str, answers: list[int]
) -> None:
    handler = Handler(answers) if mode == "handler" else None
    with hart(mode == "exits", handler) as (backend, ram):
        rng = random.Random(seed)
        ram.view[:] = rng.randbytes(RAM_SIZE)  # page tables and trap handlers are random too
        program = b"".join((w & 0xFFFF).to_bytes(2, "little") if w & 3 != 3 else w.to_bytes(4, "little") for w in code)
        ram.view[: len(program)] = program
        vcpu = backend.create_vcpu(0)
        vcpu.setup(GuestPhysAddr(RAM), None)
        for i, value in enumerate(regs, start=1):
            vcpu.set_register(f"x{i}", value)
        vcpu.set_register("mtvec", RAM + rng.randrange(RAM_SIZE // 4) * 4)
        vcpu.set_register("stvec", RAM + rng.randrange(RAM_SIZE // 4) * 4)
        vcpu.set_register("medeleg", rng.randrange(1 << 16))
        if paging:
            vcpu.set_register("satp", 8 << 60 | (RAM >> 12) + rng.randrange(RAM_SIZE >> 12))
        vcpu.set_register("priv", priv)
        for _ in range(8):
            exit_reason = vcpu.run()
            assert type(exit_reason) in (Nothing, Halt, MmioRead, MmioWrite, FailEntry), exit_reason
            if isinstance(exit_reason, MmioRead | MmioWrite):
                assert mode == "exits"
                addr = int(exit_reason.addr)
                assert not RAM <= addr < RAM + RAM_SIZE  # RAM is never an MMIO exit
                assert exit_reason.width in AccessWidth
            if isinstance(exit_reason, MmioWrite):
                assert 0 <= exit_reason.data <= exit_reason.width.mask
            if isinstance(exit_reason, MmioRead):
                vcpu.complete_read(rng.randrange(1 << 64))
            if isinstance(exit_reason, Halt | FailEntry):
                break
        assert vcpu.get_register("x0") == 0


@pytest.mark.timeout(60)  # before the fix, run() never returned: pytest-timeout ends the test
def test_a_trap_vector_the_hart_cannot_fetch_still_ends_the_slice() -> None:
    """S mode, paging on, nothing mapped, stvec pointing at an unmapped page: every fetch fault
    traps straight back to stvec before any instruction runs, so the instruction count never
    ends the slice. run() must still return, with the trap entered, so the VMM can stop the VM."""
    with hart(False, None) as (backend, _ram):
        vcpu = backend.create_vcpu(0)
        vcpu.setup(GuestPhysAddr(RAM), None)
        vcpu.set_register("satp", 8 << 60 | (RAM + PAGE) >> 12)  # an all-zero root table
        vcpu.set_register("medeleg", 1 << 12)  # instruction page faults go to S mode
        vcpu.set_register("stvec", 0x4000_0000)
        vcpu.set_register("pc", 0x4000_0000)
        vcpu.set_register("priv", 1)
        for _ in range(3):
            assert vcpu.run() == Nothing()
        assert vcpu.get_register("scause") == 12 and vcpu.get_register("pc") == 0x4000_0000
        assert vcpu.traps_entered == 3 * 32  # one slice's worth of traps per run()
