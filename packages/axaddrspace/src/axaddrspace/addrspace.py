"""AxVisor's guest address space: memory areas over a window of guest physical addresses.

An area is a page-aligned range with permissions and one of two backends, as in AxVisor:

- **linear**: host memory that already exists (a file-backed region, shared memory) is mapped
  at the given guest address and entered into stage-2 at once.
- **alloc**: fresh anonymous RAM. With ``populate=True`` it is entered into stage-2 at once;
  otherwise on the first guest fault inside it (``handle_page_fault``). The whole area is
  mapped then, not the one page, because KVM memory slots and unicorn memory maps are per area:
  mapping page by page would burn a slot (KVM has a few hundred) or a map entry per 4 KiB.

Either way the area's RAM lives in ``memory`` (a ``GuestMemory``), so devices and loaders reach
it even before the guest has touched it. The stage-2 side is whatever ``Stage2Mapper`` the
backend injects; this module never sees KVM or unicorn.

The address space is the one owner of the VM's guest memory. It hands the same ``GuestMemory``
to the backend (``Stage2Mapper.attach_memory``) that devices and loaders use, maps regions of
it, and releases RAM in one order: every stage-2 unmap of a teardown first, then the regions.
"""

from __future__ import annotations

import operator
import threading
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Literal

from .addr import ADDRESS_LIMIT, GuestPhysAddr, HostVirtAddr
from .errors import AddrSpaceError
from .flags import MappingFlags
from .memory import PAGE_SIZE, GuestMemory, GuestMemoryRegion
from .range import AddrRange
from .stage2 import Stage2Mapper

Backend = Literal["linear", "alloc"]


@dataclass(frozen=True)
class MemoryArea:
    """A snapshot of one area: where, with what permissions, how backed, and whether in stage-2."""

    range: AddrRange
    flags: MappingFlags
    backend: Backend
    populated: bool


@dataclass
class _Area:
    range: AddrRange
    flags: MappingFlags
    backend: Backend
    region: GuestMemoryRegion
    populated: bool

    def snapshot(self) -> MemoryArea:
        return MemoryArea(self.range, self.flags, self.backend, self.populated)


def _span(gpa: int, size: int) -> str:
    """A range for messages, even one too malformed to build an AddrRange from."""
    return f"[{gpa:#x}, {gpa + size:#x})"


