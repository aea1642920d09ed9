"""AddrSpace over InMemoryStage2: linear and alloc areas, translate, faults, unmap, errors."""

from __future__ import annotations

import ctypes
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import (
    PAGE_SIZE,
    AddrRange,
    AddrSpace,
    AddrSpaceError,
    GuestMemory,
    GuestMemoryError,
    GuestMemoryRegion,
    GuestPhysAddr,
    InMemoryStage2,
    MappingFlags,
    MemoryArea,
)

R, W, X = MappingFlags.READ, MappingFlags.WRITE, MappingFlags.EXECUTE
RW, RWX = R | W, R | W | X
BASE, WINDOW = 0x8000_0000, 0x10_0000  # 1 MiB of guest physical space at 2 GiB


@pytest.fixture
def space():
    aspace = AddrSpace(BASE, WINDOW, InMemoryStage2())
    yield aspace
    aspace.clear()


def test_alloc_populated_now_is_in_stage2_and_memory(space):
    region = space.map_alloc(BASE, 2 * PAGE_SIZE, RWX)
    assert space.areas == (MemoryArea(AddrRange(BASE, BASE + 0x2000), RWX, "alloc", True),)
    (mapping,) = space.stage2.mappings
    assert (mapping.gpa, mapping.size, mapping.flags) == (BASE, 0x2000, RWX)
    assert mapping.host_addr == region.host_addr
    assert space.memory.find_region(BASE) is region
    space.memory.write_u32(BASE + 0x1000, 0xFEEDFACE)
    host, flags = space.translate(BASE + 0x1000)
    assert flags == RWX
    assert ctypes.string_at(int(host), 4) == (0xFEEDFACE).to_bytes(4, "little")


def test_alloc_deferred_maps_the_whole_area_on_first_fault(space):
    region = space.map_alloc(BASE + 0x4000, 4 * PAGE_SIZE, RW, populate=False)
    assert space.stage2.mappings == ()
    assert space.areas[0].populated is False
    # host memory exists before the fault: devices and loaders may use it, and it translates
    space.memory.write(BASE + 0x4000, b"kernel")
    assert space.translate(BASE + 0x5000) == (region.host_addr + 0x1000, RW)

    assert space.handle_page_fault(BASE + 0x6123, W) is True
    (mapping,) = space.stage2.mappings
    assert (mapping.gpa, mapping.size) == (BASE + 0x4000, 4 * PAGE_SIZE)  # all four pages, not one
    assert space.areas[0].populated is True
    assert space.handle_page_fault(BASE + 0x4000, R) is False  # already populated: not ours
    assert len(space.stage2.mappings) == 1


@pytest.mark.parametrize(
    ("gpa_offset", "access"),
    [
        (0x4000, X),  # the area is RW: an instruction fetch is a real guest fault
        (0x4000, R | X),
        (0x0, R),  # nothing mapped here
        (0x8000, R),  # one past the end of the area
        (-0x1000, R),  # below the window
    ],
)
def test_faults_that_are_not_ours_return_false_and_map_nothing(space, gpa_offset, access):
    space.map_alloc(BASE + 0x4000, 4 * PAGE_SIZE, RW, populate=False)
    assert space.handle_page_fault(BASE + gpa_offset, access) is False
    assert space.stage2.mappings == ()
    assert space.areas[0].populated is False


def test_linear_maps_an_existing_file_backed_region(space, tmp_path):
    path = tmp_path / "flash.bin"
    path.write_bytes(b"\x7fELF" + bytes(PAGE_SIZE - 4))
    region = GuestMemoryRegion.from_file(BASE + 0x10000, path)
    space.map_linear(BASE + 0x10000, PAGE_SIZE, region, RW)
    assert space.areas == (MemoryArea(AddrRange(BASE + 0x10000, BASE + 0x11000), RW, "linear", True),)
    assert space.stage2.lookup(BASE + 0x10000).host_addr == region.host_addr
    assert space.memory.read(BASE + 0x10000, 4) == b"\x7fELF"
    space.memory.write(BASE + 0x10004, b"!")
    space.unmap(BASE + 0x10000, PAGE_SIZE)
    assert region.closed
    assert path.read_bytes()[4:5] == b"!"


def test_linear_adopts_a_region_already_in_memory(tmp_path):
    region = GuestMemoryRegion.anonymous(BASE, PAGE_SIZE)
    memory = GuestMemory([region])
    space = AddrSpace(BASE, WINDOW, InMemoryStage2(), memory)
    space.map_linear(BASE, PAGE_SIZE, region, RW)
    assert space.memory is memory and memory.regions == (region,)
    space.clear()
    assert memory.regions == () and region.closed


