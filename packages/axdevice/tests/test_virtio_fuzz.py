"""Hostile drivers: random registers, rings and memory never raise out of a device or escape RAM.

Guest RAM here is a writable region followed by a read-only one (a ROM), with unmapped space
below, between nothing and above; the ROM is checksummed around every run, so a device writing
where the driver had no right to point it would show. Every example ends with the device either
still running with a consistent used ring, or in DEVICE_NEEDS_RESET.
"""

from __future__ import annotations

import hashlib
import mmap
import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_virtio_driver import MMIO_BASE, RAM_BASE, VirtioDriver

from axaddrspace import AccessWidth, GuestMemory, GuestMemoryRegion
from axdevice.virtio import (
    DeviceStatus,
    RecordingNetBackend,
    RxResult,
    VirtioBlk,
    VirtioConsole,
    VirtioDevice,
    VirtioNet,
    VirtioRng,
)
from axdevice.virtio import mmio as m

RAM_SIZE = 0x10000
ROM_BASE = RAM_BASE + RAM_SIZE
ROM_SIZE = 0x4000
ROM_END = ROM_BASE + ROM_SIZE


class MemoryDisk:
    """An in-memory BlockBackend with every optional operation."""

    read_only = False
    serial = "fuzz"

    def __init__(self, size: int = 64 * 512) -> None:
        self.data = bytearray(size)
        self.size_bytes = size

    def readv(self, offset: int, views) -> int:
        done = 0
        for view in views:
            view[:] = self.data[offset + done : offset + done + view.nbytes]
            done += view.nbytes
        return done

    def writev(self, offset: int, views) -> int:
        done = 0
        for view in views:
            self.data[offset + done : offset + done + view.nbytes] = view
            done += view.nbytes
        return done

    def flush(self) -> None:
        pass

    def discard(self, offset: int, length: int) -> None:
        self.data[offset : offset + length] = bytes(length)

    def write_zeroes(self, offset: int, length: int, unmap: bool) -> None:
        self.data[offset : offset + length] = bytes(length)


DEVICES = {
    "blk": lambda: VirtioBlk(MemoryDisk()),
    "console": lambda: VirtioConsole(lambda data: None),
    "rng": lambda: VirtioRng(lambda n: b"\x5a" * n),
    "net": lambda: VirtioNet(RecordingNetBackend()),
}


def make_memory() -> GuestMemory:
    rom = mmap.mmap(-1, ROM_SIZE)
    rom.write(random.Random(7).randbytes(ROM_SIZE))
    return GuestMemory(
        [GuestMemoryRegion.anonymous(RAM_BASE, RAM_SIZE), GuestMemoryRegion(ROM_BASE, rom, writable=False)]
    )


def rom_digest(memory: GuestMemory) -> bytes:
    return hashlib.sha256(memory.read(ROM_BASE, ROM_SIZE)).digest()


# Addresses a hostile driver would try: mostly sane buffers in RAM (so requests get served and
# the device's own paths run), then RAM's edges, the ROM, unmapped space, the top of memory.
DATA = RAM_BASE + 0x8000
addresses = st.one_of(
    *[st.integers(DATA, RAM_BASE + RAM_SIZE - 0x1000)] * 6,
    st.integers(RAM_BASE, RAM_BASE + RAM_SIZE - 1),
    st.sampled_from(
        [0, RAM_BASE - 16, RAM_BASE + RAM_SIZE - 8, ROM_BASE - 4, ROM_BASE, ROM_END - 4, ROM_END, 2**64 - 16, 2**64 - 1]
    ),
    st.integers(0, 2**64 - 1),
)
lengths = st.one_of(
    *[st.integers(0, 64), st.sampled_from([1, 12, 16, 17, 512, 513, 1024, 0xFFF])] * 3,
    st.sampled_from([0x10000, 0x7FFF_FFFF, 0xFFFF_FFFF]),
    st.integers(0, 0xFFFF_FFFF),
)
flags = st.one_of(
    *[st.sampled_from([0, 1, 2, 3])] * 4,  # NEXT / WRITE combinations, the common case
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]),  # with INDIRECT
    st.integers(0, 0xFFFF),
)
indices = st.one_of(*[st.integers(0, 7)] * 6, st.sampled_from([8, 0xFFFF]), st.integers(0, 0xFFFF))
descriptors = st.tuples(addresses, lengths, flags, indices)


