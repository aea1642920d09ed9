"""InMemoryStage2: the reference Stage2Mapper that records what backends would map."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import (
    AddrRange,
    AddrSpaceError,
    GuestPhysAddr,
    HostVirtAddr,
    InMemoryStage2,
    MappingFlags,
    Stage2Mapper,
    Stage2Mapping,
)

RW = MappingFlags.READ | MappingFlags.WRITE


def test_in_memory_stage2_implements_the_protocol():
    assert isinstance(InMemoryStage2(), Stage2Mapper)


def test_map_lookup_unmap():
    stage2 = InMemoryStage2()
    stage2.record(GuestPhysAddr(0x2000), 0x1000, HostVirtAddr(0x7F00_0000_0000), RW)
    stage2.record(GuestPhysAddr(0x0), 0x1000, HostVirtAddr(0x7F00_0001_0000), MappingFlags.READ)
    assert [m.gpa for m in stage2.mappings] == [0x0, 0x2000]
    hit = stage2.lookup(0x2FFF)
    assert hit == Stage2Mapping(GuestPhysAddr(0x2000), 0x1000, HostVirtAddr(0x7F00_0000_0000), RW)
    assert hit.range == AddrRange(0x2000, 0x3000)
    assert hit.translate(0x2010) == 0x7F00_0000_0010 and type(hit.translate(0x2010)) is HostVirtAddr
    assert stage2.lookup(0x1000) is None and stage2.lookup(0x3000) is None
    stage2.unmap(GuestPhysAddr(0x2000), 0x1000)
    assert stage2.lookup(0x2000) is None
    assert len(stage2.mappings) == 1


def test_mapping_over_an_existing_mapping_names_both():
    stage2 = InMemoryStage2()
    stage2.record(GuestPhysAddr(0x2000), 0x2000, HostVirtAddr(0x1000_0000), RW)
    with pytest.raises(AddrSpaceError, match=r"\[0x3000, 0x5000\).*\[0x2000, 0x4000\)"):
        stage2.record(GuestPhysAddr(0x3000), 0x2000, HostVirtAddr(0x2000_0000), RW)
    with pytest.raises(AddrSpaceError):
        stage2.record(GuestPhysAddr(0x4000), 0, HostVirtAddr(0x2000_0000), RW)


@pytest.mark.parametrize(("gpa", "size"), [(0x2000, 0x1000), (0x3000, 0x1000), (0x6000, 0x1000)])
def test_unmap_must_match_exactly(gpa, size):
    stage2 = InMemoryStage2()
    stage2.record(GuestPhysAddr(0x2000), 0x2000, HostVirtAddr(0x1000_0000), RW)
    with pytest.raises(AddrSpaceError, match="not mapped exactly"):
        stage2.unmap(GuestPhysAddr(gpa), size)
    assert len(stage2.mappings) == 1


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 32), st.integers(1, 4)), max_size=12))
def test_accepted_mappings_never_overlap_and_stay_sorted(requests):
    stage2 = InMemoryStage2()
    for page, pages in requests:
        rng = AddrRange.from_start_size(page * 0x1000, pages * 0x1000)
        clash = any(m.range.overlaps(rng) for m in stage2.mappings)
        if clash:
            with pytest.raises(AddrSpaceError):
                stage2.record(GuestPhysAddr(rng.start), rng.size, HostVirtAddr(0x1000_0000), RW)
        else:
            stage2.record(GuestPhysAddr(rng.start), rng.size, HostVirtAddr(0x1000_0000), RW)
    mappings = stage2.mappings
    assert list(mappings) == sorted(mappings, key=lambda m: m.gpa)
    for a, b in itertools.pairwise(mappings):
        assert a.range.end <= b.range.start
