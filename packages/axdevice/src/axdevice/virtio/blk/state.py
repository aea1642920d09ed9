"""Saved state of a virtio-blk device: a plain dataclass (the transport saves the queues).

Requests complete before the vCPU leaves the device, so there is nothing in flight to save;
what is kept identifies the disk, so resuming against a different image is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VirtioBlkState:
    capacity_sectors: int = 0
    read_only: bool = False
    requests: int = 0
    io_errors: int = 0
    unsupported: int = 0
    host_errors: dict[str, int] = field(default_factory=dict)  # host failures by kind (errno name)