def running(driver: VirtioDriver) -> bool:
    return not driver.status & DeviceStatus.DEVICE_NEEDS_RESET


def check_invariants(driver: VirtioDriver, digest: bytes) -> None:
    t = driver.transport
    assert driver.irq.level == (t.interrupt_status != 0)
    assert t.interrupt_status & ~3 == 0
    assert rom_digest(driver.memory) == digest
    if running(driver) and t.status & DeviceStatus.DRIVER_OK:
        assert driver.device.active


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(DEVICES)),
    tables=st.lists(st.lists(descriptors, min_size=8, max_size=8), min_size=2, max_size=2),
    heads=st.lists(indices, max_size=8),
    avail_idx=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 0xFFFF)),
    indirect=st.lists(descriptors, max_size=6),
    host=st.lists(st.binary(max_size=80), max_size=3),
)
def test_random_descriptor_tables(kind, tables, heads, avail_idx, indirect, host) -> None:
    driver = VirtioDriver(DEVICES[kind](), make_memory())
    digest = rom_digest(driver.memory)
    driver.init(queue_size=8)
    table = driver.alloc(16 * max(len(indirect), 1), 16)
    for i, (addr, length, flags, nxt) in enumerate(indirect):
        driver.write_desc(table, i, addr, length, flags, nxt)
    for q_index, entries in enumerate(tables[: driver.device.num_queues]):
        q = driver.queues[q_index]
        for i, (addr, length, flags, nxt) in enumerate(entries):
            if i == 7 and indirect:  # one descriptor points at the driver-made indirect table
                addr, length = table, 16 * len(indirect)
            driver.write_desc(q.desc, i, addr, length, flags, nxt)
        for head in heads:
            driver.make_available(q_index, head)
        if avail_idx is not None:
            driver.memory.write_u16(q.avail + 2, avail_idx)
    for q_index in range(driver.device.num_queues):
        driver.kick(q_index)
        check_invariants(driver, digest)
    for data in host:
        if isinstance(driver.device, VirtioConsole):
            assert 0 <= driver.device.push_input(data) <= len(data)
        elif isinstance(driver.device, VirtioNet):
            net = driver.device
            frames, dropped = net.rx_frames, net.rx_dropped
            result = net.receive_frame(data)  # counted once as its result says; NO_BUFFER: not at all
            counted = {RxResult.DELIVERED: (1, 0), RxResult.DROPPED: (0, 1), RxResult.NO_BUFFER: (0, 0)}[result]
            assert (net.rx_frames - frames, net.rx_dropped - dropped) == counted
        check_invariants(driver, digest)
    if running(driver):
        for q_index in range(driver.device.num_queues):
            q = driver.transport.queues[q_index]
            assert driver.memory.read_u16(q.used_addr + 2) == q.next_used
            assert (q.next_avail - q.next_used) & 0xFFFF == 0  # everything popped was returned


DWZ_SEGMENTS = [struct.pack("<QII", 3, 2, 0), struct.pack("<QII", 0, 9, 1)]


def blk_header(req_type: int, sector: int) -> bytes:
    return struct.pack("<IIQ", req_type, 0, sector)


# Well-formed requests, which a few mutations then corrupt: reaches the devices' own request
# handling (and its error statuses) far more often than random tables do.
blk_requests = st.tuples(
    st.builds(
        blk_header,
        st.one_of(st.sampled_from([0, 1, 4, 8, 11, 13]), st.integers(0, 2**32 - 1)),
        st.one_of(st.integers(0, 70), st.integers(0, 2**64 - 1)),
    ),
    st.sampled_from([b"", bytes(512), bytes(1024), bytes(100), *DWZ_SEGMENTS]),
    st.lists(st.sampled_from([0, 1, 20, 512, 1024, 513]), max_size=2),
)
generic_requests = st.tuples(
    st.binary(max_size=40), st.binary(max_size=40), st.lists(st.sampled_from([0, 1, 12, 64, 1600]), max_size=2)
)
mutations = st.lists(
    st.tuples(
        st.sampled_from(["addr", "len", "flags", "next", "head", "avail_idx", "used_event"]),
        st.integers(0, 15),
        st.one_of(st.integers(0, 16), st.sampled_from([0xFFFF, 0xFFFF_FFFF, ROM_BASE, 2**64 - 1]), addresses),
    ),
    max_size=3,
)


