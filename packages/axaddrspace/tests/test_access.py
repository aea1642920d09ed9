"""Access apart from management: the Protocols consumers depend on, and region offsets."""

from __future__ import annotations

import pytest

from axaddrspace import (
    PAGE_SIZE,
    AddrSpace,
    AddrSpaceError,
    GuestMemory,
    GuestMemoryAccess,
    GuestMemoryError,
    GuestMemoryReader,
    GuestMemoryRegion,
    GuestPhysAddr,
    InMemoryStage2,
    MappingFlags,
    RegionOffset,
)

RW = MappingFlags.READ | MappingFlags.WRITE
BASE = 0x8000_0000


def checksum(memory: GuestMemoryReader, gpa: GuestPhysAddr, size: int) -> int:
    """A consumer typed against the read Protocol alone."""
    return sum(memory.read(gpa, size)) + memory.read_u32(gpa) + memory.view(gpa, size)[0]


def test_guest_memory_satisfies_both_access_protocols() -> None:
    with GuestMemoryRegion.anonymous(BASE, PAGE_SIZE) as region:
        memory = GuestMemory([region])
        assert isinstance(memory, GuestMemoryReader) and isinstance(memory, GuestMemoryAccess)
        writer: GuestMemoryAccess = memory
        writer.write_u32(GuestPhysAddr(BASE), 0x0102_0304)
        assert checksum(memory, GuestPhysAddr(BASE), 4) == 10 + 0x0102_0304 + 4
        memory.close()


def test_management_is_not_part_of_the_access_protocols() -> None:
    for protocol in (GuestMemoryReader, GuestMemoryAccess):
        for name in ("add_region", "remove_region", "close", "regions"):
            assert not hasattr(protocol, name), (protocol, name)
    for name in ("write_from", "write", "fill", "write_u64"):
        assert not hasattr(GuestMemoryReader, name) and hasattr(GuestMemoryAccess, name)


def test_region_offsets_and_addresses_convert_both_ways_and_are_checked() -> None:
    with GuestMemoryRegion.anonymous(BASE, 2 * PAGE_SIZE) as region:
        off = region.offset_of(GuestPhysAddr(BASE + 0x1234))
        assert type(off) is RegionOffset and off == 0x1234
        gpa = region.address_of(off)
        assert type(gpa) is GuestPhysAddr and gpa == BASE + 0x1234
        assert region.address_of(RegionOffset(2 * PAGE_SIZE - 1)) == BASE + 2 * PAGE_SIZE - 1
        for bad in (BASE - 1, BASE + 2 * PAGE_SIZE):
            with pytest.raises(GuestMemoryError, match="outside guest RAM region"):
                region.offset_of(bad)
        with pytest.raises(GuestMemoryError, match="outside guest RAM region"):
            region.address_of(RegionOffset(2 * PAGE_SIZE))


def test_the_address_space_hands_its_memory_to_the_backend() -> None:
    stage2 = InMemoryStage2()
    space = AddrSpace(BASE, 16 * PAGE_SIZE, stage2)
    assert stage2.memory is space.memory
    space.map_alloc(BASE, PAGE_SIZE, RW)
    space.memory.write(BASE + 8, b"seen")
    assert stage2.memory.read(GuestPhysAddr(BASE + 8), 4) == b"seen"  # one memory, no copy
    with pytest.raises(AddrSpaceError, match="another guest memory"):
        stage2.attach_memory(GuestMemory())  # a second memory while the first is mapped
    space.close()
    stage2.attach_memory(GuestMemory())  # nothing mapped any more: a new VM may use it


def test_a_closed_region_cannot_be_mapped() -> None:
    region = GuestMemoryRegion.anonymous(BASE, PAGE_SIZE)
    region.close()
    with pytest.raises(AddrSpaceError, match="closed"):
        InMemoryStage2().map(region, RW)
