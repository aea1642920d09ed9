"""virtio-blk: the device, its request handling, saved state, backend protocol and raw-file backend."""

from .backend import BlockBackend
from .device import VirtioBlk
from .file_backend import RawFileBackend
from .request import MAX_DWZ_SECTORS, MAX_DWZ_SEGMENTS, SECTOR_SIZE
from .state import VirtioBlkState

__all__ = [
    "MAX_DWZ_SECTORS",
    "MAX_DWZ_SEGMENTS",
    "SECTOR_SIZE",
    "BlockBackend",
    "RawFileBackend",
    "VirtioBlk",
    "VirtioBlkState",
]
