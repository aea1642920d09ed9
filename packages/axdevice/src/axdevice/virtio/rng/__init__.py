"""virtio-rng: the device, its request handling and saved state."""

from .device import VirtioRng
from .request import MAX_RNG_REQUEST
from .state import VirtioRngState

__all__ = ["MAX_RNG_REQUEST", "VirtioRng", "VirtioRngState"]
