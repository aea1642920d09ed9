"""virtio 1.2 over virtio-mmio (version 2) with split virtqueues, and four devices.

Each name is imported on first use (PEP 562): a VM loads the modules of the devices it has, so
``axvisor run`` of a VM without them does not pay for them at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .blk import BlockBackend, DiskImageError, DiskInUseError, RawFileBackend, VirtioBlk, VirtioBlkState
    from .console import VirtioConsole, VirtioConsoleState
    from .constants import DeviceId, DeviceStatus
    from .device import DeviceLink, VirtioDevice
    from .mmio import VirtioMmioTransport
    from .net import MAX_FRAME_SIZE, NetBackend, RecordingNetBackend, RxResult, VirtioNet, VirtioNetState
    from .queue import (
        MAX_CHAIN_BYTES,
        MAX_INDIRECT_DESCRIPTORS,
        MAX_QUEUE_SIZE,
        DescriptorChain,
        QueueError,
        SplitQueue,
    )
    from .rng import MAX_RNG_REQUEST, VirtioRng, VirtioRngState
    from .state import QueueState, VirtioMmioState

_MODULE_OF = {
    "BlockBackend": "blk",
    "DiskImageError": "blk",
    "DiskInUseError": "blk",
    "RawFileBackend": "blk",
    "VirtioBlk": "blk",
    "VirtioBlkState": "blk",
    "VirtioConsole": "console",
    "VirtioConsoleState": "console",
    "DeviceId": "constants",
    "DeviceStatus": "constants",
    "DeviceLink": "device",
    "VirtioDevice": "device",
    "VirtioMmioTransport": "mmio",
    "MAX_FRAME_SIZE": "net",
    "NetBackend": "net",
    "RecordingNetBackend": "net",
    "RxResult": "net",
    "VirtioNet": "net",
    "VirtioNetState": "net",
    "MAX_CHAIN_BYTES": "queue",
    "MAX_INDIRECT_DESCRIPTORS": "queue",
    "MAX_QUEUE_SIZE": "queue",
    "DescriptorChain": "queue",
    "QueueError": "queue",
    "SplitQueue": "queue",
    "MAX_RNG_REQUEST": "rng",
    "VirtioRng": "rng",
    "VirtioRngState": "rng",
    "QueueState": "state",
    "VirtioMmioState": "state",
}
"""Where each exported name lives, imported on its first use."""

__all__ = [
    "MAX_CHAIN_BYTES",
    "MAX_FRAME_SIZE",
    "MAX_INDIRECT_DESCRIPTORS",
    "MAX_QUEUE_SIZE",
    "MAX_RNG_REQUEST",
    "BlockBackend",
    "DescriptorChain",
    "DeviceId",
    "DeviceLink",
    "DeviceStatus",
    "DiskImageError",
    "DiskInUseError",
    "NetBackend",
    "QueueError",
    "QueueState",
    "RawFileBackend",
    "RecordingNetBackend",
    "RxResult",
    "SplitQueue",
    "VirtioBlk",
    "VirtioBlkState",
    "VirtioConsole",
    "VirtioConsoleState",
    "VirtioDevice",
    "VirtioMmioState",
    "VirtioMmioTransport",
    "VirtioNet",
    "VirtioNetState",
    "VirtioRng",
    "VirtioRngState",
]


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value
