"""Guest RAM: mmap-backed regions, and the set of them the guest sees as physical memory.

Theory of operation. Each ``GuestMemoryRegion`` is one host mmap standing for a contiguous,
page-aligned piece of guest physical address space. ``GuestMemory`` keeps the regions sorted and
non-overlapping and answers every access the VMM makes on the guest's behalf (devices reading
descriptors, loaders writing images, block I/O filling buffers).

Every address and length here may come from the guest, so all accesses go through one splitter,
``GuestMemory._pieces``: it checks the whole range and cuts it at region boundaries before a
single byte moves. The two primitives ``read_into`` and ``write_from`` copy those pieces; the
integer, struct and fill helpers are built on the primitives, and ``view`` hands out a zero-copy
slice only when the range lies inside one region. A range that is not wholly backed raises
``GuestMemoryError`` and changes nothing, so a device can turn it into its defined error.

The region list is replaced, never mutated, so a vCPU thread reading guest memory always sees
one consistent layout while another thread adds or removes a region.

Access and management are separate (``access``): consumers depend on ``GuestMemoryReader`` or
``GuestMemoryAccess``, which ``GuestMemory`` satisfies; ``add_region``, ``remove_region`` and
``close`` belong to the owner of the memory, the VM's ``AddrSpace``, which releases a region only
after the backend has removed it from stage-2. One ``GuestMemory`` serves every consumer of a
VM: devices, loaders, and the backend itself.
"""

from __future__ import annotations

import ctypes
import mmap
import operator
import os
import sys
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from .access import Buffer, GuestMemoryAccess
from .addr import ADDRESS_LIMIT, GuestPhysAddr, HostVirtAddr, RegionOffset
from .errors import AddrSpaceError, GuestMemoryError
from .range import AddrRange
from .width import AccessWidth

PAGE_SIZE = 4096
"""Guest page granule: regions and mappings are aligned to it (the smallest stage-2 page)."""

_FILL_CHUNK = 1 << 20
"""Bytes written per step by ``fill``, so clearing gigabytes of RAM never allocates gigabytes."""

_S = TypeVar("_S", bound=ctypes.Structure)


def _map_noreserve() -> int:
    """MAP_NORESERVE, so a large sparse guest RAM does not count against overcommit up front.

    Python's mmap module only exports it from 3.13; before that use the kernel's value on the
    architectures where it is 0x4000, and do without elsewhere (the mapping still works).
    """
    value = getattr(mmap, "MAP_NORESERVE", None)
    if value is not None:
        return int(value)
    generic = {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "riscv64", "s390x"}
    if sys.platform.startswith("linux") and os.uname().machine.lower() in generic:
        return 0x4000
    return 0


_MAP_NORESERVE = _map_noreserve()


def _check_layout(what: str, gpa: int, size: int) -> None:
    """Reject a region that is not page aligned or does not fit the 64-bit address space."""
    gpa, size = operator.index(gpa), operator.index(size)
    if gpa < 0 or gpa % PAGE_SIZE:
        raise ValueError(f"{what}: guest physical address {gpa:#x} is not {PAGE_SIZE}-byte aligned")
    if size <= 0 or size % PAGE_SIZE:
        raise ValueError(f"{what}: size {size:#x} is not a positive multiple of {PAGE_SIZE} bytes")
    if gpa + size > ADDRESS_LIMIT:
        raise ValueError(f"{what}: [{gpa:#x}, {gpa + size:#x}) runs past the 64-bit address space")


def _buffer_address(mm: mmap.mmap) -> int:
    """The host virtual address of the mmap's first byte.

    ctypes can only tell the address of an object it overlays on the buffer, and that overlay
    holds a buffer export which would stop the mmap from ever being closed; so drop it at once.
    """
    try:
        probe = ctypes.c_char.from_buffer(mm)
    except TypeError:
        raise ValueError("guest RAM mmap must be writable (map read-only files MAP_PRIVATE)") from None
    try:
        return ctypes.addressof(probe)
    finally:
        del probe


