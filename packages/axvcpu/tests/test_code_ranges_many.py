"""Pages written behind the engines, many ranges at once: one block request's buffers reach each
engine in one call, and CodeRanges.add_many records exactly what add would, range by range."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import PAGE_SIZE, GuestMemory, GuestMemoryRegion
from axvcpu.backends.soft.engine_ranges import FLUSH_ALL_PAGES, CodeRanges
from axvcpu.backends.soft.stage2 import SoftStage2

RAM_BASE = 0x8000_0000

ranges_lists = st.lists(
    st.tuples(
        st.integers(RAM_BASE - PAGE_SIZE, RAM_BASE + 64 * PAGE_SIZE),
        st.one_of(st.integers(-1, 2 * PAGE_SIZE), st.integers(0, 64 * PAGE_SIZE)),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(ranges_lists, ranges_lists)
def test_add_many_records_what_add_records(before, ranges) -> None:
    one, many = CodeRanges(), CodeRanges()
    for gpa, size in before:
        one.add(gpa, size)
        many.add(gpa, size)
    for gpa, size in ranges:
        one.add(gpa, size)
    many.add_many(ranges)
    assert many.take() == one.take()


def test_add_many_past_the_bound_asks_for_a_full_flush() -> None:
    ranges = CodeRanges()
    ranges.add_many([(RAM_BASE + i * PAGE_SIZE, 1) for i in range(FLUSH_ALL_PAGES + 1)])
    assert ranges.take() == ([], True)
    ranges.add_many([(RAM_BASE, (FLUSH_ALL_PAGES + 1) * PAGE_SIZE)])  # one huge range: no huge set
    assert ranges.take() == ([], True)
    ranges.add_many([(RAM_BASE, 1)])
    assert ranges.take() == ([RAM_BASE], False)


class OneAtATime:
    """An engine that only knows invalidate_code (the aarch64 hart)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def map_ram(self, gpa: int, size: int, host_addr: int, perms: int) -> None:
        pass

    def unmap_ram(self, gpa: int, size: int) -> None:
        pass

    def invalidate_code(self, gpa: int, size: int) -> None:
        self.calls.append((gpa, size))


class Batched(OneAtATime):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[tuple[int, int]]] = []

    def invalidate_code_many(self, ranges) -> None:
        self.batches.append(list(ranges))


def test_a_scatter_gather_write_reaches_each_engine_once_or_range_by_range() -> None:
    memory = GuestMemory([GuestMemoryRegion.anonymous(RAM_BASE, 16 * PAGE_SIZE)])
    stage2 = SoftStage2()
    single, batched = OneAtATime(), Batched()
    stage2.attach(single)
    stage2.attach(batched)
    stage2.attach_memory(memory)
    try:
        segments = [(RAM_BASE, PAGE_SIZE), (RAM_BASE + PAGE_SIZE, 8), (RAM_BASE + 4 * PAGE_SIZE, PAGE_SIZE)]
        for view in memory.views(segments, writable=True):
            view.release()
        runs = [(RAM_BASE, PAGE_SIZE + 8), (RAM_BASE + 4 * PAGE_SIZE, PAGE_SIZE)]  # adjacent ones merged
        assert batched.batches == [runs] and batched.calls == []
        assert single.calls == runs
        memory.write_u16(RAM_BASE + 2 * PAGE_SIZE, 1)  # a single write still comes one range at a time
        assert batched.calls == single.calls[2:] == [(RAM_BASE + 2 * PAGE_SIZE, 2)]
    finally:
        memory.close()
