"""What a consumer of guest RAM may do with it, apart from what the owner of the RAM may do.

As in rust-vmm's vm-memory, access and management are two interfaces. Devices, backends (the
KVM VM's error reports, the soft CPU's page-table walk and instruction fetch) and loaders read
and write guest RAM by guest physical address through these Protocols; adding, removing and
closing regions is ``GuestMemory``'s own business, and only the address space that owns the
memory (``AddrSpace``) does it. A consumer typed against ``GuestMemoryReader`` cannot change the
layout or free the RAM under a running guest, and a test can hand it any object of this shape.

``GuestMemory`` satisfies both Protocols. Every method raises ``GuestMemoryError`` (the guest's
fault, never an IndexError) for a byte that is not RAM, and moves nothing in that case.
Addresses are ``GuestPhysAddr`` here, so a consumer cannot pass a host or guest-virtual address
by mistake; ``GuestMemory`` itself also takes plain ints, for callers that checked their own.
"""

from __future__ import annotations

import ctypes
from typing import Protocol, TypeAlias, TypeVar, runtime_checkable

from .addr import GuestPhysAddr
from .width import AccessWidth

Buffer: TypeAlias = bytes | bytearray | memoryview
_S = TypeVar("_S", bound=ctypes.Structure)


@runtime_checkable
class GuestMemoryReader(Protocol):
    """Read-only access to guest RAM by guest physical address."""

    def contains(self, gpa: GuestPhysAddr, size: int = 1) -> bool:
        """Whether every byte of ``[gpa, gpa + size)`` is RAM (possibly across regions)."""
        ...

    def read_into(self, gpa: GuestPhysAddr, buf: bytearray | memoryview) -> None:
        """Fill ``buf`` from RAM at ``gpa`` (the primitive every read is built on)."""
        ...

    def read(self, gpa: GuestPhysAddr, size: int) -> bytes: ...

    def read_int(self, gpa: GuestPhysAddr, width: AccessWidth) -> int:
        """An unsigned little-endian integer of ``width`` bytes."""
        ...

    def read_u8(self, gpa: GuestPhysAddr) -> int: ...

    def read_u16(self, gpa: GuestPhysAddr) -> int: ...

    def read_u32(self, gpa: GuestPhysAddr) -> int: ...

    def read_u64(self, gpa: GuestPhysAddr) -> int: ...

    def read_struct(self, gpa: GuestPhysAddr, ctype_cls: type[_S]) -> _S: ...

    def view(self, gpa: GuestPhysAddr, size: int) -> memoryview:
        """A zero-copy view of a range inside one region; a reader must not write through it."""
        ...


@runtime_checkable
class GuestMemoryAccess(GuestMemoryReader, Protocol):
    """Read-write access to guest RAM: what devices doing DMA and image loaders need."""

    def write_from(self, gpa: GuestPhysAddr, data: Buffer) -> None:
        """Copy ``data`` into RAM at ``gpa``; on error nothing is written (the write primitive)."""
        ...

    def write(self, gpa: GuestPhysAddr, data: Buffer) -> None: ...

    def fill(self, gpa: GuestPhysAddr, size: int, byte: int = 0) -> None: ...

    def write_int(self, gpa: GuestPhysAddr, width: AccessWidth, value: int) -> None: ...

    def write_u8(self, gpa: GuestPhysAddr, value: int) -> None: ...

    def write_u16(self, gpa: GuestPhysAddr, value: int) -> None: ...

    def write_u32(self, gpa: GuestPhysAddr, value: int) -> None: ...

    def write_u64(self, gpa: GuestPhysAddr, value: int) -> None: ...

    def write_struct(self, gpa: GuestPhysAddr, obj: ctypes.Structure) -> None: ...

    def view(self, gpa: GuestPhysAddr, size: int, *, writable: bool = False) -> memoryview:
        """A zero-copy view inside one region; ``writable=True`` refuses read-only RAM up front."""
        ...