class GuestMemoryRegion:
    """A contiguous piece of guest RAM backed by one host mmap.

    The region keeps its mmap alive for as long as the region lives: the mmap's host address
    is handed to KVM memory slots or unicorn's ``mem_map_ptr``, and a collected mmap would be
    unmapped underneath a running guest. Remove it from the stage-2 map first, then ``close()``.
    """

    def __init__(self, gpa: int, mm: mmap.mmap, *, writable: bool = True) -> None:
        """Adopt ``mm`` as guest RAM at ``gpa``; the region owns and will close it.

        ``writable=False`` makes the VMM's own accesses read-only (writes raise
        ``GuestMemoryError``, views are read-only); the mmap itself must still be writable,
        because ctypes can only take the address of a writable buffer.
        """
        size = len(mm)
        _check_layout("guest RAM region", gpa, size)
        self._gpa = GuestPhysAddr(gpa)
        self._size = size
        self._start = int(gpa)  # plain ints for the hot path: no checked arithmetic per access
        self._end = int(gpa) + size
        self._mm: mmap.mmap | None = mm
        self._writable = writable
        self._host_addr = HostVirtAddr(_buffer_address(mm))
        self._base_view = memoryview(mm)
        self._view = self._base_view if writable else self._base_view.toreadonly()
        self._closed = False

    @classmethod
    def anonymous(cls, gpa: int, size: int) -> GuestMemoryRegion:
        """Fresh zeroed RAM; host pages are only allocated when first touched."""
        _check_layout("anonymous guest RAM region", gpa, size)
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
        mm = mmap.mmap(-1, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        return cls(gpa, mm)

    @classmethod
    def from_file(
        cls,
        gpa: int,
        path: str | os.PathLike[str],
        size: int | None = None,
        offset: int = 0,
        writable: bool = True,
        shared: bool = True,
    ) -> GuestMemoryRegion:
        """RAM backed by ``path`` from ``offset`` (``size`` defaults to the rest of the file).

        ``writable and shared`` maps MAP_SHARED, so guest writes reach the file (persistent
        memory, flash images, memory shared with another process). Otherwise the mapping is
        MAP_PRIVATE: writes, if allowed at all, stay in this process's copy.
        """
        what = f"guest RAM region from {os.fspath(path)!r}"
        if offset < 0 or offset % mmap.ALLOCATIONGRANULARITY:
            raise ValueError(f"{what}: offset {offset:#x} is not a multiple of the host page size")
        to_file = writable and shared
        fd = os.open(path, (os.O_RDWR if to_file else os.O_RDONLY) | os.O_CLOEXEC)
        try:
            file_size = os.fstat(fd).st_size
            if size is None:
                size = file_size - offset
            _check_layout(what, gpa, size)
            if offset + size > file_size:
                raise ValueError(f"{what}: needs {offset + size:#x} bytes, the file has {file_size:#x}")
            flags = mmap.MAP_SHARED if to_file else mmap.MAP_PRIVATE
            mm = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        finally:
            os.close(fd)  # the mapping keeps the file referenced on its own
        return cls(gpa, mm, writable=writable)

    @property
    def gpa(self) -> GuestPhysAddr:
        return self._gpa

    @property
    def size(self) -> int:
        return self._size

    @property
    def range(self) -> AddrRange:
        return AddrRange(self._start, self._end)

    @property
    def host_addr(self) -> HostVirtAddr:
        """Where the first byte lives in this process; valid until ``close()``.

        Only a stage-2 mapper needs it (a KVM memory slot, unicorn's ``mem_map_ptr``), and only
        between ``map`` and ``unmap``; everything else reads through ``GuestMemory``.
        """
        return self._host_addr

    def offset_of(self, gpa: int) -> RegionOffset:
        """Where guest physical ``gpa`` lies in this region; GuestMemoryError outside it."""
        if not self._start <= gpa < self._end:
            raise GuestMemoryError(int(gpa), 1, f"is outside guest RAM region {self.range!r}")
        return RegionOffset(int(gpa) - self._start)

    def address_of(self, offset: RegionOffset) -> GuestPhysAddr:
        """The guest physical address of byte ``offset``; GuestMemoryError past the end."""
        if not 0 <= offset < self._size:
            raise GuestMemoryError(self._start + int(offset), 1, f"is outside guest RAM region {self.range!r}")
        return self._gpa + offset

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def view(self) -> memoryview:
        """A memoryview over the whole region (read-only if the region is)."""
        if self._closed:
            raise ValueError(f"guest RAM region {self.range!r} is closed")
        return self._view

    def flush(self) -> None:
        """Write dirty pages of a file-backed region back to the file now."""
        if self._mm is not None:
            self._mm.flush()

    def close(self) -> None:
        """Give the RAM back to the host.

        If some caller still holds a view into the region, the mmap refuses to unmap (a dangling
        view would crash the process); the region lets go of it and it is unmapped when the last
        view is released. Either way the region is unusable afterwards.
        """
        if self._closed:
            return
        self._closed = True
        self._view.release()
        self._base_view.release()
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # borrowed views keep it alive; it unmaps when they go

    def __enter__(self) -> GuestMemoryRegion:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"host {int(self._host_addr):#x}"
        return f"GuestMemoryRegion({self.range!r}, {state})"


_Listener = tuple[Callable[[int, int], None], Callable[[Sequence[tuple[int, int]]], None] | None]
"""A write listener: one range at a time, and optionally many at once."""

_Piece = tuple[memoryview, int, int]
"""(region view, offset into it, length): one region's share of an access."""


class GuestMemory:
    """The guest's RAM: a sorted set of non-overlapping regions, accessed by guest address.

    Satisfies ``GuestMemoryAccess`` (and so ``GuestMemoryReader``); the region set methods are
    the owner's (``AddrSpace``), not a consumer's.
    """

    def __init__(self, regions: Iterable[GuestMemoryRegion] = ()) -> None:
        self._lock = threading.Lock()  # serialises writers; readers use the immutable layout
        self._layout: tuple[tuple[int, ...], tuple[GuestMemoryRegion, ...], int] = ((), (), 0)
        self._write_listeners: tuple[_Listener, ...] = ()
        for region in regions:
            self.add_region(region)

    def add_write_listener(
        self,
        listener: Callable[[int, int], None],
        many: Callable[[Sequence[tuple[int, int]]], None] | None = None,
    ) -> None:
        """Call ``listener(gpa, size)`` for each write through ``write_from`` or a writable
        ``view`` (handed out just before the caller writes): a software CPU drops the code it
        translated from those bytes (device DMA never passes through its engine). ``many``, if
        given, hears the ranges of one writable ``views`` call in one call (a block request's
        hundreds of pages), instead of ``listener`` once per range."""
        with self._lock:
            self._write_listeners = (*self._write_listeners, (listener, many))

    def _written(self, gpa: int, size: int) -> None:
        for listener, _ in self._write_listeners:
            listener(gpa, size)

    def _written_many(self, ranges: Sequence[tuple[int, int]]) -> None:
        for listener, many in self._write_listeners:
            if many is not None:
                many(ranges)
            else:
                for gpa, size in ranges:
                    listener(gpa, size)

    # -- the region set ---------------------------------------------------------------------

    def add_region(self, region: GuestMemoryRegion) -> None:
        """Add ``region``; AddrSpaceError if it overlaps a region already present."""
        if region.closed:
            raise ValueError(f"cannot add closed guest RAM region {region.range!r}")
        with self._lock:
            starts, regions, total = self._layout
            i = bisect_right(starts, region._start)
            for neighbour in regions[max(i - 1, 0) : i + 1]:
                if neighbour.range.overlaps(region.range):
                    raise AddrSpaceError(
                        f"guest RAM region {region.range!r} overlaps region {neighbour.range!r}",
                        region.range,
                    )
            self._layout = (
                (*starts[:i], region._start, *starts[i:]),
                (*regions[:i], region, *regions[i:]),
                total + region.size,
            )

    def remove_region(self, gpa: int) -> GuestMemoryRegion:
        """Take out the region starting at ``gpa`` and return it; the caller closes it."""
        with self._lock:
            starts, regions, total = self._layout
            i = bisect_right(starts, gpa) - 1
            if i < 0 or starts[i] != gpa:
                raise AddrSpaceError(f"no guest RAM region starts at {gpa:#x}")
            region = regions[i]
            self._layout = (starts[:i] + starts[i + 1 :], regions[:i] + regions[i + 1 :], total - region.size)
            return region

    @property
    def regions(self) -> tuple[GuestMemoryRegion, ...]:
        return self._layout[1]

    @property
    def total_size(self) -> int:
        return self._layout[2]

    def find_region(self, gpa: int) -> GuestMemoryRegion | None:
        starts, regions, _ = self._layout
        i = bisect_right(starts, gpa) - 1
        if i >= 0 and gpa < regions[i]._end:
            return regions[i]
        return None

    def contains(self, gpa: int, size: int = 1) -> bool:
        """Whether every byte of ``[gpa, gpa + size)`` is RAM, possibly across adjacent regions."""
        try:
            self._pieces(gpa, size)
        except GuestMemoryError:
            return False
        return True

    def close(self) -> None:
        """Remove and close every region (tests, and a VM being torn down)."""
        for region in self.regions:
            self.remove_region(region._start).close()

    # -- the one place an access is split at region boundaries ------------------------------

    def _pieces(self, gpa: int, size: int, *, for_write: bool = False) -> list[_Piece]:
        """Cut ``[gpa, gpa + size)`` into per-region pieces, or raise before anything moves."""
        # Plain ints: address-typed arithmetic would raise its own overflow error, and a float
        # or other non-integer is a VMM bug (TypeError), not a guest fault.
        gpa, size = operator.index(gpa), operator.index(size)
        if size < 0:
            raise GuestMemoryError(gpa, size, "has a negative size")
        if gpa < 0 or gpa + size > ADDRESS_LIMIT:
            raise GuestMemoryError(gpa, size, "is outside the 64-bit guest physical address space")
        starts, regions, _ = self._layout
        pieces: list[_Piece] = []
        addr, end = gpa, gpa + size
        i = bisect_right(starts, addr) - 1
        while addr < end:
            if i < 0 or i >= len(regions) or not regions[i]._start <= addr < regions[i]._end:
                raise GuestMemoryError(addr, size)
            region = regions[i]
            if for_write and not region._writable:
                raise GuestMemoryError(addr, size, "is read-only guest memory")
            n = min(end, region._end) - addr
            pieces.append((region._view, addr - region._start, n))
            addr += n
            i += 1
        return pieces

    # -- primitives ---------------------------------------------------------------------------

    def read_into(self, gpa: int, buf: bytearray | memoryview) -> None:
        """Fill ``buf`` from guest memory at ``gpa``; GuestMemoryError if any byte is not RAM."""
        with memoryview(buf) as raw, raw.cast("B") as dst:
            pieces = self._pieces(gpa, dst.nbytes)
            if len(pieces) == 1:
                view, off, n = pieces[0]
                dst[:] = view[off : off + n]
                return
            # Staged, so a destination that is itself guest RAM behaves like memmove.
            staged = bytearray(dst.nbytes)
            done = 0
            for view, off, n in pieces:
                staged[done : done + n] = view[off : off + n]
                done += n
            dst[:] = staged

    def write_from(self, gpa: int, data: Buffer) -> None:
        """Copy ``data`` into guest memory at ``gpa``; on error nothing is written."""
        with memoryview(data) as raw, raw.cast("B") as src:
            pieces = self._pieces(gpa, src.nbytes, for_write=True)
            if len(pieces) == 1:
                view, off, n = pieces[0]
                view[off : off + n] = src
            else:
                staged = src.tobytes()  # as in read_into: overlapping guest RAM moves like memmove
                done = 0
                for view, off, n in pieces:
                    view[off : off + n] = staged[done : done + n]
                    done += n
            if self._write_listeners:  # after the bytes landed: a listener may re-read them at once
                self._written(gpa, src.nbytes)

    def view(self, gpa: int, size: int, *, writable: bool = False) -> memoryview:
        """A zero-copy view of ``[gpa, gpa + size)``, which must lie inside one region.

        Callers that write through the view (block reads into guest buffers) pass
        ``writable=True`` so a read-only region gives GuestMemoryError, not a TypeError later.
        """
        pieces = self._pieces(gpa, size, for_write=writable)
        if writable and self._write_listeners:
            self._written(gpa, size)
        if not pieces:
            return memoryview(bytearray())
        if len(pieces) > 1:
            raise GuestMemoryError(gpa + pieces[0][2], size, "crosses from one guest RAM region into another")
        view, off, n = pieces[0]
        return view[off : off + n]

    # -- scatter-gather: one call for a device's whole buffer list ------------------------------

    def backed(self, gpa: int, size: int, *, writable: bool = False) -> bool:
        """Whether every byte of ``[gpa, gpa + size)`` is RAM (writable RAM if ``writable``).

        The check a device makes on each buffer a driver names, before moving a byte: one
        bisection and no objects when the range lies in one region (virtio-blk checks every
        4 KiB page of a request this way).
        """
        if gpa < 0 or size <= 0:
            return size == 0 and gpa <= ADDRESS_LIMIT  # as ``contains``: an empty range needs no RAM
        starts, regions, _ = self._layout
        i = bisect_right(starts, gpa) - 1
        end = gpa + size
        while i >= 0 and i < len(regions):
            region = regions[i]
            if not region._start <= gpa < region._end or (writable and not region._writable):
                return False
            if end <= region._end:
                return True
            gpa = region._end
            i += 1
        return False

    def views(self, segments: Iterable[tuple[int, int]], *, writable: bool = False) -> list[memoryview]:
        """Zero-copy views of ``(gpa, size)`` ranges in order, each cut where regions meet.

        GuestMemoryError, with no view left open, if any byte is not RAM (or read-only RAM when
        ``writable``). The write listeners hear about writable views once per run of adjacent
        ranges, not once per range: a 1 MiB block read is one call, not 256.
        """
        starts, regions, _ = self._layout
        count = len(regions)
        out: list[memoryview] = []
        runs: list[list[int]] = []
        try:
            for gpa, size in segments:
                if size <= 0:
                    if size < 0:
                        raise GuestMemoryError(gpa, size, "has a negative size")
                    continue
                if gpa < 0:
                    raise GuestMemoryError(gpa, size)
                if runs and runs[-1][1] == gpa:
                    runs[-1][1] = gpa + size
                else:
                    runs.append([gpa, gpa + size])
                addr, end = gpa, gpa + size
                i = bisect_right(starts, addr) - 1
                while addr < end:
                    if i < 0 or i >= count or not regions[i]._start <= addr < regions[i]._end:
                        raise GuestMemoryError(addr, size)
                    region = regions[i]
                    if writable and not region._writable:
                        raise GuestMemoryError(addr, size, "is read-only guest memory")
                    stop = min(end, region._end)
                    out.append(region._view[addr - region._start : stop - region._start])
                    addr = stop
                    i += 1
        except GuestMemoryError:
            for view in out:
                view.release()
            raise
        if writable and self._write_listeners and runs:
            self._written_many([(first, last - first) for first, last in runs])
        return out

    # -- helpers built on the primitives --------------------------------------------------------

    def read(self, gpa: int, size: int) -> bytes:
        if size < 0 or size > self.total_size:
            self._pieces(gpa, size)  # raises: a guest length never sizes an allocation beyond RAM
        buf = bytearray(size)
        self.read_into(gpa, buf)
        return bytes(buf)

    def write(self, gpa: int, data: Buffer) -> None:
        self.write_from(gpa, data)

    def fill(self, gpa: int, size: int, byte: int = 0) -> None:
        """Set ``size`` bytes to ``byte``, checking the whole range before writing any."""
        if not 0 <= byte <= 0xFF:
            raise ValueError(f"fill byte {byte:#x} is not in 0..0xff")
        self._pieces(gpa, size, for_write=True)
        chunk = memoryview(bytes([byte]) * min(size, _FILL_CHUNK))
        for done in range(0, size, _FILL_CHUNK):
            self.write_from(gpa + done, chunk[: min(_FILL_CHUNK, size - done)])

    def read_int(self, gpa: int, width: AccessWidth) -> int:
        """An unsigned little-endian integer of ``width`` bytes."""
        buf = bytearray(AccessWidth.from_size(int(width)))
        self.read_into(gpa, buf)
        return int.from_bytes(buf, "little")

    def write_int(self, gpa: int, width: AccessWidth, value: int) -> None:
        width = AccessWidth.from_size(int(width))
        if not 0 <= value <= width.mask:
            raise ValueError(f"value {value:#x} does not fit in {width.size} unsigned bytes")
        self.write_from(gpa, value.to_bytes(width.size, "little"))

    def read_u8(self, gpa: int) -> int:
        return self.read_int(gpa, AccessWidth.BYTE)

    def read_u16(self, gpa: int) -> int:
        return self.read_int(gpa, AccessWidth.WORD)

    def read_u32(self, gpa: int) -> int:
        return self.read_int(gpa, AccessWidth.DWORD)

    def read_u64(self, gpa: int) -> int:
        return self.read_int(gpa, AccessWidth.QWORD)

    def write_u8(self, gpa: int, value: int) -> None:
        self.write_int(gpa, AccessWidth.BYTE, value)

    def write_u16(self, gpa: int, value: int) -> None:
        self.write_int(gpa, AccessWidth.WORD, value)

    def write_u32(self, gpa: int, value: int) -> None:
        self.write_int(gpa, AccessWidth.DWORD, value)

    def write_u64(self, gpa: int, value: int) -> None:
        self.write_int(gpa, AccessWidth.QWORD, value)

    def read_struct(self, gpa: int, ctype_cls: type[_S]) -> _S:
        """A copy of the ctypes structure stored at ``gpa`` (say, a virtqueue descriptor)."""
        buf = bytearray(ctypes.sizeof(ctype_cls))
        self.read_into(gpa, buf)
        return ctype_cls.from_buffer_copy(buf)

    def write_struct(self, gpa: int, obj: ctypes.Structure) -> None:
        self.write_from(gpa, memoryview(obj))

    def __repr__(self) -> str:
        ranges = ", ".join(repr(region.range) for region in self.regions)
        return f"GuestMemory({ranges})"


if TYPE_CHECKING:  # the type checker proves GuestMemory is what consumers are typed against
    _ACCESS: type[GuestMemoryAccess] = GuestMemory
