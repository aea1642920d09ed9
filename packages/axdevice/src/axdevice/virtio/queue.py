"""Split virtqueues (virtio 1.2, section 2.7) from the device's side.

Theory of operation. The driver owns three areas of guest RAM: the descriptor table (16-byte
descriptors: addr, len, flags, next), the available ring (flags, idx, ring[size], used_event)
and the used ring (flags, idx, ring[size] of (id, len), avail_event). It makes a chain of
descriptors available by writing the head index into the available ring and advancing its idx;
the device ``pop``s chains in order, does the work, and ``push_used`` returns each head with
the number of bytes it wrote. ``should_notify`` then decides whether the driver wants an
interrupt: with VIRTIO_F_EVENT_IDX by the used_event check (2.7.10, Linux's vring_need_event),
otherwise by the available ring's VIRTQ_AVAIL_F_NO_INTERRUPT flag (2.7.7). The device always
wants kicks: it never sets VIRTQ_USED_F_NO_NOTIFY, and with EVENT_IDX it publishes avail_event
= the next index it will read, so the driver kicks whenever it adds a buffer to an idle queue.

Everything the driver wrote is untrusted. ``enable`` checks the size and the three areas
(alignment, inside RAM) once; ``pop`` checks the available index (it may run ahead by at most
``size``), each head and ``next`` index, chain length (at most ``size`` descriptors, so a loop
ends), indirect tables (only if negotiated, never nested, never with NEXT, a whole number of
descriptors, at most ``MAX_INDIRECT_DESCRIPTORS``), the order of readable before writable
buffers, every buffer's placement in RAM (writable ones in writable RAM) and the chain's total
length, all before the device copies a byte. A violation raises ``QueueError``; the transport
turns it into DEVICE_NEEDS_RESET, so it never reaches the bus.

Cost. A block request names hundreds of 4 KiB pages, so the walk is per-descriptor work kept
small: a table the chain continues in is copied in one read and unpacked from the copy (which
also means a driver rewriting a descriptor cannot make a checked value differ from the used
one), each buffer is checked with one ``GuestMemory.backed`` call, and the buffers become views
in one ``GuestMemory.views`` call, which tells the write listeners once per run of adjacent
buffers.

Ordering. The spec asks for memory barriers: read the available idx before the ring entries it
covers, write a used entry before the used idx, publish avail_event before re-reading the
available idx. Python has no fence primitive. The accesses are made in exactly that program
order, each a separate call copying through the RAM mmap, so neither the interpreter nor the C
compiler merges or reorders them, and x86 (TSO) keeps loads in order and stores in order. The
one pair TSO may reorder is the store of avail_event followed by the idx re-check: the store
sits in the store buffer for nanoseconds while microseconds of interpretation separate the two,
which makes a lost kick practically, not formally, impossible on KVM; under the soft backend the
guest's vCPUs are threads that hand the GIL over through mutexes (full barriers). Weakly ordered
hosts (arm64 with KVM) would need a real fence in the memory layer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from axaddrspace import GuestMemory, GuestMemoryError

from .constants import (
    VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
)
from .state import QueueState

# The spec allows 32768 entries; no driver we target asks for more than the device offers, and
# 1024 is the ceiling QEMU uses too. It bounds the descriptor walk of one chain and the rings'
# footprint (16 KiB of descriptors).
MAX_QUEUE_SIZE = 1024

# An indirect table is driver-sized memory we walk descriptor by descriptor; a chain may not be
# longer than a queue, so the largest queue bounds it. Linux's largest tables (virtio-blk with
# seg_max + 2 entries) stay far below.
MAX_INDIRECT_DESCRIPTORS = MAX_QUEUE_SIZE

# The total of one chain's buffer lengths: bounds what a single request can make a device copy,
# read or write (a descriptor's u32 length alone could claim 4 GiB). Linux's block layer caps
# requests at a few MiB, network frames at 64 KiB.
MAX_CHAIN_BYTES = 256 << 20

DESC_SIZE = 16
DESC_ALIGN = 16  # 2.7: descriptor table alignment
AVAIL_ALIGN = 2
USED_ALIGN = 4
USED_ELEM_SIZE = 8

_DESC = struct.Struct("<QIHH")  # addr, len, flags, next
_USED_ELEM = struct.Struct("<II")  # id, len

Segment = tuple[int, int]
"""(guest physical address, length) of one buffer."""


class QueueError(Exception):
    """The driver broke the virtqueue rules; the device must be reset (DEVICE_NEEDS_RESET)."""


def is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def slice_segments(segments: Iterable[Segment], offset: int = 0, length: int | None = None) -> list[Segment]:
    """The part of ``segments`` from byte ``offset``, at most ``length`` bytes long."""
    out: list[Segment] = []
    remaining = -1 if length is None else length
    for gpa, n in segments:
        if remaining == 0:
            break
        if offset >= n:
            offset -= n
            continue
        gpa, n = gpa + offset, n - offset
        offset = 0
        if remaining > 0:
            n = min(n, remaining)
            remaining -= n
        out.append((gpa, n))
    return out


@dataclass(frozen=True, slots=True)
class DescriptorChain:
    """One available chain: its head index and its buffers, readable ones first.

    The buffers were checked to lie in guest RAM when the chain was popped; the helpers still
    go through GuestMemory, so a region removed since then gives QueueError, never a stray
    access.
    """

    head: int
    readable: tuple[Segment, ...]
    writable: tuple[Segment, ...]
    readable_len: int
    writable_len: int

    def read_bytes(self, memory: GuestMemory, limit: int, offset: int = 0) -> bytes:
        """A copy of at most ``limit`` readable bytes from byte ``offset``."""
        segments = slice_segments(self.readable, offset, max(0, limit))
        buf = bytearray(sum(n for _, n in segments))
        out = memoryview(buf)
        pos = 0
        try:
            for gpa, n in segments:
                memory.read_into(gpa, out[pos : pos + n])
                pos += n
        except GuestMemoryError as error:
            raise QueueError(str(error)) from None
        finally:
            out.release()
        return bytes(buf)

    def write_bytes(self, memory: GuestMemory, data: bytes | bytearray | memoryview, offset: int = 0) -> int:
        """Copy ``data`` into the writable buffers from byte ``offset``; returns bytes written."""
        with memoryview(data) as raw, raw.cast("B") as src:
            pos = 0
            try:
                for gpa, n in slice_segments(self.writable, offset, src.nbytes):
                    memory.write_from(gpa, src[pos : pos + n])
                    pos += n
            except GuestMemoryError as error:
                raise QueueError(str(error)) from None
            return pos

    def readable_views(self, memory: GuestMemory, offset: int = 0, length: int | None = None) -> list[memoryview]:
        """Zero-copy views of the readable buffers (for os.pwritev); release them after use."""
        return _views(memory, slice_segments(self.readable, offset, length), writable=False)

    def writable_views(self, memory: GuestMemory, offset: int = 0, length: int | None = None) -> list[memoryview]:
        """Zero-copy writable views of the writable buffers (for os.preadv); release after use."""
        return _views(memory, slice_segments(self.writable, offset, length), writable=True)


def _views(memory: GuestMemory, segments: Sequence[Segment], writable: bool) -> list[memoryview]:
    try:
        return memory.views(segments, writable=writable)
    except GuestMemoryError as error:
        raise QueueError(str(error)) from None


class SplitQueue:
    """One split virtqueue: the driver's settings and the device's position in the rings."""

    def __init__(self, memory: GuestMemory, max_size: int) -> None:
        if not is_power_of_two(max_size) or max_size > MAX_QUEUE_SIZE:
            raise ValueError(f"queue max size {max_size} is not a power of two up to {MAX_QUEUE_SIZE}")
        self.memory = memory
        self.max_size = max_size
        self._desc_buf = bytearray(DESC_SIZE)
        self.chains_used = 0
        """Chains returned to the driver (requests served), for the VMM's metrics; a device reset
        keeps the count."""
        self.bytes_in = 0
        """Bytes the driver offered the device: the readable buffers of every chain popped."""
        self.bytes_out = 0
        """Bytes the device wrote for the driver: ``written_len`` of every chain used."""
        self.reset()

    def reset(self) -> None:
        """Back to the state after a device reset: not ready, nothing configured."""
        self.size = self.max_size
        self.ready = False
        self.desc_addr = 0
        self.avail_addr = 0
        self.used_addr = 0
        self.next_avail = 0
        self.next_used = 0
        self.signalled_used = 0
        self.event_idx = False
        self.indirect = False

    # -- configuration ------------------------------------------------------------------------

    def layout_error(self) -> str | None:
        """Why the driver's size and addresses cannot be used, or None if they can."""
        size = self.size
        if not is_power_of_two(size) or size > self.max_size:
            return f"queue size {size} is not a power of two up to {self.max_size}"
        areas = (
            ("descriptor table", self.desc_addr, DESC_SIZE * size, DESC_ALIGN, False),
            ("available ring", self.avail_addr, 6 + 2 * size, AVAIL_ALIGN, False),
            ("used ring", self.used_addr, 6 + USED_ELEM_SIZE * size, USED_ALIGN, True),
        )
        for name, addr, length, align, writable in areas:
            if addr % align:
                return f"{name} at {addr:#x} is not {align}-byte aligned"
            if not self.memory.backed(addr, length, writable=writable):
                return f"{name} at {addr:#x} ({length} bytes) is not in {'writable ' * writable}guest RAM"
        return None

    def enable(self) -> None:
        """The driver wrote QueueReady = 1: check the layout and start serving the queue."""
        reason = self.layout_error()
        if reason is not None:
            raise QueueError(reason)
        self.ready = True

    def disable(self) -> None:
        self.ready = False

    # -- consuming available chains -----------------------------------------------------------

    def pop(self) -> DescriptorChain | None:
        """The next available chain, or None if the driver has made none available."""
        if not self.ready:
            return None
        avail_idx = self._read_u16(self.avail_addr + 2)
        pending = (avail_idx - self.next_avail) & 0xFFFF
        if pending == 0 and self.event_idx:
            # Ask for a kick on the next buffer, then look again: the driver may have added one
            # after our read and before seeing the new avail_event (2.7.10).
            self._write_u16(self._avail_event_addr, self.next_avail)
            avail_idx = self._read_u16(self.avail_addr + 2)
            pending = (avail_idx - self.next_avail) & 0xFFFF
        if pending == 0:
            return None
        if pending > self.size:
            raise QueueError(f"available idx {avail_idx} is {pending} entries ahead of {self.next_avail}")
        slot = self.next_avail % self.size
        head = self._read_u16(self.avail_addr + 4 + 2 * slot)
        chain = self._walk(head)
        self.bytes_in += chain.readable_len
        self.next_avail = (self.next_avail + 1) & 0xFFFF
        if self.event_idx:
            self._write_u16(self._avail_event_addr, self.next_avail)
        return chain

    def _walk(self, head: int) -> DescriptorChain:
        """Collect and check the buffers of the chain starting at ``head``.

        The head descriptor is read alone; a table the chain goes on in (the rest of the
        descriptor table, or an indirect table) is copied in one read, and every descriptor is
        unpacked once from that copy, so a driver rewriting descriptors meanwhile cannot make a
        checked value differ from the one used.
        """
        readable: list[Segment] = []
        writable: list[Segment] = []
        memory = self.memory
        unpack_from = _DESC.unpack_from
        table_len, index = self.size, head
        entries: bytearray | None = None  # the table being walked, once copied
        in_indirect = False
        seen = total = read_len = 0
        while True:
            if index >= table_len:
                raise QueueError(f"descriptor index {index} is outside a table of {table_len}")
            seen += 1
            if seen > table_len:
                raise QueueError(f"chain from head {head} is longer than its table ({table_len}): a loop")
            if entries is None:
                addr, length, flags, next_index = self._read_desc(self.desc_addr + DESC_SIZE * index)
            else:
                addr, length, flags, next_index = unpack_from(entries, DESC_SIZE * index)
            if flags & VIRTQ_DESC_F_INDIRECT:
                table, table_len = self._indirect_table(addr, length, flags, in_indirect)
                entries = self._read_table(table, table_len)
                index, seen, in_indirect = 0, 0, True
                continue
            total += length
            if total > MAX_CHAIN_BYTES:
                raise QueueError(f"chain from head {head} is over {MAX_CHAIN_BYTES} bytes")
            is_write = flags & VIRTQ_DESC_F_WRITE
            if length:
                if is_write:
                    if not memory.backed(addr, length, writable=True):
                        raise QueueError(f"buffer at {addr:#x} ({length} bytes) is not in writable guest RAM")
                    writable.append((addr, length))
                else:
                    if writable:
                        raise QueueError(f"chain from head {head} has a readable buffer after a writable one")
                    if not memory.backed(addr, length):
                        raise QueueError(f"buffer at {addr:#x} ({length} bytes) is not in guest RAM")
                    readable.append((addr, length))
                    read_len += length
            elif not is_write and writable:
                raise QueueError(f"chain from head {head} has a readable buffer after a writable one")
            if not flags & VIRTQ_DESC_F_NEXT:
                break
            index = next_index
            if entries is None:
                entries = self._read_table(self.desc_addr, self.size)
        return DescriptorChain(head, tuple(readable), tuple(writable), read_len, total - read_len)

    def _indirect_table(self, addr: int, length: int, flags: int, in_indirect: bool) -> tuple[int, int]:
        """Check an indirect descriptor (2.7.5.3) and return its table's address and length."""
        if not self.indirect:
            raise QueueError("indirect descriptor without VIRTIO_F_INDIRECT_DESC")
        if in_indirect:
            raise QueueError("indirect descriptor inside an indirect table")
        if flags & VIRTQ_DESC_F_NEXT:
            raise QueueError("descriptor has both INDIRECT and NEXT")
        count = length // DESC_SIZE
        if length % DESC_SIZE or not 0 < count <= MAX_INDIRECT_DESCRIPTORS:
            raise QueueError(f"indirect table of {length} bytes is not 1..{MAX_INDIRECT_DESCRIPTORS} descriptors")
        if not self.memory.backed(addr, length):
            raise QueueError(f"indirect table at {addr:#x} ({length} bytes) is not in guest RAM")
        return addr, count

    # -- returning used chains ----------------------------------------------------------------

    def push_used(self, head: int, written_len: int) -> None:
        """Return chain ``head`` with ``written_len`` bytes written: the entry, then the idx."""
        if not 0 <= head < self.size or not 0 <= written_len <= 0xFFFFFFFF:
            raise ValueError(f"used entry ({head}, {written_len}) out of range")  # a device bug
        slot = self.next_used % self.size
        entry = _USED_ELEM.pack(head, written_len)
        try:
            self.memory.write_from(self.used_addr + 4 + USED_ELEM_SIZE * slot, entry)
        except GuestMemoryError as error:
            raise QueueError(str(error)) from None
        self.next_used = (self.next_used + 1) & 0xFFFF
        self._write_u16(self.used_addr + 2, self.next_used)
        self.chains_used += 1
        self.bytes_out += written_len

    def should_notify(self) -> bool:
        """Whether the driver wants an interrupt for the chains used since the last call."""
        new, old = self.next_used, self.signalled_used
        self.signalled_used = new
        if new == old or not self.ready:
            return False
        if self.event_idx:
            used_event = self._read_u16(self.avail_addr + 4 + 2 * self.size)
            return ((new - used_event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)
        return not self._read_u16(self.avail_addr) & VIRTQ_AVAIL_F_NO_INTERRUPT

    # -- saved state ----------------------------------------------------------------------------

    def state(self) -> QueueState:
        return QueueState(
            size=self.size,
            ready=self.ready,
            desc_addr=self.desc_addr,
            avail_addr=self.avail_addr,
            used_addr=self.used_addr,
            next_avail=self.next_avail,
            next_used=self.next_used,
            signalled_used=self.signalled_used,
            event_idx=self.event_idx,
            indirect=self.indirect,
        )

    @classmethod
    def from_state(cls, memory: GuestMemory, max_size: int, state: QueueState) -> SplitQueue:
        """A queue resumed from ``state``; ValueError if it is not one a queue can be in."""
        queue = cls(memory, max_size)
        for name in ("size", "desc_addr", "avail_addr", "used_addr", "next_avail", "next_used", "signalled_used"):
            value = getattr(state, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"QueueState.{name} = {value!r} is not a non-negative integer")
        for name in ("next_avail", "next_used", "signalled_used"):
            if getattr(state, name) > 0xFFFF:
                raise ValueError(f"QueueState.{name} = {getattr(state, name)} is not a 16-bit ring index")
        queue.size, queue.desc_addr = state.size, state.desc_addr
        queue.avail_addr, queue.used_addr = state.avail_addr, state.used_addr
        queue.next_avail, queue.next_used, queue.signalled_used = (
            state.next_avail,
            state.next_used,
            state.signalled_used,
        )
        queue.event_idx, queue.indirect = bool(state.event_idx), bool(state.indirect)
        if state.ready:
            reason = queue.layout_error()
            if reason is not None:
                raise ValueError(f"QueueState is ready but {reason}")
            queue.ready = True
        return queue

    # -- guest memory access --------------------------------------------------------------------

    @property
    def _avail_event_addr(self) -> int:
        return self.used_addr + 4 + USED_ELEM_SIZE * self.size

    def _read_desc(self, gpa: int) -> tuple[int, int, int, int]:
        try:
            self.memory.read_into(gpa, self._desc_buf)
        except GuestMemoryError as error:
            raise QueueError(str(error)) from None
        return _DESC.unpack(self._desc_buf)

    def _read_table(self, gpa: int, count: int) -> bytearray:
        """A copy of ``count`` descriptors at ``gpa`` (checked to be RAM when the table was)."""
        buf = bytearray(DESC_SIZE * count)
        try:
            self.memory.read_into(gpa, buf)
        except GuestMemoryError as error:
            raise QueueError(str(error)) from None
        return buf

    def _read_u16(self, gpa: int) -> int:
        try:
            return self.memory.read_u16(gpa)
        except GuestMemoryError as error:
            raise QueueError(str(error)) from None

    def _write_u16(self, gpa: int, value: int) -> None:
        try:
            self.memory.write_u16(gpa, value)
        except GuestMemoryError as error:
            raise QueueError(str(error)) from None
