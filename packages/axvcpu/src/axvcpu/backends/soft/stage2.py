"""The soft backend's stage-2: one guest RAM, mapped into every unicorn engine.

Each vCPU has its own engine, and every engine maps the same host memory with
``mem_map_ptr``, so all harts share one RAM with no copying. ``SoftStage2`` records the
mappings (the record is axaddrspace's ``InMemoryStage2``, which rejects overlaps) and enters
each region it is given into every engine attached now and into every engine attached later.
The backend's own reads of guest RAM (page-table walks, instructions fetched for decoding) go
through ``memory``: the VM's one ``GuestMemory``, attached by the address space.

An engine may only be changed while its vCPU is not inside a slice, so each engine is reached
through its ``engine_lock`` (held by the vCPU for the length of a slice): ``map`` and
``unmap`` wait at most one slice per vCPU. When ``unmap`` returns no engine maps the range any
more, and the caller may free the host memory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from unicorn import UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE, UcError

from axaddrspace import (
    PAGE_SIZE,
    AddrSpaceError,
    AttachedMemory,
    GuestMemoryReader,
    GuestMemoryRegion,
    GuestPhysAddr,
    InMemoryStage2,
    MappingFlags,
    Stage2Mapping,
    region_to_map,
)


class RamEngine(Protocol):
    """What SoftStage2 needs from a vCPU: enter and remove RAM in its engine, under its lock."""

    def map_ram(self, gpa: int, size: int, host_addr: int, perms: int) -> None: ...

    def unmap_ram(self, gpa: int, size: int) -> None: ...


def unicorn_perms(flags: MappingFlags) -> int:
    perms = 0
    if flags & MappingFlags.READ:
        perms |= UC_PROT_READ
    if flags & MappingFlags.WRITE:
        perms |= UC_PROT_WRITE
    if flags & MappingFlags.EXECUTE:
        perms |= UC_PROT_EXEC
    return perms


class SoftStage2:
    """A Stage2Mapper whose every mapping reaches every attached unicorn engine."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._record = InMemoryStage2()
        self._engines: list[RamEngine] = []
        self._memory = AttachedMemory()

    @property
    def memory(self) -> GuestMemoryReader:
        """The VM's guest memory, which the harts' own reads go through (empty until attached)."""
        return self._memory.memory

    def attach_memory(self, memory: GuestMemoryReader) -> None:
        """Read guest RAM through ``memory``, and hear of every write made through it (device
        DMA, the VMM's loads): those bytes never pass through an engine, so each engine drops
        the code it translated from them."""
        with self._lock:
            known = memory is self._memory.memory
            self._memory.attach(memory, len(self._record.mappings))
        listen = getattr(memory, "add_write_listener", None)
        if listen is not None and not known:
            listen(self.written, self.written_many)

    def written(self, gpa: int, size: int) -> None:
        """Guest RAM ``[gpa, +size)`` was written outside the engines: every engine re-translates it."""
        for engine in list(self._engines):
            invalidate = getattr(engine, "invalidate_code", None)  # optional: an engine without one keeps its code
            if invalidate is not None:
                invalidate(gpa, size)

    def written_many(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Many ranges written at once (one block request's buffers): an engine that takes them
        in one call (``invalidate_code_many``: one lock, one slice end) gets them so."""
        for engine in list(self._engines):
            many = getattr(engine, "invalidate_code_many", None)
            if many is not None:
                many(ranges)
                continue
            invalidate = getattr(engine, "invalidate_code", None)
            if invalidate is not None:
                for gpa, size in ranges:
                    invalidate(gpa, size)

    def map(self, region: GuestMemoryRegion, flags: MappingFlags) -> None:
        """Enter ``region`` into every engine (plain ints inside: unicorn takes the host address)."""
        gpa_typed, size, host_typed = region_to_map(region)
        gpa, host_addr = int(gpa_typed), int(host_typed)
        if gpa % PAGE_SIZE or size % PAGE_SIZE or host_addr % PAGE_SIZE:
            raise AddrSpaceError(
                f"soft stage-2 mapping [{gpa:#x}, +{size:#x}) at host {host_addr:#x} is not {PAGE_SIZE}-byte aligned"
            )
        perms = unicorn_perms(MappingFlags(flags))
        with self._lock:
            self._record.map(region, MappingFlags(flags))
            done: list[RamEngine] = []
            try:
                for engine in self._engines:
                    engine.map_ram(gpa, size, host_addr, perms)
                    done.append(engine)
            except BaseException as err:
                for engine in done:
                    engine.unmap_ram(gpa, size)
                self._record.unmap(GuestPhysAddr(gpa), size)
                if isinstance(err, UcError):
                    raise AddrSpaceError(
                        f"unicorn cannot map RAM at [{gpa:#x}, +{size:#x}) (an MMIO window there?): {err}"
                    ) from err
                raise

    def unmap(self, gpa: int, size: int) -> None:
        """Remove exactly a range mapped before from every engine; the host memory may then go."""
        gpa, size = int(gpa), int(size)
        with self._lock:
            self._record.unmap(GuestPhysAddr(gpa), size)
            for engine in self._engines:
                engine.unmap_ram(gpa, size)

    @property
    def mappings(self) -> tuple[Stage2Mapping, ...]:
        return self._record.mappings

    def lookup(self, gpa: int) -> Stage2Mapping | None:
        return self._record.lookup(gpa)

    # -- engines ------------------------------------------------------------------------------------

    def attach(self, engine: RamEngine) -> None:
        """Enter every current mapping into a new engine and keep it informed of later ones."""
        with self._lock:
            for mapping in self._record.mappings:
                engine.map_ram(int(mapping.gpa), mapping.size, int(mapping.host_addr), unicorn_perms(mapping.flags))
            self._engines.append(engine)

    def detach(self, engine: RamEngine) -> None:
        with self._lock:
            if engine in self._engines:
                self._engines.remove(engine)
