"""virtio 1.2 over virtio-mmio (version 2) with split virtqueues, and four devices."""

from .blk import BlockBackend, DiskImageError, DiskInUseError, RawFileBackend, VirtioBlk, VirtioBlkState
from .console import VirtioConsole, VirtioConsoleState
from .constants import DeviceId, DeviceStatus
from .device import DeviceLink, VirtioDevice
from .mmio import VirtioMmioTransport
from .net import MAX_FRAME_SIZE, NetBackend, RecordingNetBackend, RxResult, VirtioNet, VirtioNetState
from .queue import MAX_CHAIN_BYTES, MAX_INDIRECT_DESCRIPTORS, MAX_QUEUE_SIZE, DescriptorChain, QueueError, SplitQueue
from .rng import MAX_RNG_REQUEST, VirtioRng, VirtioRngState
from .state import QueueState, VirtioMmioState

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
