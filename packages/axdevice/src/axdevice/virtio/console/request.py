"""virtio-console data movement (virtio 1.2, 5.3.6): port 0's transmit and receive buffers.

Without VIRTIO_CONSOLE_F_MULTIPORT there is one port and no control queue: every readable
byte of a transmitq chain is console output, and input fills receiveq chains' writable bytes
in order. Output reaches the sink ``MAX_SINK_WRITE`` bytes at a time; input is bounded by the
buffers the driver posted.
"""

from __future__ import annotations

from collections.abc import Callable

from axaddrspace import GuestMemory

from ..queue import DescriptorChain

# Output is copied out of guest memory and handed to the sink in pieces of this size, so a
# chain of up to MAX_CHAIN_BYTES never becomes one huge host allocation. Linux's hvc driver
# writes at most a page per buffer, so in practice a chain is one piece.
MAX_SINK_WRITE = 64 << 10


def transmit(chain: DescriptorChain, memory: GuestMemory, sink: Callable[[bytes], object] | None) -> tuple[int, int]:
    """Send a transmitq chain's bytes to ``sink``; returns (bytes sent, bytes lost)."""
    sent = lost = 0
    for offset in range(0, chain.readable_len, MAX_SINK_WRITE):
        data = chain.read_bytes(memory, MAX_SINK_WRITE, offset)
        if sink is None:
            lost += len(data)
            continue
        try:
            sink(data)
        except Exception:  # a failing sink loses the output, never the VMM
            lost += len(data)
        else:
            sent += len(data)
    return sent, lost


def receive(chain: DescriptorChain, memory: GuestMemory, data: memoryview) -> int:
    """Copy as much of ``data`` as fits into a receiveq chain; returns the bytes written."""
    return chain.write_bytes(memory, data[: chain.writable_len])
