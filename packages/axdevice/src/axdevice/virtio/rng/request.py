"""virtio-rng request handling (virtio 1.2, 5.4.6): fill a chain's writable bytes with entropy.

The driver posts device-writable buffers on requestq 0; the device writes random bytes into
them and returns each with the count written (5.4.6.1 lets the device use less than the whole
buffer, though at least one byte). At most ``MAX_RNG_REQUEST`` bytes are drawn per chain; a
failing source returns the buffer empty, which Linux's driver takes as "try again".
"""

from __future__ import annotations

from collections.abc import Callable

from axaddrspace import GuestMemory

from ..queue import DescriptorChain

# Entropy drawn per chain: bounds the host work (and the source's output) one guest buffer
# can demand. Linux's hw_random core asks for at most a few dozen bytes at a time.
MAX_RNG_REQUEST = 64 << 10


def fill(chain: DescriptorChain, memory: GuestMemory, source: Callable[[int], bytes]) -> tuple[int, bool]:
    """Write entropy into ``chain``; returns (bytes written, whether the source failed)."""
    want = min(chain.writable_len, MAX_RNG_REQUEST)
    if want == 0:
        return 0, False
    try:
        data = bytes(source(want))[:want]
    except Exception:  # a failing source gives the guest nothing this time, never an exception
        return 0, True
    return chain.write_bytes(memory, data), len(data) < want
