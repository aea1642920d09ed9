"""Image loaders: put the config's images into guest memory and say how to enter them."""

from typing import TYPE_CHECKING

from .guest import load_guest, plan_guest
from .images import image_list, image_problems, missing_images, write_image
from .plan import ImagePlan

if TYPE_CHECKING:
    from .x86 import load_x86_kernel

__all__ = ["ImagePlan", "image_list", "image_problems", "load_guest", "load_x86_kernel", "missing_images",
           "plan_guest", "write_image"]


def __getattr__(name: str) -> object:
    """``load_x86_kernel`` on first use: its module imports the x86 machine and bzImage's
    decompressors (bz2, lzma, zstandard), which a riscv VM never needs."""
    if name == "load_x86_kernel":
        from .x86 import load_x86_kernel

        return load_x86_kernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
