"""GuestMemory: the region set, the access primitives and the helpers built on them."""

from __future__ import annotations

import ctypes
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import (
    ADDRESS_LIMIT,
    PAGE_SIZE,
    AccessWidth,
    AddrRange,
    AddrSpaceError,
    GuestMemory,
    GuestMemoryError,
    GuestMemoryRegion,
    GuestPhysAddr,
)

# -- a model of the layout, independent of the implementation ------------------------------------


def coverage(ranges: list[AddrRange]) -> list[tuple[int, int]]:
    """Merge adjacent ranges into maximal backed intervals."""
    merged: list[tuple[int, int]] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if merged and merged[-1][1] == r.start:
            merged[-1] = (merged[-1][0], r.end)
        else:
            merged.append((r.start, r.end))
    return merged


def first_unbacked(ranges: list[AddrRange], gpa: int, size: int) -> int | None:
    if size == 0:
        return None
    for start, end in coverage(ranges):
        if start <= gpa < end:
            return None if gpa + size <= end else end
    return gpa


@st.composite
def layouts(draw: st.DrawFn) -> list[tuple[int, int]]:
    """1-4 regions of 1-3 pages with gaps of 0-2 pages: adjacent and gapped neighbours."""
    gpa = draw(st.integers(min_value=0, max_value=2)) * PAGE_SIZE
    out = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        gpa += draw(st.integers(min_value=0, max_value=2)) * PAGE_SIZE
        size = draw(st.integers(min_value=1, max_value=3)) * PAGE_SIZE
        out.append((gpa, size))
        gpa += size
    return out


def build(layout: list[tuple[int, int]], order: random.Random | None = None) -> GuestMemory:
    regions = [GuestMemoryRegion.anonymous(gpa, size) for gpa, size in layout]
    if order is not None:
        order.shuffle(regions)
    return GuestMemory(regions)


def snapshot(memory: GuestMemory) -> dict[int, bytes]:
    return {region.gpa: bytes(region.view) for region in memory.regions}


def interesting_addresses(layout: list[tuple[int, int]]) -> list[int]:
    """Region edges and their neighbours, where off-by-one bugs live."""
    points = set()
    for gpa, size in layout:
        for edge in (gpa, gpa + size):
            points.update(p for p in (edge - 3, edge - 1, edge, edge + 1) if p >= 0)
    return sorted(points)


@st.composite
def accesses(draw: st.DrawFn, layout: list[tuple[int, int]]) -> tuple[int, int]:
    span = layout[-1][0] + layout[-1][1] + PAGE_SIZE
    gpa = draw(st.one_of(st.integers(0, span), st.sampled_from(interesting_addresses(layout))))
    size = draw(st.one_of(st.integers(0, 16), st.integers(0, 3 * PAGE_SIZE)))
    return gpa, size


# -- properties ---------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(layouts(), st.data())
def test_write_then_read_round_trips_or_fails_without_side_effects(layout, data):
    memory = build(layout)
    ranges = [AddrRange.from_start_size(gpa, size) for gpa, size in layout]
    try:
        for _ in range(data.draw(st.integers(1, 6))):
            gpa, size = data.draw(accesses(layout))
            payload = random.Random(data.draw(st.integers(0, 1 << 32))).randbytes(size)
            before = snapshot(memory)
            missing = first_unbacked(ranges, gpa, size)
            assert memory.contains(gpa, size) == (missing is None)
            if missing is None:
                memory.write(gpa, payload)
                assert memory.read(gpa, size) == payload
                into = bytearray(size)
                memory.read_into(gpa, memoryview(into))
                assert into == payload
            else:
                with pytest.raises(GuestMemoryError) as exc:
                    memory.write(gpa, payload)
                assert (exc.value.addr, exc.value.size) == (missing, size)
                assert f"{missing:#_x}" in str(exc.value)
                assert snapshot(memory) == before  # nothing written, not even the backed part
                with pytest.raises(GuestMemoryError) as exc:
                    memory.read(gpa, size)
                assert exc.value.addr == missing
    finally:
        memory.close()


@settings(max_examples=40, deadline=None)
@given(layouts(), st.randoms(use_true_random=False))
def test_regions_are_kept_sorted_whatever_the_insertion_order(layout, rnd):
    memory = build(layout, order=rnd)
    try:
        assert [region.gpa for region in memory.regions] == [gpa for gpa, _ in layout]
        assert memory.total_size == sum(size for _, size in layout)
        for gpa, size in layout:
            assert memory.find_region(gpa).gpa == gpa
            assert memory.find_region(gpa + size - 1).gpa == gpa
    finally:
        memory.close()


