"""Split virtqueue rules: chains are collected as the driver laid them out, violations refused."""

from __future__ import annotations

import mmap
import struct

import pytest
from test_virtio_driver import RAM_BASE, make_memory

from axaddrspace import GuestMemory, GuestMemoryRegion
from axdevice.virtio import MAX_CHAIN_BYTES, MAX_INDIRECT_DESCRIPTORS, QueueError, QueueState, SplitQueue

NEXT, WRITE, INDIRECT = 1, 2, 4
DESC = RAM_BASE
AVAIL = RAM_BASE + 0x1000
USED = RAM_BASE + 0x2000
DATA = RAM_BASE + 0x10000


def make_queue(size: int = 8, *, event_idx: bool = False, indirect: bool = False, memory: GuestMemory | None = None):
    memory = memory or make_memory()
    queue = SplitQueue(memory, 16)
    queue.size, queue.desc_addr, queue.avail_addr, queue.used_addr = size, DESC, AVAIL, USED
    queue.event_idx, queue.indirect = event_idx, indirect
    queue.enable()
    return queue, memory


def desc(memory: GuestMemory, i: int, addr: int, length: int, flags: int = 0, nxt: int = 0, table: int = DESC) -> None:
    memory.write(table + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))


def offer(queue: SplitQueue, memory: GuestMemory, *heads: int) -> None:
    idx = memory.read_u16(AVAIL + 2)
    for head in heads:
        memory.write_u16(AVAIL + 4 + 2 * (idx % queue.size), head)
        idx = (idx + 1) & 0xFFFF
    memory.write_u16(AVAIL + 2, idx)


def test_empty_queue_pops_nothing() -> None:
    queue, _ = make_queue()
    assert queue.pop() is None


def test_chain_is_collected_and_returned_through_the_used_ring() -> None:
    queue, memory = make_queue()
    desc(memory, 3, DATA, 16, NEXT, 5)
    desc(memory, 5, DATA + 0x100, 4, NEXT, 1)
    desc(memory, 1, DATA + 0x200, 100, WRITE)
    offer(queue, memory, 3)
    chain = queue.pop()
    assert chain is not None and chain.head == 3
    assert chain.readable == ((DATA, 16), (DATA + 0x100, 4)) and chain.readable_len == 20
    assert chain.writable == ((DATA + 0x200, 100),) and chain.writable_len == 100
    assert queue.pop() is None
    queue.push_used(3, 42)
    assert memory.read_u16(USED + 2) == 1
    assert struct.unpack("<II", memory.read(USED + 4, 8)) == (3, 42)


def test_zero_length_buffers_are_skipped() -> None:
    queue, memory = make_queue()
    desc(memory, 0, 0xDEAD_0000, 0, NEXT, 1)  # no bytes: its address is never used
    desc(memory, 1, DATA, 8, WRITE)
    offer(queue, memory, 0)
    chain = queue.pop()
    assert chain is not None and chain.readable == () and chain.writable == ((DATA, 8),)


def test_ring_indices_wrap_at_16_bits() -> None:
    memory = make_memory()
    state = QueueState(size=8, ready=True, desc_addr=DESC, avail_addr=AVAIL, used_addr=USED)
    state.next_avail = state.next_used = 0xFFFF
    queue = SplitQueue.from_state(memory, 16, state)
    memory.write_u16(AVAIL + 2, 0xFFFF)
    memory.write_u16(USED + 2, 0xFFFF)
    desc(memory, 0, DATA, 4)
    desc(memory, 1, DATA, 4)
    offer(queue, memory, 0, 1)
    assert memory.read_u16(AVAIL + 2) == 1
    heads = [queue.pop().head, queue.pop().head]  # type: ignore[union-attr]
    assert heads == [0, 1] and queue.pop() is None
    queue.push_used(0, 0)
    queue.push_used(1, 0)
    assert memory.read_u16(USED + 2) == 1
    assert struct.unpack("<II", memory.read(USED + 4 + 8 * 7, 8)) == (0, 0)  # slot 0xFFFF % 8


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda m: desc(m, 0, DATA, 4, NEXT, 1) or desc(m, 1, DATA, 4, NEXT, 0), "loop"),
        (lambda m: desc(m, 0, DATA, 4, NEXT, 8), "outside a table"),
        (lambda m: desc(m, 0, DATA, 4, WRITE | NEXT, 1) or desc(m, 1, DATA, 4), "after"),
        (lambda m: desc(m, 0, RAM_BASE + (4 << 20) - 2, 4), "not in guest RAM"),
        (lambda m: desc(m, 0, 0x1000, 4, WRITE), "not in writable guest RAM"),
        (lambda m: desc(m, 0, DATA, 0xFFFF_FFFF), "over"),
        (lambda m: desc(m, 0, DATA, 8, INDIRECT), "without VIRTIO_F_INDIRECT_DESC"),
    ],
)
def test_bad_chains_are_queue_errors(setup, message: str) -> None:
    queue, memory = make_queue()
    setup(memory)
    offer(queue, memory, 0)
    with pytest.raises(QueueError, match=message):
        queue.pop()


