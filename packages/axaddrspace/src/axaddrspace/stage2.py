"""The stage-2 mapping interface: how guest physical ranges reach host memory.

Each execution backend has its own second-stage translation: KVM memory slots
(KVM_SET_USER_MEMORY_REGION), unicorn's ``mem_map_ptr``. ``AddrSpace`` only ever talks to this
Protocol, so it stays backend-free, and the backends live in axvcpu and inject themselves.
``InMemoryStage2`` records mappings in a sorted list, for tests and for users with no backend.

A backend is handed the VM's one ``GuestMemory`` (as a ``GuestMemoryReader``) and then told
which of its regions to map; it reads guest RAM only through that memory, and takes a region's
host address only to enter it into the hardware or engine between ``map`` and ``unmap``. The
address space unmaps a region before it closes it, so no backend holds host memory being freed.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .access import GuestMemoryReader
from .addr import ADDRESS_LIMIT, GuestPhysAddr, HostVirtAddr
from .errors import AddrSpaceError
from .flags import MappingFlags
from .memory import GuestMemory, GuestMemoryRegion
from .range import AddrRange


@runtime_checkable
class Stage2Mapper(Protocol):
    """What a backend implements so guest physical ranges reach host memory.

    ``attach_memory`` hands over the guest memory the backend reads through, once, before any
    ``map``; ``map`` is called once per area with its region (a region of that memory);
    ``unmap`` with exactly a range previously mapped, after which the backend holds nothing of
    the region. Backends raise AddrSpaceError for requests they cannot honour.
    """

    def attach_memory(self, memory: GuestMemoryReader) -> None: ...

    def map(self, region: GuestMemoryRegion, flags: MappingFlags) -> None: ...

    def unmap(self, gpa: GuestPhysAddr, size: int) -> None: ...


def region_to_map(region: GuestMemoryRegion) -> tuple[GuestPhysAddr, int, HostVirtAddr]:
    """(gpa, size, host address) of a region a backend is asked to map; AddrSpaceError if closed.

    The host address is read once, here, for the backend to enter into its stage-2; a closed
    region has none (its mmap may already be gone).
    """
    if region.closed:
        raise AddrSpaceError(f"cannot map closed guest RAM region {region.range!r}", region.range)
    return region.gpa, region.size, region.host_addr


class AttachedMemory:
    """The guest memory a backend reads through: empty until ``attach``; replaced only while
    nothing is mapped, so what a backend maps and what it reads never come from two memories."""

    def __init__(self) -> None:
        self.memory: GuestMemoryReader = GuestMemory()

    def attach(self, memory: GuestMemoryReader, mapped: int) -> None:
        if memory is not self.memory and mapped:
            raise AddrSpaceError(f"cannot attach another guest memory while {mapped} mappings use this one")
        self.memory = memory


@dataclass(frozen=True)
class Stage2Mapping:
    """One guest physical range mapped onto host memory with the given permissions."""

    gpa: GuestPhysAddr
    size: int
    host_addr: HostVirtAddr
    flags: MappingFlags

    @property
    def range(self) -> AddrRange:
        return AddrRange.from_start_size(int(self.gpa), self.size)

    def translate(self, gpa: int) -> HostVirtAddr:
        """The host address of ``gpa``, which must lie inside this mapping."""
        if not self.range.contains(gpa):
            raise AddrSpaceError(f"{gpa:#x} is outside stage-2 mapping {self.range!r}", self.range)
        return self.host_addr + (int(gpa) - int(self.gpa))


class InMemoryStage2:
    """A Stage2Mapper that only remembers what was mapped (tests, backend-less users)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._starts: list[int] = []
        self._mappings: list[Stage2Mapping] = []
        self._memory = AttachedMemory()

    @property
    def memory(self) -> GuestMemoryReader:
        """The guest memory attached by the address space (empty before)."""
        return self._memory.memory

    def attach_memory(self, memory: GuestMemoryReader) -> None:
        with self._lock:
            self._memory.attach(memory, len(self._mappings))

    def map(self, region: GuestMemoryRegion, flags: MappingFlags) -> None:
        """Record the region's mapping; AddrSpaceError if it overlaps an existing one."""
        self.record(*region_to_map(region), flags)

    def record(self, gpa: GuestPhysAddr, size: int, host_addr: HostVirtAddr, flags: MappingFlags) -> None:
        """Record a mapping by its parts (backends keep their books with it); AddrSpaceError if it
        is empty or overlaps an existing one."""
        if size <= 0 or int(gpa) + size > ADDRESS_LIMIT:
            raise AddrSpaceError(f"stage-2 mapping [{int(gpa):#x}, +{size:#x}) is empty or past 2^64")
        mapping = Stage2Mapping(GuestPhysAddr(gpa), size, HostVirtAddr(host_addr), MappingFlags(flags))
        new = mapping.range
        with self._lock:
            i = bisect_right(self._starts, int(gpa))
            for old in self._mappings[max(i - 1, 0) : i + 1]:
                if old.range.overlaps(new):
                    raise AddrSpaceError(f"stage-2 mapping {new!r} overlaps mapping {old.range!r}", new)
            self._starts.insert(i, int(gpa))
            self._mappings.insert(i, mapping)

    def unmap(self, gpa: GuestPhysAddr, size: int) -> None:
        """Forget the mapping of exactly ``[gpa, gpa + size)``; AddrSpaceError otherwise."""
        with self._lock:
            i = bisect_right(self._starts, int(gpa)) - 1
            if i < 0 or self._starts[i] != gpa or self._mappings[i].size != size:
                span = f"[{int(gpa):#x}, +{size:#x})"
                raise AddrSpaceError(f"stage-2 range {span} is not mapped exactly")
            del self._starts[i]
            del self._mappings[i]

    @property
    def mappings(self) -> tuple[Stage2Mapping, ...]:
        with self._lock:
            return tuple(self._mappings)

    def lookup(self, gpa: int) -> Stage2Mapping | None:
        """The mapping containing ``gpa``, or None."""
        with self._lock:
            i = bisect_right(self._starts, gpa) - 1
            if i >= 0 and self._mappings[i].range.contains(gpa):
                return self._mappings[i]
            return None
