"""The descriptor walk against a model: one descriptor read at a time, as virtio 1.2 2.7.5 reads.

``SplitQueue`` copies a table once and unpacks each descriptor from the copy, and checks buffers
with ``GuestMemory.backed``; this model reads each descriptor through guest memory when it
reaches it and checks each buffer byte range with ``contains``. On random tables (loops, bad
indices, indirect tables, RAM edges, a read-only region) both must give the same chain or both
refuse it.
"""

from __future__ import annotations

import mmap
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from test_virtio_driver import RAM_BASE

from axaddrspace import GuestMemory, GuestMemoryRegion
from axdevice.virtio import MAX_CHAIN_BYTES, MAX_INDIRECT_DESCRIPTORS, QueueError, SplitQueue

NEXT, WRITE, INDIRECT = 1, 2, 4
RAM_SIZE = 0x20000
ROM_BASE = RAM_BASE + RAM_SIZE  # read-only RAM right after RAM: readable, never writable
DESC, AVAIL, USED, TABLE = RAM_BASE, RAM_BASE + 0x1000, RAM_BASE + 0x2000, RAM_BASE + 0x3000
SIZE = 8


def model_walk(memory: GuestMemory, head: int, indirect_ok: bool) -> tuple[tuple, tuple]:
    """(readable, writable) segments of the chain at ``head``, or QueueError."""
    readable: list[tuple[int, int]] = []
    writable: list[tuple[int, int]] = []
    table, table_len, index, seen, total, nested = DESC, SIZE, head, 0, 0, False
    while True:
        if index >= table_len:
            raise QueueError("index")
        seen += 1
        if seen > table_len:
            raise QueueError("loop")
        addr, length, flags, nxt = struct.unpack("<QIHH", memory.read(table + 16 * index, 16))
        if flags & INDIRECT:
            count = length // 16
            if not indirect_ok or nested or flags & NEXT or length % 16 or not 0 < count <= MAX_INDIRECT_DESCRIPTORS:
                raise QueueError("indirect")
            if not memory.contains(addr, length):
                raise QueueError("indirect outside RAM")
            table, table_len, index, seen, nested = addr, count, 0, 0, True
            continue
        total += length
        if total > MAX_CHAIN_BYTES:
            raise QueueError("total")
        is_write = bool(flags & WRITE)
        if not is_write and writable:
            raise QueueError("order")
        ok = memory.contains(addr, length) and (
            not is_write
            or not length
            or all(r.writable for r in memory.regions if int(r.gpa) < addr + length and addr < int(r.gpa) + r.size)
        )
        if not ok:
            raise QueueError("buffer")
        if length:
            (writable if is_write else readable).append((addr, length))
        if not flags & NEXT:
            return tuple(readable), tuple(writable)
        index = nxt


addresses = st.one_of(
    *[st.integers(RAM_BASE + 0x4000, RAM_BASE + RAM_SIZE - 0x100)] * 4,
    st.sampled_from([RAM_BASE - 8, RAM_BASE + RAM_SIZE - 8, ROM_BASE - 4, ROM_BASE, ROM_BASE + 0xFF8, 2**64 - 8]),
    st.integers(0, 2**64 - 1),
)
lengths = st.one_of(*[st.sampled_from([0, 1, 16, 512, 4096])] * 4, st.integers(0, 0xFFFF_FFFF))
flag_values = st.one_of(*[st.sampled_from([0, NEXT, WRITE, NEXT | WRITE])] * 4, st.integers(0, 7))
nexts = st.one_of(*[st.integers(0, SIZE - 1)] * 4, st.integers(0, 0xFFFF))
descriptors = st.tuples(addresses, lengths, flag_values, nexts)


@settings(max_examples=300, deadline=None)
@given(
    table=st.lists(descriptors, min_size=SIZE, max_size=SIZE),
    inner=st.lists(descriptors, min_size=1, max_size=6),
    head=st.integers(0, SIZE - 1),
    indirect_ok=st.booleans(),
    point_at_inner=st.booleans(),
)
def test_walk_matches_the_one_descriptor_at_a_time_model(table, inner, head, indirect_ok, point_at_inner) -> None:
    rom = mmap.mmap(-1, 0x1000)
    memory = GuestMemory(
        [GuestMemoryRegion.anonymous(RAM_BASE, RAM_SIZE), GuestMemoryRegion(ROM_BASE, rom, writable=False)]
    )
    for i, (addr, length, flags, nxt) in enumerate(inner):
        memory.write(TABLE + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))
    for i, (addr, length, flags, nxt) in enumerate(table):
        if point_at_inner and i == SIZE - 1:
            addr, length, flags = TABLE, 16 * len(inner), flags | INDIRECT
        memory.write(DESC + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))
    memory.write_u16(AVAIL + 4, head)
    memory.write_u16(AVAIL + 2, 1)
    queue = SplitQueue(memory, SIZE)
    queue.desc_addr, queue.avail_addr, queue.used_addr, queue.indirect = DESC, AVAIL, USED, indirect_ok
    queue.enable()
    try:
        expected: tuple | None = model_walk(memory, head, indirect_ok)
    except QueueError:
        expected = None
    try:
        chain = queue.pop()
    except QueueError:
        assert expected is None
    else:
        assert chain is not None and expected is not None
        assert (chain.readable, chain.writable) == expected
        assert chain.readable_len == sum(n for _, n in expected[0])
        assert chain.writable_len == sum(n for _, n in expected[1])
    finally:
        memory.close()