def mutate(driver: VirtioDriver, q_index: int, what: str, i: int, value: int) -> None:
    q = driver.queues[q_index]
    entry = q.desc + 16 * i
    if what == "addr":
        driver.memory.write_u64(entry, value % 2**64)
    elif what == "len":
        driver.memory.write_u32(entry + 8, value % 2**32)
    elif what == "flags":
        driver.memory.write_u16(entry + 12, value % 2**16)
    elif what == "next":
        driver.memory.write_u16(entry + 14, value % 2**16)
    elif what == "head":
        driver.memory.write_u16(q.avail + 4 + 2 * (i % q.size), value % 2**16)
    elif what == "avail_idx":
        driver.memory.write_u16(q.avail + 2, value % 2**16)
    else:
        driver.set_used_event(q_index, value % 2**16)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(DEVICES)),
    data=st.data(),
    indirect=st.lists(st.booleans(), min_size=4, max_size=4),
    mutations=mutations,
)
def test_valid_requests_with_a_few_corruptions(kind, data, indirect, mutations) -> None:
    driver = VirtioDriver(DEVICES[kind](), make_memory())
    digest = rom_digest(driver.memory)
    driver.init(queue_size=16)
    requests = blk_requests if kind == "blk" else generic_requests
    posted = 0
    for i, (first, second, writable) in enumerate(data.draw(st.lists(requests, max_size=4))):
        q_index = i % driver.device.num_queues
        readable = [b for b in (first, second) if b]
        if readable or writable:
            driver.post(q_index, readable, writable, indirect=indirect[i])
            posted += 1
    for what, i, value in mutations:
        mutate(driver, data.draw(st.integers(0, driver.device.num_queues - 1)), what, i, value)
    for q_index in range(driver.device.num_queues):
        driver.kick(q_index)
        check_invariants(driver, digest)
    if isinstance(driver.device, VirtioConsole):
        driver.device.push_input(b"input bytes")
    elif isinstance(driver.device, VirtioNet):
        driver.device.receive_frame(bytes(60))
    check_invariants(driver, digest)
    if running(driver):
        done = sum(len(driver.used(q)) for q in range(driver.device.num_queues))
        if not mutations:  # every request served; receive buffers wait for host data
            assert done == posted or isinstance(driver.device, VirtioConsole | VirtioNet)


register_offsets = st.one_of(
    st.sampled_from(
        [
            m.DEVICE_FEATURES_SEL,
            m.DRIVER_FEATURES,
            m.DRIVER_FEATURES_SEL,
            m.QUEUE_SEL,
            m.QUEUE_NUM,
            m.QUEUE_READY,
            m.QUEUE_NOTIFY,
            m.INTERRUPT_ACK,
            m.STATUS,
            m.QUEUE_DESC_LOW,
            m.QUEUE_DESC_HIGH,
            m.QUEUE_DRIVER_LOW,
            m.QUEUE_DRIVER_HIGH,
            m.QUEUE_DEVICE_LOW,
            m.QUEUE_DEVICE_HIGH,
            m.SHM_SEL,
            m.QUEUE_RESET,
        ]
    ),
    st.integers(0, 0x1FF),
)
register_values = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 7, 8, 15, 64, 128, 0xFF, 256, 1024, 0xFFFF_FFFF]),
    st.integers(RAM_BASE, RAM_BASE + RAM_SIZE).map(lambda a: a & ~0xF),
    st.integers(0, 0xFFFF_FFFF),
)
widths = st.sampled_from(list(AccessWidth))
operations = st.one_of(
    st.tuples(st.just("write"), register_offsets, st.just(AccessWidth.DWORD), register_values),
    st.tuples(st.just("write"), st.integers(0, 0xFFF), widths, st.integers(0, 2**64 - 1)),
    st.tuples(st.just("read"), st.integers(0, 0xFFF), widths),
    st.tuples(st.just("poke"), st.integers(0, RAM_SIZE - 16), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("host"), st.binary(max_size=64)),
    st.tuples(st.just("bringup"), st.integers(0, 2**32 - 1)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(DEVICES)), seed=st.integers(0, 2**32 - 1), program=st.lists(operations, max_size=60))
