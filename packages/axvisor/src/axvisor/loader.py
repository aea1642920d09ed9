"""Putting the config's images into guest memory before the first instruction runs.

Raw images are copied byte for byte to their load addresses (kernel, BIOS, DTB, ramdisk), as
AxVisor does. Architecture-specific formats (ELF, bzImage, device trees built from the VM)
plug in beside this with the backends that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from axaddrspace import GuestMemory, GuestMemoryError, GuestPhysAddr
from axvm import AxVMCrateConfig

from .errors import UserError


@dataclass(frozen=True)
class LoadedImage:
    key: str
    path: Path
    gpa: int
    size: int


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
    source = config.source or "<config>"
    return [f"{source}: {key}: {path} does not exist; expected an image file (fetch or build it, "
            "or fix the path)" for key, path, _ in image_list(config) if not path.is_file()]


def load_raw_images(config: AxVMCrateConfig, memory: GuestMemory) -> list[LoadedImage]:
    """Copy every image into guest RAM; a missing file or one that does not fit is a UserError."""
    problems = missing_images(config)
    if problems:
        raise UserError(problems[0])
    loaded = []
    for key, path, gpa in image_list(config):
        data = path.read_bytes()
        try:
            memory.write(GuestPhysAddr(gpa), data)
        except GuestMemoryError as error:
            raise UserError(f"{config.source}: {key}: {path.name} ({len(data):#x} bytes at {gpa:#x}) does not "
                            f"fit in guest RAM ({error}); expected a larger memory region or another "
                            "load address") from None
        loaded.append(LoadedImage(key, path, gpa, len(data)))
    return loaded
