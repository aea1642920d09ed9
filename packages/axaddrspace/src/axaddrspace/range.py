"""Address ranges: half-open for memory and MMIO, inclusive for ports and system registers.

Memory ranges are ``[start, end)`` because regions are sized in bytes and abut; port and
system-register ranges follow AxVisor and name their last member (``0x3f8..=0x3ff``), since
their spaces are small and "end" beyond the last port is awkward at the top of the space.
"""

from __future__ import annotations

from dataclasses import dataclass

from .addr import ADDRESS_LIMIT


@dataclass(frozen=True, slots=True)
class AddrRange:
    """A half-open range ``[start, end)``; empty when start == end."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= ADDRESS_LIMIT:
            raise ValueError(f"invalid range [{self.start:#x}, {self.end:#x})")

    @classmethod
    def from_start_size(cls, start: int, size: int) -> AddrRange:
        if size < 0:
            raise ValueError(f"negative size {size}")
        return cls(start, start + size)

    @property
    def size(self) -> int:
        return self.end - self.start

    def is_empty(self) -> bool:
        return self.start == self.end

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def contains_range(self, other: AddrRange) -> bool:
        return self.start <= other.start and other.end <= self.end

    def overlaps(self, other: AddrRange) -> bool:
        """Whether some address lies in both; an empty range overlaps nothing."""
        both_nonempty = self.start < self.end and other.start < other.end
        return both_nonempty and self.start < other.end and other.start < self.end

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.contains(addr)

    def __repr__(self) -> str:
        return f"[{self.start:#x}, {self.end:#x})"


@dataclass(frozen=True, slots=True)
class InclusiveRange:
    """A range ``[start, end]`` naming its last member, as AxVisor's port and sysreg ranges."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end < ADDRESS_LIMIT:
            raise ValueError(f"invalid range [{self.start:#x}, {self.end:#x}]")

    @classmethod
    def from_start_count(cls, start: int, count: int) -> InclusiveRange:
        if count < 1:
            raise ValueError(f"an inclusive range holds at least one member, not {count}")
        return cls(start, start + count - 1)

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def contains(self, addr: int) -> bool:
        return self.start <= addr <= self.end

    def overlaps(self, other: InclusiveRange) -> bool:
        return self.start <= other.end and other.start <= self.end

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.contains(addr)

    def __repr__(self) -> str:
        return f"[{self.start:#x}, {self.end:#x}]"


GuestPhysAddrRange = AddrRange
"""Guest physical memory and MMIO ranges are half-open."""

PortRange = InclusiveRange
"""x86 I/O port ranges, e.g. PortRange(0x3f8, 0x3ff) for COM1."""

SysRegRange = InclusiveRange
"""System register address ranges (aarch64 encodings, riscv CSR numbers)."""
