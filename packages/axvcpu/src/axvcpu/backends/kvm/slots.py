"""Bookkeeping of KVM memory slots: which slot id holds which guest physical range.

KVM knows slots only by id; the Stage2Mapper interface speaks in ranges. This table hands out
the lowest free id, rejects overlaps and misalignment before KVM sees them (so the error names
the range, not just EINVAL), and finds the slot holding an address by bisection.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from dataclasses import dataclass

from axaddrspace import (
    ADDRESS_LIMIT,
    PAGE_SIZE,
    AddrRange,
    AddrSpaceError,
    GuestPhysAddr,
    HostVirtAddr,
    MappingFlags,
    Stage2Mapping,
)


@dataclass(frozen=True)
class Slot:
    id: int
    mapping: Stage2Mapping
    kvm_flags: int


class SlotTable:
    """Slots sorted by guest address; ``limit`` is KVM's number of usable slots."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._starts: list[int] = []
        self._slots: list[Slot] = []

    def reserve(self, gpa: int, size: int, host_addr: int, flags: MappingFlags, kvm_flags: int) -> Slot:
        """Record a new slot for ``[gpa, gpa + size)``; AddrSpaceError if it cannot be one."""
        span = AddrRange.from_start_size(int(gpa), size) if size > 0 and gpa + size <= ADDRESS_LIMIT else None
        where = f"stage-2 mapping [{int(gpa):#x}, +{size:#x})"
        if span is None:
            raise AddrSpaceError(f"{where} is empty or runs past 2^64")
        if gpa % PAGE_SIZE or size % PAGE_SIZE or host_addr % PAGE_SIZE:
            raise AddrSpaceError(f"{where} at host {int(host_addr):#x} is not {PAGE_SIZE}-byte aligned", span)
        mapping = Stage2Mapping(GuestPhysAddr(gpa), size, HostVirtAddr(host_addr), MappingFlags(flags))
        with self._lock:
            i = bisect_right(self._starts, int(gpa))
            for old in self._slots[max(i - 1, 0) : i + 1]:
                if old.mapping.range.overlaps(span):
                    raise AddrSpaceError(f"{where} overlaps KVM slot {old.id} {old.mapping.range!r}", span)
            used = {slot.id for slot in self._slots}
            free = next((n for n in range(self.limit) if n not in used), None)
            if free is None:
                raise AddrSpaceError(f"{where}: all {self.limit} KVM memory slots are in use", span)
            slot = Slot(free, mapping, kvm_flags)
            self._starts.insert(i, int(gpa))
            self._slots.insert(i, slot)
            return slot

    def release(self, gpa: int, size: int) -> Slot:
        """Forget the slot of exactly ``[gpa, gpa + size)`` and return it; AddrSpaceError otherwise."""
        with self._lock:
            i = bisect_right(self._starts, int(gpa)) - 1
            if i < 0 or self._starts[i] != gpa or self._slots[i].mapping.size != size:
                raise AddrSpaceError(f"stage-2 range [{int(gpa):#x}, +{size:#x}) is not one KVM slot")
            del self._starts[i]
            return self._slots.pop(i)

    def restore(self, slot: Slot) -> None:
        """Put back a slot whose KVM call failed after ``release``/``reserve`` bookkeeping."""
        with self._lock:
            i = bisect_right(self._starts, int(slot.mapping.gpa))
            self._starts.insert(i, int(slot.mapping.gpa))
            self._slots.insert(i, slot)

    def discard(self, slot: Slot) -> None:
        """Drop a slot reserved for a KVM call that then failed."""
        with self._lock:
            i = self._slots.index(slot)
            del self._starts[i]
            del self._slots[i]

    def lookup(self, gpa: int) -> Slot | None:
        """The slot containing ``gpa``, or None."""
        with self._lock:
            i = bisect_right(self._starts, gpa) - 1
            if i >= 0 and self._slots[i].mapping.range.contains(gpa):
                return self._slots[i]
            return None

    def by_id(self, slot_id: int) -> Slot | None:
        with self._lock:
            return next((slot for slot in self._slots if slot.id == slot_id), None)

    @property
    def slots(self) -> tuple[Slot, ...]:
        with self._lock:
            return tuple(self._slots)