@settings(max_examples=40, deadline=None)
@given(layouts(), st.data())
def test_overlapping_regions_are_rejected_naming_both(layout, data):
    memory = build(layout)
    try:
        gpa, size = data.draw(st.sampled_from(layout))
        pages = data.draw(st.integers(1, 3))
        first_page = max(gpa // PAGE_SIZE - pages + 1, 0)  # the lowest start that still overlaps
        start = data.draw(st.integers(first_page, (gpa + size) // PAGE_SIZE - 1))
        clash = GuestMemoryRegion.anonymous(start * PAGE_SIZE, pages * PAGE_SIZE)
        with pytest.raises(AddrSpaceError) as exc:
            memory.add_region(clash)
        assert repr(clash.range) in str(exc.value)
        assert any(repr(r.range) in str(exc.value) for r in memory.regions if r.range.overlaps(clash.range))
        clash.close()
        assert len(memory.regions) == len(layout)
    finally:
        memory.close()


# -- crossing between adjacent regions ----------------------------------------------------------------


@pytest.fixture
def two_adjacent():
    low, high = GuestMemoryRegion.anonymous(0x1000, PAGE_SIZE), GuestMemoryRegion.anonymous(0x2000, PAGE_SIZE)
    memory = GuestMemory([low, high])
    yield memory
    memory.close()


def test_integers_straddling_two_regions(two_adjacent):
    memory = two_adjacent
    memory.write_u64(0x1FFC, 0x1122_3344_5566_7788)
    assert memory.read_u64(0x1FFC) == 0x1122_3344_5566_7788
    assert memory.regions[0].view[-4:].tobytes() == bytes.fromhex("88776655")
    assert memory.regions[1].view[:4].tobytes() == bytes.fromhex("44332211")
    assert memory.read_u32(0x1FFE) == 0x3344_5566
    assert memory.contains(0x1000, 2 * PAGE_SIZE)
    assert not memory.contains(0x1000, 2 * PAGE_SIZE + 1)


class Descriptor(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [("addr", ctypes.c_uint64), ("len", ctypes.c_uint32), ("flags", ctypes.c_uint16)]


def test_structs_round_trip_across_the_boundary(two_adjacent):
    desc = Descriptor(addr=0xDEAD_BEEF_0000, len=512, flags=3)
    two_adjacent.write_struct(0x1FF8, desc)
    back = two_adjacent.read_struct(0x1FF8, Descriptor)
    assert isinstance(back, Descriptor)
    assert (back.addr, back.len, back.flags) == (0xDEAD_BEEF_0000, 512, 3)
    assert two_adjacent.read(0x1FF8, ctypes.sizeof(Descriptor)) == bytes(desc)


def test_view_refuses_to_cross_regions(two_adjacent):
    with pytest.raises(GuestMemoryError, match="crosses") as exc:
        two_adjacent.view(0x1FF0, 32)
    assert (exc.value.addr, exc.value.size) == (0x2000, 32)


def test_read_into_from_overlapping_guest_ram_behaves_like_memmove(two_adjacent):
    memory = two_adjacent
    memory.write(0x1FF8, bytes(range(32)))
    memory.read_into(0x1FF8, memory.view(0x2000, 16))  # source crosses, and overlaps the target
    assert memory.read(0x2000, 16) == bytes(range(16))


def test_write_from_overlapping_guest_ram_behaves_like_memmove(two_adjacent):
    memory = two_adjacent
    memory.write(0x1FF0, bytes(range(32)))
    memory.write_from(0x1FF8, memory.view(0x1FF0, 16))  # target crosses, and overlaps the source
    assert memory.read(0x1FF8, 16) == bytes(range(16))


# -- view, helpers, and bounds on guest-controlled numbers ---------------------------------------------


def test_view_is_zero_copy(two_adjacent):
    view = two_adjacent.view(0x1010, 8)
    view[:] = b"ABCDEFGH"
    assert two_adjacent.read(0x1010, 8) == b"ABCDEFGH"
    two_adjacent.write(0x1012, b"zz")
    assert bytes(view) == b"ABzzEFGH"
    region = two_adjacent.regions[0]
    assert ctypes.string_at(int(region.host_addr) + 0x10, 8) == b"ABzzEFGH"
    view.release()


@pytest.mark.parametrize("width", list(AccessWidth))
def test_int_helpers_are_little_endian_and_range_checked(two_adjacent, width):
    value = int.from_bytes(bytes(range(1, width.size + 1)), "little")
    two_adjacent.write_int(0x1100, width, value)
    assert two_adjacent.read(0x1100, width.size) == bytes(range(1, width.size + 1))
    assert two_adjacent.read_int(0x1100, width) == value
    for bad in (-1, width.mask + 1):
        with pytest.raises(ValueError):
            two_adjacent.write_int(0x1100, width, bad)
    assert two_adjacent.read_int(0x1100, width) == value


def test_sized_helpers(two_adjacent):
    memory = two_adjacent
    memory.write_u8(0x1000, 0xAB)
    memory.write_u16(0x1002, 0xBEEF)
    memory.write_u32(0x1004, 0xCAFE_F00D)
    assert memory.read_u8(0x1000) == 0xAB
    assert memory.read_u16(0x1002) == 0xBEEF
    assert memory.read_u32(0x1004) == 0xCAFE_F00D
    with pytest.raises(ValueError):
        memory.write_u8(0x1000, 0x100)
    with pytest.raises(ValueError):
        memory.write_u16(0x1000, 0x1_0000)
    with pytest.raises(ValueError):
        memory.write_u64(0x1000, 1 << 64)


def test_fill_checks_the_whole_range_first(two_adjacent):
    memory = two_adjacent
    memory.fill(0x1FF0, 32, 0x5A)
    assert memory.read(0x1FF0, 32) == b"\x5a" * 32
    with pytest.raises(GuestMemoryError) as exc:
        memory.fill(0x2FF0, 32, 0xFF)
    assert exc.value.addr == 0x3000
    assert memory.read(0x2FF0, 16) == bytes(16)
    with pytest.raises(ValueError):
        memory.fill(0x1000, 1, 256)


@pytest.mark.parametrize(
    ("gpa", "size"),
    [
        (-1, 4),
        (0x1000, -1),
        (ADDRESS_LIMIT - 2, 4),
        (ADDRESS_LIMIT, 1),
        (0x1000, 1 << 70),
        (0x1000, 1 << 62),
        (1 << 80, 8),
    ],
)
def test_hostile_addresses_and_sizes_are_guest_memory_errors(two_adjacent, gpa, size):
    memory = two_adjacent
    for call in (
        lambda: memory.read(gpa, size),
        lambda: memory.view(gpa, size),
        lambda: memory.view(gpa, size, writable=True),
        lambda: memory.fill(gpa, size),
    ):
        with pytest.raises(GuestMemoryError):
            call()
    assert not memory.contains(gpa, size)


@pytest.mark.parametrize("gpa", [-1, -PAGE_SIZE, ADDRESS_LIMIT - 2, ADDRESS_LIMIT, 1 << 80])
def test_hostile_addresses_are_guest_memory_errors_for_the_primitives(two_adjacent, gpa):
    with pytest.raises(GuestMemoryError):
        two_adjacent.write_from(gpa, b"abcd")
    with pytest.raises(GuestMemoryError):
        two_adjacent.read_into(gpa, bytearray(4))
    with pytest.raises(GuestMemoryError):
        two_adjacent.write_int(gpa, AccessWidth.QWORD, 0)
    with pytest.raises(GuestMemoryError):
        two_adjacent.read_struct(gpa, Descriptor)


def test_zero_sized_accesses_touch_nothing(two_adjacent):
    assert two_adjacent.read(0x9000_0000, 0) == b""
    two_adjacent.write(0x9000_0000, b"")
    assert len(two_adjacent.view(0x9000_0000, 0)) == 0


def test_remove_region_returns_it_and_unbacks_its_range(two_adjacent):
    memory = two_adjacent
    region = memory.remove_region(0x2000)
    assert region.gpa == 0x2000 and not region.closed
    assert memory.find_region(0x2000) is None
    with pytest.raises(GuestMemoryError):
        memory.read_u8(0x2000)
    with pytest.raises(AddrSpaceError, match="0x2000"):
        memory.remove_region(0x2000)
    with pytest.raises(AddrSpaceError):
        memory.remove_region(0x1800)  # inside a region, but not its start
    region.close()


def test_closed_regions_cannot_be_added():
    region = GuestMemoryRegion.anonymous(0, PAGE_SIZE)
    region.close()
    with pytest.raises(ValueError, match="closed"):
        GuestMemory([region])


def test_guest_memory_error_message_matches_the_documented_shape():
    memory = GuestMemory([GuestMemoryRegion.anonymous(0x8000_0000, PAGE_SIZE)])
    with pytest.raises(GuestMemoryError) as exc:
        memory.read_u32(0x9000_0000)
    assert str(exc.value) == "guest physical address 0x9000_0000 (4 bytes) is not backed by guest RAM"
    memory.close()


def test_typed_addresses_work_up_to_the_top_of_the_address_space():
    top = GuestPhysAddr(ADDRESS_LIMIT - PAGE_SIZE)
    memory = GuestMemory([GuestMemoryRegion.anonymous(top, PAGE_SIZE)])
    last = GuestPhysAddr(ADDRESS_LIMIT - 4)
    memory.write_u32(last, 0xA5A5_5A5A)
    assert memory.read_u32(last) == 0xA5A5_5A5A
    assert len(memory.view(last, 4)) == 4
    with pytest.raises(GuestMemoryError) as exc:  # not AddressOverflowError from typed arithmetic
        memory.read_u64(last)
    assert exc.value.addr == last
    assert not memory.contains(last, 8)
    memory.close()
