"""virtio-net: the device, its frame handling, saved state and the backend protocol."""

from .backend import NetBackend, RecordingNetBackend, RxResult
from .device import VirtioNet
from .request import MAX_FRAME_SIZE
from .state import VirtioNetState

__all__ = ["MAX_FRAME_SIZE", "NetBackend", "RecordingNetBackend", "RxResult", "VirtioNet", "VirtioNetState"]
