"""The soft backend's page walk in each satp mode (privileged spec v1.12 4.4 Sv39, 4.5 Sv48,
4.6 Sv57): a leaf at every level, sign extension of the VA, misaligned superpages, and the
fault decoding built on the walk (``faulting_address``, ``read_virtual``, ``data_fault``).

Sv57 is what Debian's riscv64 kernel runs on this engine (satp 0xa003...), so every helper
that decodes a fault or reads guest code at a virtual PC must walk it too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from axaddrspace import GuestMemory, GuestMemoryRegion
from axvcpu.backends.soft.riscv_fault import data_fault
from axvcpu.backends.soft.riscv_mmu import SATP_MODES, Access, faulting_address, read_virtual, translate
from axvcpu.backends.soft.riscv_priv import EXC_LOAD_PAGE_FAULT, PRIV_S

from .page_tables import LEVELS, PAGE, RAM, RAM_SIZE, SATP_MODE, PageTables, V, page_size, satp_of, va_bits

R, W, X = 2, 4, 8
RWX = V | R | W | X
MODES = list(SATP_MODE)
SIZE_NAMES = {0: "4KiB", 1: "2MiB", 2: "1GiB", 3: "512GiB", 4: "256TiB"}
LEAVES = [(mode, level) for mode in MODES for level in range(LEVELS[mode])]


@pytest.fixture
def tables() -> Iterator[PageTables]:
    region = GuestMemoryRegion.anonymous(RAM, RAM_SIZE)
    made = PageTables(GuestMemory([region]))
    yield made
    made.memory.close()


def walk(tables: PageTables, mode: str, va: int, access: Access = Access.LOAD) -> int | None:
    return translate(tables.memory, va, access, priv=PRIV_S, satp=tables.satp(mode), mstatus=0)


def top_half(mode: str, va: int) -> int:
    """``va`` moved into the top half of ``mode``'s address space (sign-extended from its top bit)."""
    bits = va_bits(mode)
    return (va | 1 << (bits - 1) | ((1 << 64) - (1 << bits))) & ((1 << 64) - 1)


def test_the_mode_table_names_each_mode_the_engine_accepts() -> None:
    assert SATP_MODES == {0: ("bare", 0), 8: ("sv39", 3), 9: ("sv48", 4), 10: ("sv57", 5)}


@pytest.mark.parametrize(("mode", "level"), LEAVES, ids=[f"{m}-{SIZE_NAMES[lv]}" for m, lv in LEAVES])
def test_a_leaf_at_each_level_maps_its_whole_page(tables: PageTables, mode: str, level: int) -> None:
    size = page_size(level)
    va = top_half(mode, 3 * size)  # the top half's first root entry; VPN 3 at the leaf's level
    pa = 5 * size if level < 4 else 1 << 48  # aligned to the page; a PPN still fits 44 bits
    tables.map(mode, va, pa, level, RWX)
    assert walk(tables, mode, va) == pa
    assert walk(tables, mode, va + size - 8) == pa + size - 8
    assert walk(tables, mode, va + 0x123) == pa + 0x123
    assert walk(tables, mode, va - 1) is None  # the page before: not mapped
    assert walk(tables, mode, va + size) is None  # the page after: not mapped
    assert walk(tables, mode, va, Access.STORE) == pa and walk(tables, mode, va, Access.FETCH) == pa


@pytest.mark.parametrize("mode", MODES)
def test_an_address_not_sign_extended_from_the_top_va_bit_faults(tables: PageTables, mode: str) -> None:
    bits = va_bits(mode)
    tables.map(mode, 0, 1 << 48, LEVELS[mode] - 1, RWX)  # everything under root entry 0
    tables.map(mode, top_half(mode, 0), 0xA000_0000, 0, RWX)  # and the top half's first page
    assert walk(tables, mode, 0x1234) == 1 << 48 | 0x1234
    assert walk(tables, mode, top_half(mode, 0x234)) == 0xA000_0234
    assert walk(tables, mode, 1 << bits) is None  # a bit above the VA, top bit clear
    assert walk(tables, mode, 1 << 63 | 0x1234) is None  # bit 63 without the bits below it
    assert walk(tables, mode, 1 << (bits - 1)) is None  # the top VA bit without the bits above it
    assert walk(tables, mode, 1 << (bits - 1) | 1 << 63) is None