def test_chain_total_is_bounded_even_when_every_buffer_is_ram() -> None:
    half = MAX_CHAIN_BYTES // 2 + 1
    queue, memory = make_queue(memory=make_memory(192 << 20))  # untouched pages cost nothing
    desc(memory, 0, DATA, half, NEXT, 1)
    desc(memory, 1, DATA, half)  # the same RAM twice: each buffer is fine, the total is not
    offer(queue, memory, 0)
    with pytest.raises(QueueError, match="over"):
        queue.pop()


def test_head_index_out_of_range() -> None:
    queue, memory = make_queue()
    offer(queue, memory, 8)
    with pytest.raises(QueueError, match="outside a table"):
        queue.pop()


def test_available_index_running_too_far_ahead() -> None:
    queue, memory = make_queue()
    memory.write_u16(AVAIL + 2, 9)
    with pytest.raises(QueueError, match="9 entries ahead"):
        queue.pop()


def test_indirect_table_is_walked() -> None:
    queue, memory = make_queue(indirect=True)
    table = DATA + 0x1000
    desc(memory, 0, DATA, 16, NEXT, 1, table=table)
    desc(memory, 1, DATA + 0x100, 512, WRITE | NEXT, 2, table=table)
    desc(memory, 2, DATA + 0x400, 1, WRITE, table=table)
    desc(memory, 4, table, 48, INDIRECT | WRITE)  # the WRITE flag of an indirect descriptor is ignored
    offer(queue, memory, 4)
    chain = queue.pop()
    assert chain is not None and chain.head == 4
    assert chain.readable == ((DATA, 16),) and chain.writable == ((DATA + 0x100, 512), (DATA + 0x400, 1))


@pytest.mark.parametrize(
    "length, flags, inner, message",
    [
        (32, INDIRECT, (INDIRECT, DATA + 0x1000, 16), "inside an indirect table"),
        (32, INDIRECT | NEXT, (0, DATA, 4), "both INDIRECT and NEXT"),
        (24, INDIRECT, (0, DATA, 4), "not 1.."),
        (0, INDIRECT, (0, DATA, 4), "not 1.."),
        (16 * (MAX_INDIRECT_DESCRIPTORS + 1), INDIRECT, (0, DATA, 4), "not 1.."),
        (32, INDIRECT, (NEXT, DATA, 4), "loop"),  # entry 0 -> 0 -> ...
    ],
)
def test_bad_indirect_tables(length: int, flags: int, inner: tuple[int, int, int], message: str) -> None:
    queue, memory = make_queue(indirect=True)
    table = DATA + 0x1000
    inner_flags, addr, size = inner
    desc(memory, 0, addr, size, inner_flags, 0, table=table)
    desc(memory, 1, addr, size, inner_flags, 0, table=table)
    desc(memory, 0, table, length, flags, 1)
    offer(queue, memory, 0)
    with pytest.raises(QueueError, match=message):
        queue.pop()


def test_indirect_table_outside_ram() -> None:
    queue, memory = make_queue(indirect=True)
    desc(memory, 0, RAM_BASE + (4 << 20) - 16, 32, INDIRECT)
    offer(queue, memory, 0)
    with pytest.raises(QueueError, match="indirect table"):
        queue.pop()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("size", 3, "power of two"),
        ("size", 32, "power of two up to 16"),
        ("size", 0, "power of two"),
        ("desc_addr", DESC + 8, "16-byte aligned"),
        ("avail_addr", AVAIL + 1, "2-byte aligned"),
        ("used_addr", USED + 2, "4-byte aligned"),
        ("desc_addr", 0x1000, "not in guest RAM"),
        ("used_addr", RAM_BASE + (4 << 20) - 16, "used ring"),
    ],
)
def test_enable_checks_the_layout(field: str, value: int, message: str) -> None:
    queue = SplitQueue(make_memory(), 16)
    queue.size, queue.desc_addr, queue.avail_addr, queue.used_addr = 8, DESC, AVAIL, USED
    setattr(queue, field, value)
    with pytest.raises(QueueError, match=message):
        queue.enable()
    assert not queue.ready


def test_used_ring_in_read_only_memory_is_refused() -> None:
    mm = mmap.mmap(-1, 0x10000)
    memory = GuestMemory([GuestMemoryRegion(RAM_BASE, mm, writable=False)])
    queue = SplitQueue(memory, 16)
    queue.size, queue.desc_addr, queue.avail_addr, queue.used_addr = 8, DESC, AVAIL, USED
    with pytest.raises(QueueError, match="writable"):
        queue.enable()


def test_max_size_must_be_a_power_of_two_within_the_bound() -> None:
    for bad in (0, 3, 2048):
        with pytest.raises(ValueError):
            SplitQueue(make_memory(), bad)


def test_notification_without_event_idx_follows_no_interrupt() -> None:
    queue, memory = make_queue()
    assert not queue.should_notify()  # nothing used
    queue.push_used(0, 0)
    assert queue.should_notify()
    assert not queue.should_notify()  # already told
    memory.write_u16(AVAIL, 1)  # VIRTQ_AVAIL_F_NO_INTERRUPT
    queue.push_used(0, 0)
    assert not queue.should_notify()


