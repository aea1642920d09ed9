"""virtio-console: the device, its data movement and saved state."""

from .device import VirtioConsole
from .request import MAX_SINK_WRITE
from .state import VirtioConsoleState

__all__ = ["MAX_SINK_WRITE", "VirtioConsole", "VirtioConsoleState"]
