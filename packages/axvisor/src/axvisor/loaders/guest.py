"""Loading a guest: every image the config names, planned and checked, then copied into RAM."""

from __future__ import annotations

import weakref

from axaddrspace import GuestMemory
from axvm import Arch, AxVMCrateConfig
from axvm.machine import BootPlan

from ..errors import UserError
from .images import image_problems, missing_images, read_image
from .plan import ImagePlan

IMAGE_NAMES = {"bios": "the firmware (bios)", "dtb": "the device tree (dtb)", "ramdisk": "the ramdisk"}

_kept: weakref.WeakKeyDictionary[AxVMCrateConfig, tuple[bool, ImagePlan]] = weakref.WeakKeyDictionary()
"""Plans run made while checking, each used once by the load that follows (a bzImage is then
decompressed once, not twice); a reset's rebuild plans afresh, as a power cycle reads the files."""


def plan_guest(
    config: AxVMCrateConfig, host_decompress: bool = True, missing_ok: bool = False, keep: bool = False
) -> ImagePlan:
    """Read and place every image the config names, and check where they land (fit in RAM, no
    overlaps, what the boot protocol allows); UserError, one line per problem.

    ``missing_ok`` leaves out images that do not exist yet (``axvisor check`` before the images
    are fetched) instead of failing on them. ``keep`` hands the plan to the next ``load_guest``
    of this config.
    """
    problems = image_problems(config)
    missing = missing_images(config)
    if missing and not missing_ok:
        problems = [*missing, *problems]
    if problems:
        raise UserError("\n".join(problems))
    plan = ImagePlan(config)
    kernel = config.kernel
    if kernel.kernel_path.exists():
        plan.boot = _plan_kernel(
            config, plan, read_image(config, "kernel.kernel_path", kernel.kernel_path), host_decompress
        )
    for name, what in IMAGE_NAMES.items():
        path, addr = getattr(kernel, f"{name}_path"), getattr(kernel, f"{name}_load_addr")
        if path is not None and addr is not None and path.exists():
            plan.add_file(what, addr, path, f"kernel.{name}_path", f"kernel.{name}_load_addr")
    plan.check()
    if keep:
        _kept[config] = (host_decompress, plan)
    return plan


def _plan_kernel(config: AxVMCrateConfig, plan: ImagePlan, kernel: bytes, host_decompress: bool) -> BootPlan:
    if config.base.arch is Arch.X86_64:
        from .x86 import plan_x86_kernel  # with bzImage's decompressors: only x86 guests need them

        return plan_x86_kernel(config, plan, kernel, host_decompress)
    plan.add("the kernel", config.kernel.kernel_load_addr, kernel, "kernel.kernel_path", "kernel.kernel_load_addr")
    cmdline = config.kernel.cmdline_bytes
    if config.kernel.bios_load_addr is not None and config.kernel.bios_path is not None:
        return BootPlan(config.kernel.bios_load_addr, "firmware", cmdline=cmdline)  # firmware runs first
    return BootPlan(config.kernel.entry_point, "raw", cmdline=cmdline)


def load_guest(config: AxVMCrateConfig, memory: GuestMemory, host_decompress: bool = True) -> BootPlan:
    """Load every image the config names into ``memory``; return how to enter the kernel (or firmware)."""
    kept = _kept.pop(config, None)
    plan = kept[1] if kept is not None and kept[0] == host_decompress else plan_guest(config, host_decompress)
    return plan.apply(memory)
