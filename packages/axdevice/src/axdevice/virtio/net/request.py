"""virtio-net frame handling (virtio 1.2, 5.1.6): the header, transmit and receive buffers.

Every buffer starts with a ``virtio_net_hdr``, 12 bytes since VERSION_1 (flags, gso_type,
hdr_len, gso_size, csum_start, csum_offset, num_buffers). No offloads are offered, so on
transmit the header is skipped and the rest of the chain's readable bytes is the frame; on
receive the device writes an all-zero header with num_buffers = 1 (one buffer per frame, no
MRG_RXBUF) followed by the frame.
"""

from __future__ import annotations

import struct

from axaddrspace import GuestMemory

from ..queue import DescriptorChain, QueueError

HEADER_SIZE = 12

# The largest frame either way: a 65535-byte IP packet behind a 14-byte Ethernet header, plus
# a byte of slack. Without GSO offloads no legitimate frame is bigger; it bounds the copy one
# transmit chain can cause and what the host may hand the guest.
MAX_FRAME_SIZE = 65550

_RX_HEADER = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 1)  # everything 0, num_buffers = 1


def tx_frame(chain: DescriptorChain, memory: GuestMemory) -> bytes | None:
    """The frame a transmitq chain carries, or None if it is over ``MAX_FRAME_SIZE``.

    A chain too short for the header is a driver bug the device cannot answer sensibly:
    QueueError (QEMU does the same).
    """
    if chain.readable_len < HEADER_SIZE:
        raise QueueError(f"virtio-net transmit buffer of {chain.readable_len} bytes has no header")
    length = chain.readable_len - HEADER_SIZE
    if length > MAX_FRAME_SIZE:
        return None
    return chain.read_bytes(memory, length, HEADER_SIZE)


def rx_fill(chain: DescriptorChain, memory: GuestMemory, frame: bytes) -> int | None:
    """Write header and frame into a receiveq chain; the used length, or None if it cannot fit."""
    if chain.writable_len < HEADER_SIZE + len(frame):
        return None
    chain.write_bytes(memory, _RX_HEADER)
    chain.write_bytes(memory, frame, HEADER_SIZE)
    return HEADER_SIZE + len(frame)
