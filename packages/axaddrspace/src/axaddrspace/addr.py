"""Distinct integer types for the four kinds of address a hypervisor juggles, and region offsets.

Mixing a guest physical address with a host virtual one is the classic VMM bug, so each kind
is its own ``int`` subclass: adding an offset keeps the kind, subtracting two addresses of the
same kind gives a plain offset, and leaving the 64-bit space raises ``AddressOverflowError``.
They stay ``int`` so they index, hash and format like numbers at no cost on hot paths.

``RegionOffset`` is the other half of vm-memory's split (``GuestAddress`` vs
``MemoryRegionAddress``): a byte's position inside one guest memory region. It is not an
address, so two offsets never make an address and an offset never goes negative; an address
plus an offset is an address of the same kind.
"""

from __future__ import annotations

from typing import TypeVar

ADDRESS_BITS = 64
ADDRESS_LIMIT = 1 << ADDRESS_BITS

_A = TypeVar("_A", bound="_Address")


class AddressOverflowError(ValueError):
    """An address computation left the 64-bit address space."""


class _Address(int):
    __slots__ = ()

    def __new__(cls: type[_A], value: int) -> _A:
        if not 0 <= value < ADDRESS_LIMIT:
            raise AddressOverflowError(f"{cls.__name__} {value:#x} is outside 0..2^64-1")
        return super().__new__(cls, value)

    def __add__(self: _A, offset: int) -> _A:
        if isinstance(offset, _Address):
            raise TypeError(f"cannot add two addresses ({type(self).__name__} + {type(offset).__name__})")
        return type(self)(int(self) + offset)

    __radd__ = __add__

    def __sub__(self, other: int) -> int:
        if isinstance(other, _Address):
            if type(other) is not type(self):
                raise TypeError(f"cannot subtract {type(other).__name__} from {type(self).__name__}")
            return int(self) - int(other)
        return type(self)(int(self) - other)

    def align_down(self: _A, align: int) -> _A:
        """Round down to a power-of-two boundary."""
        return type(self)(int(self) & ~(align - 1))

    def align_up(self: _A, align: int) -> _A:
        """Round up to a power-of-two boundary."""
        return type(self)((int(self) + align - 1) & ~(align - 1))

    def is_aligned(self, align: int) -> bool:
        return int(self) & (align - 1) == 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self):#x})"

    __str__ = __repr__


class GuestPhysAddr(_Address):
    """An address in the guest's physical address space (what the guest's page tables produce)."""

    __slots__ = ()


class GuestVirtAddr(_Address):
    """An address the guest uses before its own translation."""

    __slots__ = ()


class HostVirtAddr(_Address):
    """An address in this (VMM) process, e.g. where a guest RAM mmap lives."""

    __slots__ = ()


class HostPhysAddr(_Address):
    """A host physical address; only meaningful for passthrough or identity mappings."""

    __slots__ = ()


class RegionOffset(int):
    """A byte offset inside one guest memory region (``GuestMemoryRegion.offset_of``).

    Checked like the address kinds: it stays in ``0..2^64-1`` (``AddressOverflowError``
    otherwise), adding a plain offset keeps the kind, and two offsets subtract to a plain int.
    Adding it to an address gives that address's kind (``region.gpa + offset``).
    """

    __slots__ = ()

    def __new__(cls, value: int) -> RegionOffset:
        if not 0 <= value < ADDRESS_LIMIT:
            raise AddressOverflowError(f"RegionOffset {value:#x} is outside 0..2^64-1")
        return super().__new__(cls, value)

    def __add__(self, other: int) -> RegionOffset:
        if isinstance(other, _Address):
            return NotImplemented  # address + offset: the address's __radd__ keeps its kind
        return RegionOffset(int(self) + other)

    __radd__ = __add__

    def __sub__(self, other: int) -> int:
        if isinstance(other, _Address):
            raise TypeError(f"cannot subtract {type(other).__name__} from RegionOffset")
        if isinstance(other, RegionOffset):
            return int(self) - int(other)
        return RegionOffset(int(self) - other)

    def __repr__(self) -> str:
        return f"RegionOffset({int(self):#x})"

    __str__ = __repr__
