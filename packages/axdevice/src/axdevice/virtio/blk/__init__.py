"""virtio-blk: the device, its request handling, saved state, backend protocol and raw-file backend
(with the image checks and locks it opens images under).

Each name is imported on first use (PEP 562): the host's disk protocol (``BlockBackend``) loads
without the device.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backend import BlockBackend
    from .device import VirtioBlk
    from .file_backend import RawFileBackend
    from .host_error import HostError
    from .image import DiskImageError, DiskInUseError
    from .request import MAX_DWZ_SECTORS, MAX_DWZ_SEGMENTS, SECTOR_SIZE
    from .state import VirtioBlkState

_MODULE_OF = {
    "BlockBackend": "backend",
    "VirtioBlk": "device",
    "RawFileBackend": "file_backend",
    "HostError": "host_error",
    "DiskImageError": "image",
    "DiskInUseError": "image",
    "MAX_DWZ_SECTORS": "request",
    "MAX_DWZ_SEGMENTS": "request",
    "SECTOR_SIZE": "request",
    "VirtioBlkState": "state",
}
"""Where each exported name lives, imported on its first use."""

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


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value
