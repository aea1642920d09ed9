"""Image loaders: put the config's images into guest memory and say how to enter them."""

from __future__ import annotations

from axaddrspace import GuestMemory
from axvm import Arch, AxVMCrateConfig
from axvm.machine import BootPlan

from ..errors import UserError
from .images import image_list, missing_images, write_image
from .x86 import load_x86_kernel


def load_guest(config: AxVMCrateConfig, memory: GuestMemory, host_decompress: bool = True) -> BootPlan:
    """Load every image the config names; return how to enter the kernel (or firmware)."""
    problems = missing_images(config)
    if problems:
        raise UserError(problems[0])
    for key, path, gpa in image_list(config)[1:]:
        write_image(config, memory, key, gpa, path.read_bytes())
    kernel = config.kernel.kernel_path.read_bytes()
    if config.base.arch is Arch.X86_64:
        return load_x86_kernel(config, memory, kernel, host_decompress)
    write_image(config, memory, "kernel.kernel_path", config.kernel.kernel_load_addr, kernel)
    cmdline = (config.kernel.cmdline or "").encode()
    if config.kernel.bios_load_addr is not None and config.kernel.bios_path is not None:
        return BootPlan(config.kernel.bios_load_addr, "firmware", cmdline=cmdline)  # firmware runs first
    return BootPlan(config.kernel.entry_point, "raw", cmdline=cmdline)


__all__ = ["image_list", "load_guest", "missing_images", "write_image"]
