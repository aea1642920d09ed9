"""Range arithmetic: overlap symmetric, contains_range agrees with contains, sizes round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import ADDRESS_LIMIT, AddrRange, InclusiveRange, PortRange

# A small space makes overlaps, adjacency and containment common enough to matter.
small = st.integers(min_value=0, max_value=64)


@st.composite
def ranges(draw: st.DrawFn) -> AddrRange:
    start = draw(small)
    return AddrRange.from_start_size(start, draw(st.integers(min_value=0, max_value=64)))


@st.composite
def inclusive_ranges(draw: st.DrawFn) -> InclusiveRange:
    return InclusiveRange.from_start_count(draw(small), draw(st.integers(min_value=1, max_value=32)))


@settings(max_examples=300)
@given(ranges(), ranges())
def test_overlap_is_symmetric_and_means_a_shared_address(a, b):
    assert a.overlaps(b) == b.overlaps(a)
    shared = any(a.contains(x) and b.contains(x) for x in range(0, 130))
    assert a.overlaps(b) == shared


@settings(max_examples=300)
@given(ranges(), ranges())
def test_contains_range_agrees_with_contains_on_endpoints(outer, inner):
    if inner.is_empty():
        return  # an empty range has no endpoints to check
    by_endpoints = outer.contains(inner.start) and outer.contains(inner.end - 1)
    assert outer.contains_range(inner) == by_endpoints


@settings(max_examples=200)
@given(ranges())
def test_a_range_contains_itself_and_overlaps_itself_unless_empty(r):
    assert r.contains_range(r)
    assert r.overlaps(r) == (not r.is_empty())


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=ADDRESS_LIMIT), st.integers(min_value=0, max_value=1 << 64))
def test_from_start_size_round_trips(start, size):
    if start + size > ADDRESS_LIMIT:
        with pytest.raises(ValueError):
            AddrRange.from_start_size(start, size)
        return
    r = AddrRange.from_start_size(start, size)
    assert (r.start, r.size, r.end) == (start, size, start + size)
    assert AddrRange.from_start_size(r.start, r.size) == r


@settings(max_examples=200)
@given(ranges(), small)
def test_contains_is_half_open(r, addr):
    assert r.contains(addr) == (r.start <= addr < r.end)
    assert (addr in r) == r.contains(addr)


def test_invalid_ranges_raise():
    with pytest.raises(ValueError):
        AddrRange(5, 4)
    with pytest.raises(ValueError):
        AddrRange.from_start_size(0, -1)
    with pytest.raises(ValueError):
        AddrRange(-1, 0)


@settings(max_examples=300)
@given(inclusive_ranges(), inclusive_ranges())
def test_inclusive_overlap_is_symmetric_and_means_a_shared_member(a, b):
    assert a.overlaps(b) == b.overlaps(a)
    shared = any(a.contains(x) and b.contains(x) for x in range(0, 100))
    assert a.overlaps(b) == shared


@given(small, st.integers(min_value=1, max_value=64))
def test_inclusive_from_start_count_round_trips(start, count):
    r = InclusiveRange.from_start_count(start, count)
    assert r.size == count and r.contains(start) and r.contains(start + count - 1)
    assert not r.contains(start + count)


def test_port_range_names_its_last_port():
    com1 = PortRange(0x3F8, 0x3FF)
    assert com1.size == 8 and 0x3FF in com1 and 0x400 not in com1
    with pytest.raises(ValueError):
        InclusiveRange.from_start_count(0, 0)