def test_sv57_takes_addresses_sv48_calls_non_canonical(tables: PageTables) -> None:
    va = 0x0001_2345_6789_A000  # bits 56:48 = 1: VPN[4] 1 under Sv57; not sign-extended for Sv48
    tables.map("sv57", va, 0x8888_0000, 0, RWX)
    assert walk(tables, "sv57", va + 0x10) == 0x8888_0010
    assert walk(tables, "sv48", va + 0x10) is None
    assert walk(tables, "sv57", 0xFF00_0000_0000_0000) is None  # canonical, root entry 0x100 empty


@pytest.mark.parametrize(
    ("mode", "level"), [lv for lv in LEAVES if lv[1] > 0], ids=[f"{m}-{SIZE_NAMES[lv]}" for m, lv in LEAVES if lv > 0]
)
def test_a_misaligned_superpage_faults(tables: PageTables, mode: str, level: int) -> None:
    va = page_size(level) * 2
    tables.map(mode, va, page_size(level) * 4 + PAGE, level, RWX)  # PPN one page off alignment
    assert walk(tables, mode, va) is None
    assert walk(tables, mode, va + PAGE) is None
    tables.map(mode, va, page_size(level) * 4, level, RWX)  # the same leaf, aligned
    assert walk(tables, mode, va + PAGE) == page_size(level) * 4 + PAGE


def test_sv57_walk_reads_one_entry_per_level_from_satp_root(tables: PageTables) -> None:
    va = top_half("sv57", 0x7F_FFFF_F000)
    tables.map("sv57", va, 0x8123_4000, 0, V | R)
    seen: list[int] = []
    pa = translate(
        tables.memory, va, Access.LOAD, priv=PRIV_S, satp=tables.satp("sv57"), mstatus=0,
        on_pte=lambda addr, _: seen.append(addr),
    )  # fmt: skip
    assert pa == 0x8123_4000
    assert len(seen) == 5 and seen[0] == tables.root("sv57") + 8 * 0x100  # VPN[4]: bits 56:48


def test_sv57_faulting_address_of_a_page_crossing_access(tables: PageTables) -> None:
    va = top_half("sv57", 0x40_0000_0000)  # a page mapped, the one after it not
    tables.map("sv57", va, 0x8100_0000, 0, V | R)
    satp = tables.satp("sv57")

    def tval(addr: int, size: int) -> int:
        return faulting_address(tables.memory, addr, size, Access.LOAD, priv=PRIV_S, satp=satp, mstatus=0)

    assert tval(va + PAGE - 4, 8) == va + PAGE  # first page translates: the second faulted
    assert tval(va - 4, 8) == va - 4  # first page does not translate: it faulted
    insn = 0x0002B503  # ld a0, 0(t0)
    gpr = {5: va - 4}
    trap = data_fault(
        EXC_LOAD_PAGE_FAULT, insn, lambda reg: gpr.get(reg, 0), priv=PRIV_S, satp=satp, mstatus=0, memory=tables.memory
    )
    assert (trap.cause, trap.tval) == (EXC_LOAD_PAGE_FAULT, va - 4)


def test_sv57_virtual_read_reads_the_mapped_bytes(tables: PageTables) -> None:
    va = top_half("sv57", 0x1_0000_0000_0000)
    tables.map("sv57", va, RAM + 0x8_0000, 0, V | R | X)
    tables.memory.write(RAM + 0x8_0000 + 0x10, b"\x13\x05\x10\x00")  # li a0, 1
    satp = tables.satp("sv57")
    got = read_virtual(tables.memory, va + 0x10, 4, Access.FETCH, priv=PRIV_S, satp=satp, mstatus=0)
    assert got == b"\x13\x05\x10\x00"
    assert read_virtual(tables.memory, va + PAGE, 4, Access.FETCH, priv=PRIV_S, satp=satp, mstatus=0) is None


def test_satp_of_puts_the_mode_in_bits_63_60() -> None:
    assert satp_of("sv57", 0x8400_8000) >> 60 == 10 and satp_of("sv39", 0x8400_8000) & ((1 << 44) - 1) == 0x84008
