"""Sv39/Sv48/Sv57 page tables written into guest RAM, for the walk's tests.

Each mode gets its own root table; ``map`` creates the tables down to the leaf's level (a
bump allocator over the RAM above ``TABLES``) and writes the leaf, replacing what was there.
"""

from __future__ import annotations

from axaddrspace import GuestMemory

RAM = 0x8000_0000
RAM_SIZE = 0x10_0000
TABLES = RAM + 0x1_0000  # page tables from here up; the RAM below is free for data
PAGE = 0x1000
V = 1
SATP_MODE = {"sv39": 8, "sv48": 9, "sv57": 10}
LEVELS = {"sv39": 3, "sv48": 4, "sv57": 5}


def page_size(level: int) -> int:
    """The size a leaf at ``level`` maps: 4 KiB at 0, 2 MiB at 1 ... 256 TiB at 4."""
    return PAGE << (9 * level)


def va_bits(mode: str) -> int:
    return 12 + 9 * LEVELS[mode]


def satp_of(mode: str, root: int) -> int:
    return SATP_MODE[mode] << 60 | root >> 12


class PageTables:
    """The page tables of each mode in ``memory``, built entry by entry."""

    def __init__(self, memory: GuestMemory, tables: int = TABLES, end: int = RAM + RAM_SIZE) -> None:
        self.memory = memory
        self._next = tables
        self._end = end
        self._roots: dict[str, int] = {}

    def alloc(self) -> int:
        """A zeroed 4 KiB table."""
        table = self._next
        if table + PAGE > self._end:
            raise MemoryError("the test ran out of page-table space")
        self._next += PAGE
        self.memory.write(table, bytes(PAGE))
        return table

    def root(self, mode: str) -> int:
        if mode not in self._roots:
            self._roots[mode] = self.alloc()
        return self._roots[mode]

    def satp(self, mode: str) -> int:
        return satp_of(mode, self.root(mode))

    def map(self, mode: str, va: int, pa: int, level: int, flags: int) -> None:
        """A leaf for ``va`` at ``level`` pointing at ``pa`` (its PPN as given: a misaligned
        ``pa`` makes a misaligned superpage), with ``flags`` in its low bits."""
        table = self.root(mode)
        for current in range(LEVELS[mode] - 1, level, -1):
            slot = table + 8 * ((va >> (12 + 9 * current)) & 0x1FF)
            entry = self.memory.read_u64(slot)
            if entry & V and not entry & 0xE:  # already a pointer to a table
                table = (entry >> 10) << 12
                continue
            below = self.alloc()
            self.memory.write_u64(slot, (below >> 12) << 10 | V)
            table = below
        self.write_entry(table + 8 * ((va >> (12 + 9 * level)) & 0x1FF), (pa >> 12) << 10 | flags)

    def write_entry(self, slot: int, value: int) -> None:
        self.memory.write_u64(slot, value)
