"""Access widths of guest loads, stores and port I/O."""

from __future__ import annotations

import enum


class AccessWidth(enum.IntEnum):
    """The size in bytes of one guest access; the enum value is the byte count."""

    BYTE = 1
    WORD = 2
    DWORD = 4
    QWORD = 8

    @classmethod
    def from_size(cls, size: int) -> AccessWidth:
        """The width for ``size`` bytes; ValueError for anything but 1, 2, 4 or 8."""
        try:
            return cls(size)
        except ValueError:
            raise ValueError(f"access size {size} is not one of 1, 2, 4, 8 bytes") from None

    @property
    def size(self) -> int:
        return int(self)

    @property
    def bits(self) -> int:
        return int(self) * 8

    @property
    def mask(self) -> int:
        """All ones at this width, the value an unhandled read returns."""
        return (1 << (int(self) * 8)) - 1


def sign_extend(value: int, bits: int, to_bits: int) -> int:
    """The low ``bits`` of ``value`` sign-extended to ``to_bits``, as an unsigned number: what a
    signed load (riscv's lb, lh, lw) leaves in its register. The one place exit dispatch and the
    soft backend both take it from."""
    value &= (1 << bits) - 1
    if value >> (bits - 1):
        value -= 1 << bits
    return value & ((1 << to_bits) - 1)
