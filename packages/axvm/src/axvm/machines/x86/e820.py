"""The guest's physical memory map in e820 terms (what BIOS INT 15h/E820 would report)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import layout

E820_RAM = 1
E820_RESERVED = 2


@dataclass(frozen=True)
class E820Entry:
    addr: int
    size: int
    type: int


def e820_map(ram: Iterable[tuple[int, int]]) -> list[E820Entry]:
    """RAM regions as e820 entries, with the legacy hole (EBDA, VGA, BIOS) cut out and reserved."""
    hole_start, hole_end = layout.LEGACY_HOLE
    entries = []
    for start, size in sorted(ram):
        end = start + size
        if start < hole_end and hole_start < end:
            if start < hole_start:
                entries.append(E820Entry(start, hole_start - start, E820_RAM))
            entries.append(E820Entry(max(start, hole_start), min(end, hole_end) - max(start, hole_start),
                                     E820_RESERVED))
            if end > hole_end:
                entries.append(E820Entry(hole_end, end - hole_end, E820_RAM))
        else:
            entries.append(E820Entry(start, size, E820_RAM))
    return entries
