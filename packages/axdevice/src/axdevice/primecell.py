"""PrimeCell identification registers, shared by the AMBA devices (PL011, PL031).

Every PrimeCell ends its 4 KiB page with PeriphID0-3 at 0xFE0-0xFEC and CellID0-3 at
0xFF0-0xFFC, one byte per word; Linux's amba bus reads them to match a driver.
"""

from __future__ import annotations

ID_OFFSET = 0xFE0
CELL_ID = (0x0D, 0xF0, 0x05, 0xB1)
"""CellID0-3: the PrimeCell preamble 0xB105F00D every AMBA device carries."""


def id_register(id_bytes: tuple[int, ...], offset: int, base: int = ID_OFFSET) -> int:
    """The ID byte at word ``offset`` (one byte per word from ``base``), or 0 outside them.

    ``base`` is 0xFE0 for a PrimeCell; the GICv2 distributor's ID block starts at 0xFD0.
    """
    if base <= offset < base + 4 * len(id_bytes) and offset % 4 == 0:
        return id_bytes[(offset - base) // 4]
    return 0