def test_random_register_traffic_over_random_memory(kind: str, seed: int, program: list[tuple]) -> None:
    memory = make_memory()
    memory.write(RAM_BASE, random.Random(seed).randbytes(RAM_SIZE))  # rings full of garbage
    driver = VirtioDriver(DEVICES[kind](), memory)
    digest = rom_digest(memory)
    t = driver.transport
    for op in program:
        if op[0] == "write":
            t.handle_write(MMIO_BASE + op[1], op[2], op[3] & op[2].mask)
        elif op[0] == "read":
            assert 0 <= t.handle_read(MMIO_BASE + op[1], op[2]) <= op[2].mask
        elif op[0] == "poke":
            memory.write(RAM_BASE + op[1], op[2])
        elif op[0] == "host":
            device: VirtioDevice = driver.device
            if isinstance(device, VirtioConsole):
                device.push_input(op[1])
            elif isinstance(device, VirtioNet):
                device.receive_frame(op[1])
        else:  # a plausible bring-up with rings at random places, so queues do get served
            rnd = random.Random(op[1])
            for value in (0, 1, 3):
                t.handle_write(MMIO_BASE + m.STATUS, AccessWidth.DWORD, value)
            t.handle_write(MMIO_BASE + m.DRIVER_FEATURES_SEL, AccessWidth.DWORD, 1)
            t.handle_write(MMIO_BASE + m.DRIVER_FEATURES, AccessWidth.DWORD, 1)
            t.handle_write(MMIO_BASE + m.STATUS, AccessWidth.DWORD, 11)
            for q in range(driver.device.num_queues):
                t.handle_write(MMIO_BASE + m.QUEUE_SEL, AccessWidth.DWORD, q)
                t.handle_write(MMIO_BASE + m.QUEUE_NUM, AccessWidth.DWORD, rnd.choice([1, 2, 4, 8]))
                for reg in (m.QUEUE_DESC_LOW, m.QUEUE_DRIVER_LOW, m.QUEUE_DEVICE_LOW):
                    t.handle_write(MMIO_BASE + reg, AccessWidth.DWORD, RAM_BASE + rnd.randrange(0, RAM_SIZE, 16))
                t.handle_write(MMIO_BASE + m.QUEUE_READY, AccessWidth.DWORD, 1)
            t.handle_write(MMIO_BASE + m.STATUS, AccessWidth.DWORD, 15)
            for queue in t.queues:  # sometimes a sane available index over the garbage rings
                if queue.ready and rnd.random() < 0.5:
                    memory.write_u16(queue.avail_addr + 2, rnd.randrange(0, queue.size + 1))
            for q in range(driver.device.num_queues):
                t.handle_write(MMIO_BASE + m.QUEUE_NOTIFY, AccessWidth.DWORD, q)
        check_invariants(driver, digest)
        assert t.status & ~sum(DeviceStatus) == 0


@settings(max_examples=60, deadline=None)
@given(program=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(0, 3)), max_size=40))
def test_event_idx_never_loses_an_interrupt_the_driver_asked_for(program: list[tuple[int, int, int]]) -> None:
    """Whatever used_event the driver sets, crossing it raises the line (vring_need_event)."""
    driver = VirtioDriver(VirtioRng(bytes))
    driver.init(queue_size=8)
    for posts, used_event_ahead, _ in program:
        q = driver.queues[0]
        used_before = driver.memory.read_u16(q.used + 2)
        used_event = (used_before + used_event_ahead) & 0xFFFF
        driver.set_used_event(0, used_event)
        driver.ack()
        posts = min(posts, len(q.free))
        for _ in range(posts):
            driver.post(0, writable=[1])
        driver.kick(0)
        used_after = driver.memory.read_u16(q.used + 2)
        crossed = (used_after - used_event - 1) & 0xFFFF < (used_after - used_before) & 0xFFFF
        assert driver.irq.level == crossed
        driver.used(0)


def test_transport_survives_a_device_whose_memory_vanishes() -> None:
    memory = make_memory()
    driver = VirtioDriver(VirtioRng(bytes), memory)
    driver.init(queue_size=8)
    driver.post(0, writable=[8])
    memory.remove_region(RAM_BASE).close()
    driver.kick(0)  # the rings are gone: NEEDS_RESET, no exception
    assert driver.status & DeviceStatus.DEVICE_NEEDS_RESET
    assert driver.read(m.INTERRUPT_STATUS) == m.INT_CONFIG_CHANGE and driver.irq.level  # the driver is told
    assert driver.read(m.MAGIC) == m.MAGIC_VALUE  # the registers still answer
    driver.write(m.STATUS, 0)  # and a reset brings the device back
    assert driver.status == 0 and not driver.irq.level
