"""virtio-blk: the device, its request handling, saved state, backend protocol and raw-file backend
(with the image checks and locks it opens images under)."""

from .backend import BlockBackend
from .device import VirtioBlk
from .file_backend import RawFileBackend
from .host_error import HostError
from .image import DiskImageError, DiskInUseError
from .request import MAX_DWZ_SECTORS, MAX_DWZ_SEGMENTS, SECTOR_SIZE
from .state import VirtioBlkState

__all__ = [
    "MAX_DWZ_SECTORS",
    "MAX_DWZ_SEGMENTS",
    "SECTOR_SIZE",
    "BlockBackend",
    "DiskImageError",
    "DiskInUseError",
    "HostError",
    "RawFileBackend",
    "VirtioBlk",
    "VirtioBlkState",
]
