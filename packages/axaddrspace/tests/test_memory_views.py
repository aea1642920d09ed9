"""GuestMemory.backed and GuestMemory.views: the scatter-gather calls a device makes per request,
checked against the single-range primitives they shortcut (contains, view, the write listeners)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_memory import build, interesting_addresses, layouts

from axaddrspace import ADDRESS_LIMIT, PAGE_SIZE, GuestMemory, GuestMemoryError, GuestMemoryRegion


@st.composite
def segment_lists(draw: st.DrawFn, layout: list[tuple[int, int]]) -> list[tuple[int, int]]:
    span = layout[-1][0] + layout[-1][1] + PAGE_SIZE
    points = interesting_addresses(layout)
    out = []
    for _ in range(draw(st.integers(0, 6))):
        gpa = draw(st.one_of(st.integers(0, span), st.sampled_from(points)))
        if out and draw(st.booleans()):
            gpa = out[-1][0] + out[-1][1]  # adjacent to the previous one: listeners hear one run
        out.append((gpa, draw(st.one_of(st.integers(0, 16), st.integers(0, 3 * PAGE_SIZE)))))
    return out


def read_only_memory(layout: list[tuple[int, int]], read_only: set[int]) -> GuestMemory:
    """``layout`` with the regions whose index is in ``read_only`` read-only for the VMM."""
    regions = []
    for i, (gpa, size) in enumerate(layout):
        region = GuestMemoryRegion.anonymous(gpa, size)
        if i in read_only:
            mm = region._mm
            assert mm is not None
            region = GuestMemoryRegion(gpa, mm, writable=False)
        regions.append(region)
    return GuestMemory(regions)


def runs(segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The model of the listener calls: non-empty segments, adjacent ones merged."""
    out: list[tuple[int, int]] = []
    for gpa, size in segments:
        if size == 0:
            continue
        if out and out[-1][0] + out[-1][1] == gpa:
            out[-1] = (out[-1][0], out[-1][1] + size)
        else:
            out.append((gpa, size))
    return out


@settings(max_examples=80, deadline=None)
@given(layouts(), st.data())
def test_backed_agrees_with_contains_and_region_permissions(layout, data):
    read_only = set(data.draw(st.lists(st.integers(0, len(layout) - 1), max_size=2)))
    memory = read_only_memory(layout, read_only)
    try:
        for gpa, size in data.draw(segment_lists(layout)):
            assert memory.backed(gpa, size) == memory.contains(gpa, size)
            writable = memory.contains(gpa, size) and all(
                not (size and i in read_only and gpa < start + n and start < gpa + size)
                for i, (start, n) in enumerate(layout)
            )
            assert memory.backed(gpa, size, writable=True) == writable
    finally:
        memory.close()


@settings(max_examples=80, deadline=None)
@given(layouts(), st.data())
def test_views_are_the_ranges_bytes_or_an_error_that_leaves_nothing_behind(layout, data):
    memory = build(layout)
    heard: list[tuple[int, int]] = []
    memory.add_write_listener(lambda gpa, size: heard.append((gpa, size)))
    try:
        span = layout[-1][0] + layout[-1][1]
        memory.write(layout[0][0], bytes(range(256)) * (layout[0][1] // 256))
        segments = data.draw(segment_lists(layout))
        writable = data.draw(st.booleans())
        heard.clear()
        if all(memory.contains(gpa, size) for gpa, size in segments):
            views = memory.views(segments, writable=writable)
            assert b"".join(bytes(v) for v in views) == b"".join(memory.read(g, n) for g, n in segments)
            assert all(v.nbytes for v in views)  # empty segments give no view
            assert heard == (runs(segments) if writable else [])
            if writable and views:
                views[0][0] ^= 0xFF  # zero-copy: a write through the view is guest RAM
                first = next((g, n) for g, n in segments if n)
                assert memory.read(first[0], 1)[0] == views[0][0]
            for view in views:
                view.release()
        else:
            with pytest.raises(GuestMemoryError):
                memory.views(segments, writable=writable)
            assert heard == []
        assert span  # the layout was used
    finally:
        memory.close()


def test_views_of_read_only_ram_are_refused_for_writing_only():
    memory = read_only_memory([(0x1000, PAGE_SIZE)], {0})
    heard: list[tuple[int, int]] = []
    memory.add_write_listener(lambda gpa, size: heard.append((gpa, size)))
    try:
        (view,) = memory.views([(0x1000, 8)])
        assert view.readonly
        view.release()
        with pytest.raises(GuestMemoryError, match="read-only"):
            memory.views([(0x1000, 8)], writable=True)
        assert heard == []
    finally:
        memory.close()


@pytest.mark.parametrize("segment", [(-1, 4), (0x1000, -1), (ADDRESS_LIMIT - 2, 4), (1 << 80, 8), (0x1000, 1 << 70)])
def test_hostile_segments_are_guest_memory_errors(segment):
    memory = build([(0x1000, PAGE_SIZE)])
    try:
        with pytest.raises(GuestMemoryError):
            memory.views([(0x1000, 8), segment], writable=True)
        assert not memory.backed(*segment) and not memory.backed(*segment, writable=True)
    finally:
        memory.close()


def test_a_listener_with_many_hears_one_views_call_at_once():
    memory = build([(0x1000, 4 * PAGE_SIZE)])
    single: list[tuple[int, int]] = []
    batches: list[list[tuple[int, int]]] = []
    memory.add_write_listener(lambda gpa, size: single.append((gpa, size)), lambda ranges: batches.append(list(ranges)))
    try:
        for view in memory.views([(0x1000, 8), (0x1008, 8), (0x3000, 4)], writable=True):
            view.release()
        assert batches == [[(0x1000, 16), (0x3000, 4)]] and single == []
        memory.views([(0x1000, 0)], writable=True)  # nothing written: nobody hears
        memory.views([(0x1000, 8)])  # read-only views: nobody hears
        assert batches == [[(0x1000, 16), (0x3000, 4)]]
        memory.write_u8(0x2000, 1)
        assert single == [(0x2000, 1)]
    finally:
        memory.close()