def test_linear_region_must_match_the_range(space):
    region = GuestMemoryRegion.anonymous(BASE, 2 * PAGE_SIZE)
    with pytest.raises(ValueError, match="does not match"):
        space.map_linear(BASE, PAGE_SIZE, region, RW)
    with pytest.raises(ValueError, match="does not match"):
        space.map_linear(BASE + PAGE_SIZE, 2 * PAGE_SIZE, region, RW)
    assert space.areas == () and space.memory.regions == ()
    region.close()


def test_linear_read_only_region_cannot_be_mapped_writable(space, tmp_path):
    path = tmp_path / "rom.bin"
    path.write_bytes(bytes(PAGE_SIZE))
    region = GuestMemoryRegion.from_file(BASE, path, writable=False)
    with pytest.raises(ValueError, match="read-only"):
        space.map_linear(BASE, PAGE_SIZE, region, RW)
    space.map_linear(BASE, PAGE_SIZE, region, R | X)
    assert space.translate(BASE) == (region.host_addr, R | X)


def test_unmap_removes_stage2_memory_and_closes_the_region(space):
    populated = space.map_alloc(BASE, PAGE_SIZE, RW)
    lazy = space.map_alloc(BASE + PAGE_SIZE, PAGE_SIZE, RW, populate=False)
    space.unmap(BASE, PAGE_SIZE)
    space.unmap(BASE + PAGE_SIZE, PAGE_SIZE)  # never populated: nothing to take out of stage-2
    assert space.areas == () and space.stage2.mappings == () and space.memory.regions == ()
    assert populated.closed and lazy.closed
    assert space.translate(BASE) is None
    with pytest.raises(GuestMemoryError):
        space.memory.read_u8(BASE)


def test_unmap_may_cover_several_whole_adjacent_areas(space):
    space.map_alloc(BASE, PAGE_SIZE, RW)
    space.map_alloc(BASE + PAGE_SIZE, 2 * PAGE_SIZE, R, populate=False)
    space.unmap(BASE, 3 * PAGE_SIZE)
    assert space.areas == ()


@pytest.mark.parametrize(
    ("gpa", "size"),
    [
        (BASE, PAGE_SIZE),  # part of an area
        (BASE + PAGE_SIZE, PAGE_SIZE),  # the other part
        (BASE, 4 * PAGE_SIZE),  # the area and more
        (BASE - PAGE_SIZE, 3 * PAGE_SIZE),  # starts before it
        (BASE + 0x9000, PAGE_SIZE),  # nothing there
        (BASE, 0),
        (BASE, 6 * PAGE_SIZE),  # two areas with a gap between them
    ],
)
def test_unmap_of_anything_but_whole_areas_raises(space, gpa, size):
    space.map_alloc(BASE, 2 * PAGE_SIZE, RW)
    space.map_alloc(BASE + 4 * PAGE_SIZE, 2 * PAGE_SIZE, RW)
    before = space.areas
    with pytest.raises(AddrSpaceError, match=f"{gpa:#x}"):
        space.unmap(gpa, size)
    assert space.areas == before and len(space.stage2.mappings) == 2


@pytest.mark.parametrize(
    ("gpa", "size", "why"),
    [
        (BASE + 0x800, PAGE_SIZE, "aligned"),
        (BASE, PAGE_SIZE + 1, "aligned"),
        (BASE, 0, "empty"),
        (BASE, -PAGE_SIZE, "empty"),
        (BASE - PAGE_SIZE, PAGE_SIZE, "outside"),
        (BASE + WINDOW - PAGE_SIZE, 2 * PAGE_SIZE, "outside"),
        (BASE + WINDOW, PAGE_SIZE, "outside"),
        (0, PAGE_SIZE, "outside"),
    ],
)
def test_bad_ranges_raise_naming_the_range(space, gpa, size, why):
    with pytest.raises(AddrSpaceError, match=why) as exc:
        space.map_alloc(gpa, size, RW)
    assert f"{gpa:#x}" in str(exc.value)
    region = GuestMemoryRegion.anonymous(BASE + 0x80000, PAGE_SIZE)
    with pytest.raises(AddrSpaceError):
        space.map_linear(gpa, size, region, RW)
    region.close()
    assert space.areas == () and space.memory.regions == () and space.stage2.mappings == ()


def test_overlapping_areas_are_rejected_naming_both(space):
    space.map_alloc(BASE + 0x2000, 2 * PAGE_SIZE, RW, populate=False)
    with pytest.raises(AddrSpaceError, match=r"\[0x80003000, 0x80005000\).*\[0x80002000, 0x80004000\)"):
        space.map_alloc(BASE + 0x3000, 2 * PAGE_SIZE, RW)
    with pytest.raises(AddrSpaceError, match="overlaps"):
        space.map_alloc(BASE, 3 * PAGE_SIZE, RW)
    space.map_alloc(BASE + 0x4000, PAGE_SIZE, RW)  # adjacent is fine
    assert [a.range.start for a in space.areas] == [BASE + 0x2000, BASE + 0x4000]


