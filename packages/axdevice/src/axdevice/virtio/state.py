"""Saved state of split virtqueues and of the virtio-mmio transport: plain dataclasses.

Nothing here knows how it is stored; ``axdevice.virtio.serialize`` turns these into plain
dicts and back, and no device or transport module imports it. Restoring validates every field
(``SplitQueue.from_state``, ``VirtioMmioTransport.from_state``), since a saved file is as
untrusted as the guest that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class QueueState:
    """One split virtqueue: what the driver configured and how far the device got."""

    size: int = 0
    ready: bool = False
    desc_addr: int = 0
    avail_addr: int = 0
    used_addr: int = 0
    next_avail: int = 0  # the device's last_avail_idx (free-running, mod 2**16)
    next_used: int = 0  # the used ring's idx as the device last wrote it
    signalled_used: int = 0  # used idx at the last notification decision (EVENT_IDX)
    event_idx: bool = False
    indirect: bool = False


@dataclass
class VirtioMmioState:
    """The transport's registers and its queues; the device's own state is saved separately."""

    status: int = 0
    device_features_sel: int = 0
    driver_features: int = 0
    driver_features_sel: int = 0
    queue_sel: int = 0
    interrupt_status: int = 0
    config_generation: int = 0
    queues: list[QueueState] = field(default_factory=list)