class AddrSpace:
    """The guest physical window ``[base, base + size)``, its memory areas and their stage-2 map."""

    def __init__(self, base: int, size: int, stage2: Stage2Mapper, memory: GuestMemory | None = None) -> None:
        if base < 0 or size <= 0 or base % PAGE_SIZE or size % PAGE_SIZE or base + size > ADDRESS_LIMIT:
            raise ValueError(
                f"address space window {_span(base, size)} must be non-empty, {PAGE_SIZE}-byte aligned "
                "and inside the 64-bit address space"
            )
        self._window = AddrRange.from_start_size(base, size)
        self._stage2 = stage2
        self._memory = memory if memory is not None else GuestMemory()
        self._lock = threading.RLock()  # vCPU threads fault concurrently; map each area once
        self._starts: list[int] = []
        self._areas: list[_Area] = []
        stage2.attach_memory(self._memory)  # the backend reads the very memory it maps regions of

    @property
    def base(self) -> GuestPhysAddr:
        return GuestPhysAddr(self._window.start)

    @property
    def size(self) -> int:
        return self._window.size

    @property
    def window(self) -> AddrRange:
        return self._window

    @property
    def memory(self) -> GuestMemory:
        """The guest RAM of every area, for device and loader access."""
        return self._memory

    @property
    def stage2(self) -> Stage2Mapper:
        return self._stage2

    @property
    def areas(self) -> tuple[MemoryArea, ...]:
        with self._lock:
            return tuple(area.snapshot() for area in self._areas)

    def find_area(self, gpa: int) -> MemoryArea | None:
        with self._lock:
            area = self._find(gpa)
            return None if area is None else area.snapshot()

    # -- mapping ------------------------------------------------------------------------------

    def map_linear(self, gpa: int, size: int, region: GuestMemoryRegion, flags: MappingFlags) -> None:
        """Map existing host memory ``region`` at ``gpa`` and enter it into stage-2 now."""
        gpa, size = operator.index(gpa), operator.index(size)
        flags = MappingFlags.parse(int(flags))
        with self._lock:
            rng = self._check_new(gpa, size)
            if region.gpa != gpa or region.size != size:
                raise ValueError(f"region {region.range!r} does not match the requested range {rng!r}")
            if region.closed:
                raise ValueError(f"region {region.range!r} is closed")
            if flags & MappingFlags.WRITE and not region.writable:
                raise ValueError(f"region {region.range!r} is read-only but the mapping asks for WRITE")
            self._insert(_Area(rng, flags, "linear", region, populated=False), populate=True)

    def map_alloc(self, gpa: int, size: int, flags: MappingFlags, populate: bool = True) -> GuestMemoryRegion:
        """Allocate zeroed RAM at ``gpa``; enter it into stage-2 now, or on first fault."""
        gpa, size = operator.index(gpa), operator.index(size)
        flags = MappingFlags.parse(int(flags))
        with self._lock:
            rng = self._check_new(gpa, size)
            region = GuestMemoryRegion.anonymous(gpa, size)
            try:
                self._insert(_Area(rng, flags, "alloc", region, populated=False), populate=populate)
            except BaseException:
                region.close()
                raise
            return region

    def unmap(self, gpa: int, size: int) -> None:
        """Remove the areas that exactly make up ``[gpa, gpa + size)`` and free their RAM."""
        gpa, size = operator.index(gpa), operator.index(size)
        with self._lock:
            end = gpa + size
            first = bisect_left(self._starts, gpa)
            last, covered = first, gpa
            while last < len(self._areas) and self._areas[last].range.start == covered < end:
                covered = self._areas[last].range.end
                last += 1
            if size <= 0 or last == first or covered != end:
                raise AddrSpaceError(f"range {_span(gpa, size)} does not match mapped areas exactly")
            self._remove(self._areas[first:last])

    def clear(self) -> None:
        """Unmap every area and free its RAM: all stage-2 unmaps first, then the regions."""
        with self._lock:
            self._remove(list(self._areas))

    def close(self) -> None:
        """VM teardown: ``clear``, then close whatever else the memory holds; safe to repeat.

        Call it once no vCPU runs; the backend may close afterwards (it holds no RAM then).
        """
        with self._lock:
            self.clear()
            self._memory.close()

    # -- lookups ------------------------------------------------------------------------------

    def translate(self, gpa: int) -> tuple[HostVirtAddr, MappingFlags] | None:
        """The host address backing ``gpa`` and the area's flags; None if nothing is mapped.

        An alloc area not yet in stage-2 still translates: its host memory exists already.
        """
        with self._lock:
            area = self._find(gpa)
            if area is None:
                return None
            return area.region.host_addr + area.region.offset_of(operator.index(gpa)), area.flags

    def handle_page_fault(self, gpa: int, access: MappingFlags) -> bool:
        """Populate the lazy area containing ``gpa`` if ``access`` is allowed there.

        False means the fault is not ours to fix (no area, access not permitted, or the area is
        already in stage-2), and the caller should treat it as a guest fault or an MMIO access.
        """
        with self._lock:
            area = self._find(gpa)
            if area is None or area.populated or int(access) & ~int(area.flags):
                return False
            self._stage2_map(area)
            return True

    # -- internals ----------------------------------------------------------------------------

    def _find(self, gpa: int) -> _Area | None:
        i = bisect_right(self._starts, gpa) - 1
        if i >= 0 and self._areas[i].range.contains(gpa):
            return self._areas[i]
        return None

    def _check_new(self, gpa: int, size: int) -> AddrRange:
        """The range of a new area, or AddrSpaceError naming it and what is wrong."""
        span = _span(gpa, size)
        if size <= 0:
            raise AddrSpaceError(f"range {span} is empty")
        if gpa % PAGE_SIZE or size % PAGE_SIZE:
            raise AddrSpaceError(f"range {span} is not {PAGE_SIZE}-byte aligned")
        if not (self._window.start <= gpa and gpa + size <= self._window.end):
            raise AddrSpaceError(f"range {span} lies outside the address space window {self._window!r}")
        rng = AddrRange.from_start_size(gpa, size)
        i = bisect_right(self._starts, gpa)
        for area in self._areas[max(i - 1, 0) : i + 1]:
            if area.range.overlaps(rng):
                raise AddrSpaceError(f"range {rng!r} overlaps mapped area {area.range!r}", rng)
        return rng

    def _insert(self, area: _Area, *, populate: bool) -> None:
        # A linear region the caller already put into ``memory`` is adopted, not added twice.
        added = self._memory.find_region(area.range.start) is not area.region
        if added:
            self._memory.add_region(area.region)
        try:
            if populate:
                self._stage2_map(area)
        except BaseException:
            if added:
                self._memory.remove_region(area.range.start)
            raise
        i = bisect_right(self._starts, area.range.start)
        self._starts.insert(i, area.range.start)
        self._areas.insert(i, area)

    def _stage2_map(self, area: _Area) -> None:
        self._stage2.map(area.region, area.flags)
        area.populated = True

    def _remove(self, areas: list[_Area]) -> None:
        """Take ``areas`` out of stage-2, every one of them, and only then free their RAM, so
        neither the guest nor the backend ever reaches host memory that is being freed."""
        for area in areas:
            if area.populated:
                self._stage2.unmap(GuestPhysAddr(area.range.start), area.range.size)
                area.populated = False
        for area in areas:
            i = self._areas.index(area)
            del self._starts[i]
            del self._areas[i]
            self._memory.remove_region(area.range.start)
            area.region.close()

    def __repr__(self) -> str:
        return f"AddrSpace(window={self._window!r}, areas={len(self._areas)})"