def test_undefined_flag_bits_are_rejected(space):
    with pytest.raises(ValueError, match="undefined"):
        space.map_alloc(BASE, PAGE_SIZE, MappingFlags(0x40 | 1))
    assert space.areas == ()


def test_window_must_be_aligned_and_non_empty():
    for base, size in [(0x800, PAGE_SIZE), (0, 0), (0, 100), (-PAGE_SIZE, PAGE_SIZE), (1 << 64, PAGE_SIZE)]:
        with pytest.raises(ValueError, match="window"):
            AddrSpace(base, size, InMemoryStage2())


class FailingStage2(InMemoryStage2):
    def map(self, region, flags):
        raise AddrSpaceError("backend refused the slot")


def test_a_failing_backend_leaves_no_half_mapped_area():
    space = AddrSpace(BASE, WINDOW, FailingStage2())
    with pytest.raises(AddrSpaceError, match="backend"):
        space.map_alloc(BASE, PAGE_SIZE, RW)
    assert space.areas == () and space.memory.regions == ()
    space.map_alloc(BASE, PAGE_SIZE, RW, populate=False)
    with pytest.raises(AddrSpaceError, match="backend"):
        space.handle_page_fault(BASE, R)
    assert space.areas[0].populated is False


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(1, 3), st.booleans()), max_size=8))
def test_areas_never_overlap_and_translate_agrees_with_memory(requests):
    space = AddrSpace(BASE, 16 * PAGE_SIZE, InMemoryStage2())
    try:
        for page, pages, populate in requests:
            rng = AddrRange.from_start_size(BASE + page * PAGE_SIZE, pages * PAGE_SIZE)
            ok = rng.end <= BASE + 16 * PAGE_SIZE and not any(a.range.overlaps(rng) for a in space.areas)
            if ok:
                space.map_alloc(rng.start, rng.size, RW, populate=populate)
            else:
                with pytest.raises(AddrSpaceError):
                    space.map_alloc(rng.start, rng.size, RW, populate=populate)
        areas = space.areas
        assert list(areas) == sorted(areas, key=lambda a: a.range.start)
        assert all(a.range.end <= b.range.start for a, b in itertools.pairwise(areas))
        assert len(space.stage2.mappings) == sum(a.populated for a in areas)
        for page in range(17):
            gpa = BASE + page * PAGE_SIZE
            region = space.memory.find_region(gpa)
            translated = space.translate(gpa)
            if region is None:
                assert translated is None
            else:
                assert translated == (region.host_addr + (gpa - region.gpa), RW)
    finally:
        space.clear()


def test_typed_guest_addresses_are_accepted_everywhere(space):
    gpa = GuestPhysAddr(BASE)
    region = space.map_alloc(gpa, PAGE_SIZE, RW, populate=False)
    host, flags = space.translate(gpa + 0x10)
    assert host == region.host_addr + 0x10 and flags == RW
    assert space.find_area(gpa).range.start == BASE
    assert space.handle_page_fault(gpa + 0x10, R) is True
    assert space.stage2.lookup(gpa).translate(gpa + 0x20) == region.host_addr + 0x20
    space.unmap(gpa, PAGE_SIZE)
    assert space.find_area(gpa) is None


class OrderRecordingStage2(InMemoryStage2):
    """Notes, at each unmap, whether any region of the space was already closed."""

    def __init__(self) -> None:
        super().__init__()
        self.regions: list[GuestMemoryRegion] = []
        self.closed_at_unmap: list[bool] = []

    def map(self, region, flags):
        self.regions.append(region)
        super().map(region, flags)

    def unmap(self, gpa, size):
        self.closed_at_unmap.append(any(region.closed for region in self.regions))
        super().unmap(gpa, size)


@pytest.mark.parametrize("teardown", ["clear", "close", "unmap"])
def test_memory_is_released_only_after_every_stage2_unmap(teardown):
    stage2 = OrderRecordingStage2()
    space = AddrSpace(BASE, WINDOW, stage2)
    regions = [space.map_alloc(BASE + i * PAGE_SIZE, PAGE_SIZE, RW) for i in range(3)]
    if teardown == "unmap":
        space.unmap(BASE, 3 * PAGE_SIZE)
    else:
        getattr(space, teardown)()
    assert stage2.closed_at_unmap == [False, False, False]
    assert all(region.closed for region in regions) and stage2.mappings == ()


def test_close_releases_adopted_regions_and_is_safe_twice():
    extra = GuestMemoryRegion.anonymous(BASE + 0x8000, PAGE_SIZE)  # in memory, never an area
    space = AddrSpace(BASE, WINDOW, InMemoryStage2(), GuestMemory([extra]))
    space.map_alloc(BASE, PAGE_SIZE, RW)
    space.close()
    space.close()
    assert extra.closed and space.memory.regions == () and space.areas == ()
    with pytest.raises(GuestMemoryError):
        space.stage2.memory.read_u8(BASE)  # the backend's reads find nothing, never freed RAM
