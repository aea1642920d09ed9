"""The config's image files: which exist, and copying bytes into guest memory with errors that
name the config key."""

from __future__ import annotations

from pathlib import Path

from axaddrspace import GuestMemory, GuestMemoryError, GuestPhysAddr
from axvm import AxVMCrateConfig

from ..errors import UserError


def image_list(config: AxVMCrateConfig) -> list[tuple[str, Path, int]]:
    """(config key, file, load address) for every image the config names."""
    kernel = config.kernel
    images = [("kernel.kernel_path", kernel.kernel_path, kernel.kernel_load_addr)]
    for name in ("bios", "dtb", "ramdisk"):
        path, addr = getattr(kernel, f"{name}_path"), getattr(kernel, f"{name}_load_addr")
        if path is not None and addr is not None:
            images.append((f"kernel.{name}_path", path, addr))
    return images


def missing_images(config: AxVMCrateConfig) -> list[str]:
    """One line per image file the config names that does not exist."""
    return [f"{config.origin}: {key}: {path} does not exist; expected an image file (fetch or build it, "
            "or fix the path)" for key, path, _ in image_list(config) if not path.is_file()]


def write_image(config: AxVMCrateConfig, memory: GuestMemory, key: str, gpa: int, data: bytes) -> None:
    """Copy ``data`` to ``gpa``; an image that does not fit in RAM is a UserError naming ``key``."""
    try:
        memory.write(GuestPhysAddr(gpa), data)
    except (GuestMemoryError, ValueError) as error:
        name = getattr(config.kernel, key.split(".")[1]).name
        raise UserError(f"{config.origin}: {key}: {name} ({len(data):#x} bytes at {gpa:#x}) does not fit in "
                        f"guest RAM ({error}); expected a larger memory region or another load address") from None