def test_event_idx_notifies_only_when_crossing_used_event() -> None:
    queue, memory = make_queue(event_idx=True)
    used_event = AVAIL + 4 + 2 * 8
    memory.write_u16(used_event, 2)  # interrupt me when entry 2 is used (idx moves past 2)
    queue.push_used(0, 0)
    assert not queue.should_notify()  # idx 1
    queue.push_used(0, 0)
    assert not queue.should_notify()  # idx 2
    queue.push_used(0, 0)
    assert queue.should_notify()  # idx 3: crossed
    queue.push_used(0, 0)
    queue.push_used(0, 0)
    assert not queue.should_notify()  # used_event still 2, already passed
    memory.write_u16(used_event, 5)
    queue.push_used(0, 0)
    assert queue.should_notify()  # batch 5..6 covers 5


def test_event_idx_publishes_avail_event() -> None:
    queue, memory = make_queue(event_idx=True)
    avail_event = USED + 4 + 8 * 8
    memory.write_u16(avail_event, 0xAAAA)
    assert queue.pop() is None
    assert memory.read_u16(avail_event) == 0  # kick me when you add entry 0
    desc(memory, 0, DATA, 4)
    offer(queue, memory, 0)
    assert queue.pop() is not None
    assert memory.read_u16(avail_event) == 1


def test_copy_helpers_respect_segments_and_bounds() -> None:
    queue, memory = make_queue()
    memory.write(DATA, b"hello ")
    memory.write(DATA + 0x100, b"world")
    desc(memory, 0, DATA, 6, NEXT, 1)
    desc(memory, 1, DATA + 0x100, 5, NEXT, 2)
    desc(memory, 2, DATA + 0x200, 3, WRITE | NEXT, 3)
    desc(memory, 3, DATA + 0x300, 3, WRITE)
    memory.write(DATA + 0x303, b"!")
    offer(queue, memory, 0)
    chain = queue.pop()
    assert chain is not None
    assert chain.read_bytes(memory, 100) == b"hello world"
    assert chain.read_bytes(memory, 4, offset=4) == b"o wo"
    assert chain.write_bytes(memory, b"abcdefgh") == 6
    assert memory.read(DATA + 0x200, 3) == b"abc" and memory.read(DATA + 0x300, 4) == b"def!"
    assert chain.write_bytes(memory, b"Z", offset=5) == 1
    assert memory.read(DATA + 0x302, 1) == b"Z"
    views = chain.readable_views(memory, 2, 6)
    assert b"".join(bytes(v) for v in views) == b"llo wo"
    views = chain.writable_views(memory)
    assert all(not v.readonly for v in views) and sum(v.nbytes for v in views) == 6


def test_views_are_split_where_guest_ram_regions_meet() -> None:
    memory = GuestMemory(
        [GuestMemoryRegion.anonymous(RAM_BASE, 0x20000), GuestMemoryRegion.anonymous(RAM_BASE + 0x20000, 0x10000)]
    )
    queue, _ = make_queue(memory=memory)
    desc(memory, 0, RAM_BASE + 0x1FFF0, 0x20, WRITE)
    offer(queue, memory, 0)
    chain = queue.pop()
    assert chain is not None
    views = chain.writable_views(memory)
    assert [v.nbytes for v in views] == [0x10, 0x10]
    assert chain.write_bytes(memory, bytes(range(0x20))) == 0x20
    assert memory.read(RAM_BASE + 0x1FFF0, 0x20) == bytes(range(0x20))


def test_buffer_whose_region_went_away_is_a_queue_error() -> None:
    memory = GuestMemory(
        [GuestMemoryRegion.anonymous(RAM_BASE, 0x20000), GuestMemoryRegion.anonymous(RAM_BASE + 0x20000, 0x10000)]
    )
    queue, _ = make_queue(memory=memory)
    desc(memory, 0, RAM_BASE + 0x20000, 0x20, WRITE)
    offer(queue, memory, 0)
    chain = queue.pop()
    assert chain is not None
    memory.remove_region(RAM_BASE + 0x20000).close()
    with pytest.raises(QueueError):
        chain.write_bytes(memory, b"x")
    with pytest.raises(QueueError):
        chain.writable_views(memory)


def test_state_round_trip_and_validation() -> None:
    queue, memory = make_queue(event_idx=True)
    desc(memory, 0, DATA, 4)
    offer(queue, memory, 0)
    queue.pop()
    saved = queue.state()
    again = SplitQueue.from_state(memory, 16, saved)
    assert again.state() == saved and again.ready
    with pytest.raises(ValueError, match="16-bit"):
        SplitQueue.from_state(memory, 16, QueueState(next_avail=0x10000))
    with pytest.raises(ValueError, match="ready but"):
        SplitQueue.from_state(memory, 16, QueueState(size=8, ready=True, desc_addr=1))
    with pytest.raises(ValueError, match="non-negative"):
        SplitQueue.from_state(memory, 16, QueueState(desc_addr=-1))
