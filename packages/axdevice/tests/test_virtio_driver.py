"""A test double of a guest's virtio-mmio driver, and the transport basics it relies on.

``VirtioDriver`` plays Linux's part against a ``VirtioMmioTransport``: it negotiates features,
lays out split rings in guest RAM (an anonymous region with unmapped space on both sides),
posts descriptor chains (direct or indirect), kicks, and reads the used ring back. Other
virtio test modules import it from here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from axaddrspace import AccessWidth, GuestMemory, GuestMemoryRegion
from axdevice import RecordingIrqLine
from axdevice.virtio import DeviceStatus, VirtioDevice, VirtioMmioTransport
from axdevice.virtio import mmio as m
from axdevice.virtio.constants import VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit

RAM_BASE = 0x8000_0000
RAM_SIZE = 4 << 20
MMIO_BASE = 0x1000_1000

DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT = 1, 2, 4


def make_memory(size: int = RAM_SIZE) -> GuestMemory:
    """Guest RAM at RAM_BASE with nothing mapped below or above it."""
    return GuestMemory([GuestMemoryRegion.anonymous(RAM_BASE, size)])


@dataclass
class DriverQueue:
    index: int
    size: int
    desc: int
    avail: int
    used: int
    free: list[int] = field(default_factory=list)
    avail_idx: int = 0
    last_used: int = 0


class VirtioDriver:
    """The guest driver's side of one virtio-mmio device."""

    def __init__(self, device: VirtioDevice, memory: GuestMemory | None = None) -> None:
        self.memory = memory if memory is not None else make_memory()
        self.irq = RecordingIrqLine()
        self.device = device
        self.transport = VirtioMmioTransport(MMIO_BASE, device, self.memory, self.irq)
        self.queues: dict[int, DriverQueue] = {}
        self._next_free = RAM_BASE
        self._ram_end = RAM_BASE + self.memory.total_size

    # -- registers ----------------------------------------------------------------------------

    def read(self, offset: int, width: AccessWidth = AccessWidth.DWORD) -> int:
        return self.transport.handle_read(MMIO_BASE + offset, width)

    def write(self, offset: int, value: int, width: AccessWidth = AccessWidth.DWORD) -> None:
        self.transport.handle_write(MMIO_BASE + offset, width, value)

    def config(self, offset: int, width: AccessWidth) -> int:
        return self.read(m.CONFIG + offset, width)

    @property
    def status(self) -> int:
        return self.read(m.STATUS)

    def device_features(self) -> int:
        self.write(m.DEVICE_FEATURES_SEL, 0)
        low = self.read(m.DEVICE_FEATURES)
        self.write(m.DEVICE_FEATURES_SEL, 1)
        return low | self.read(m.DEVICE_FEATURES) << 32

    def negotiate(self, features: int | None = None) -> bool:
        """Reset, ACKNOWLEDGE, DRIVER, write ``features`` (default: all offered), FEATURES_OK."""
        self.write(m.STATUS, 0)
        self.write(m.STATUS, DeviceStatus.ACKNOWLEDGE)
        self.write(m.STATUS, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER)
        offered = self.device_features()
        wanted = offered if features is None else features
        for sel in (0, 1):
            self.write(m.DRIVER_FEATURES_SEL, sel)
            self.write(m.DRIVER_FEATURES, (wanted >> (32 * sel)) & 0xFFFFFFFF)
        self.write(m.STATUS, self.status | DeviceStatus.FEATURES_OK)
        return bool(self.status & DeviceStatus.FEATURES_OK)

    def init(self, features: int | None = None, queue_size: int | None = None) -> None:
        """The whole bring-up: negotiate, set up every queue, DRIVER_OK."""
        assert self.negotiate(features), f"FEATURES_OK refused, status {self.status:#x}"
        for index in range(self.device.num_queues):
            self.setup_queue(index, queue_size)
        self.write(m.STATUS, self.status | DeviceStatus.DRIVER_OK)
        assert self.status & DeviceStatus.DRIVER_OK

    def setup_queue(self, index: int, size: int | None = None) -> DriverQueue:
        self.write(m.QUEUE_SEL, index)
        assert self.read(m.QUEUE_READY) == 0
        size = size or self.read(m.QUEUE_NUM_MAX)
        desc = self.alloc(16 * size, 16)
        avail = self.alloc(6 + 2 * size, 2)
        used = self.alloc(6 + 8 * size, 4)
        self.write(m.QUEUE_NUM, size)
        for low, addr in ((m.QUEUE_DESC_LOW, desc), (m.QUEUE_DRIVER_LOW, avail), (m.QUEUE_DEVICE_LOW, used)):
            self.write(low, addr & 0xFFFFFFFF)
            self.write(low + 4, addr >> 32)
        self.write(m.QUEUE_READY, 1)
        queue = DriverQueue(index, size, desc, avail, used, free=list(range(size)))
        self.queues[index] = queue
        return queue

    # -- memory -------------------------------------------------------------------------------

    def alloc(self, size: int, align: int = 8) -> int:
        addr = (self._next_free + align - 1) & ~(align - 1)
        assert addr + size <= self._ram_end, "test RAM exhausted"
        self._next_free = addr + size
        return addr

    def buffer(self, data: bytes) -> int:
        addr = self.alloc(max(len(data), 1))
        self.memory.write(addr, data)
        return addr

    # -- queues -------------------------------------------------------------------------------

    def write_desc(self, table: int, i: int, addr: int, length: int, flags: int, next_index: int = 0) -> None:
        self.memory.write(table + 16 * i, struct.pack("<QIHH", addr, length, flags, next_index))

    def post(
        self, index: int, readable: Sequence[bytes] = (), writable: Sequence[int] = (), indirect: bool = False
    ) -> tuple[int, list[int]]:
        """Make a chain available: ``readable`` buffers, then writable buffers of the given sizes.

        Returns the head and the writable buffers' addresses.
        """
        q = self.queues[index]
        bufs = [(self.buffer(data), len(data), 0) for data in readable]
        out = []
        for size in writable:
            addr = self.alloc(max(size, 1))
            out.append(addr)
            bufs.append((addr, size, DESC_F_WRITE))
        if indirect:
            table = self.alloc(16 * len(bufs), 16)
            for i, (addr, length, flags) in enumerate(bufs):
                last = i == len(bufs) - 1
                self.write_desc(table, i, addr, length, flags | (0 if last else DESC_F_NEXT), i + 1)
            head = q.free.pop(0)
            self.write_desc(q.desc, head, table, 16 * len(bufs), DESC_F_INDIRECT)
        else:
            ids = [q.free.pop(0) for _ in bufs]
            for i, (addr, length, flags) in enumerate(bufs):
                nxt = ids[i + 1] if i + 1 < len(bufs) else None
                self.write_desc(q.desc, ids[i], addr, length, flags | (0 if nxt is None else DESC_F_NEXT), nxt or 0)
            head = ids[0]
        self.make_available(index, head)
        return head, out

    def make_available(self, index: int, head: int) -> None:
        q = self.queues[index]
        self.memory.write_u16(q.avail + 4 + 2 * (q.avail_idx % q.size), head)
        q.avail_idx = (q.avail_idx + 1) & 0xFFFF
        self.memory.write_u16(q.avail + 2, q.avail_idx)

    def kick(self, index: int) -> None:
        self.write(m.QUEUE_NOTIFY, index)

    def used(self, index: int) -> list[tuple[int, int]]:
        """New used entries (id, len) since the last call; their descriptors are freed."""
        q = self.queues[index]
        idx = self.memory.read_u16(q.used + 2)
        entries = []
        while q.last_used != idx:
            slot = q.last_used % q.size
            entries.append(struct.unpack("<II", self.memory.read(q.used + 4 + 8 * slot, 8)))
            q.last_used = (q.last_used + 1) & 0xFFFF
        for head, _ in entries:
            self._free_chain(q, head)
        return entries

    def _free_chain(self, q: DriverQueue, head: int) -> None:
        i = head
        for _ in range(q.size):
            q.free.append(i)
            _, _, flags, nxt = struct.unpack("<QIHH", self.memory.read(q.desc + 16 * i, 16))
            if not flags & DESC_F_NEXT:
                return
            i = nxt

    def set_used_event(self, index: int, value: int) -> None:
        q = self.queues[index]
        self.memory.write_u16(q.avail + 4 + 2 * q.size, value)

    def avail_event(self, index: int) -> int:
        q = self.queues[index]
        return self.memory.read_u16(q.used + 4 + 8 * q.size)

    def set_avail_flags(self, index: int, flags: int) -> None:
        self.memory.write_u16(self.queues[index].avail, flags)

    def ack(self) -> int:
        """What Linux's vm_interrupt does: read InterruptStatus and acknowledge it."""
        status = self.read(m.INTERRUPT_STATUS)
        self.write(m.INTERRUPT_ACK, status)
        return status


ALL_TRANSPORT = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC)


def test_driver_helper_brings_a_device_up() -> None:
    from axdevice.virtio import VirtioRng

    driver = VirtioDriver(VirtioRng(lambda n: bytes(n)))
    driver.init()
    assert driver.read(m.MAGIC) == 0x74726976 and driver.read(m.VERSION_REG) == 2
    assert driver.device.active
    assert driver.device.driver_features == ALL_TRANSPORT
