"""The config's image files: which exist and can be read, and copying bytes into guest memory
with errors that name the config key."""

from __future__ import annotations

import os
import stat
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


_NOT_FILES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def missing_images(config: AxVMCrateConfig) -> list[str]:
    """One line per image file the config names that does not exist (not yet fetched or built)."""
    return [f"{config.origin}: {key}: {path} does not exist; expected an image file (fetch or build it, "
            "or fix the path)" for key, path, _ in image_list(config) if not os.path.lexists(path)]


def image_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an image (one sentence), or None. Missing files are missing_images'."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None if not os.path.lexists(path) else f"{path} is a dangling symbolic link; expected an image file"
    except OSError as error:
        return f"{path}: {error.strerror}; expected a readable image file"
    for test, what in _NOT_FILES:
        if test(mode):
            return f"{path} is {what}; expected a regular image file"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file; expected an image file"
    if not os.access(path, os.R_OK):
        return (f"{path} is not readable by this user (permission denied); expected a readable image file "
                "(check its mode and owner)")
    return None


def image_problems(config: AxVMCrateConfig) -> list[str]:
    """One line per image path that exists but cannot be loaded (a directory, a FIFO, unreadable)."""
    return [f"{config.origin}: {key}: {problem}" for key, path, _ in image_list(config)
            if (problem := image_file_problem(path)) is not None]


def read_image(config: AxVMCrateConfig, key: str, path: Path) -> bytes:
    """The file's bytes; a file that cannot be read is a UserError naming ``key``, not a traceback."""
    problem = image_file_problem(path)
    if problem is None and not path.exists():
        problem = f"{path} does not exist; expected an image file (fetch or build it, or fix the path)"
    if problem is not None:
        raise UserError(f"{config.origin}: {key}: {problem}")
    try:
        with path.open("rb") as file:
            return file.read()
    except OSError as error:
        raise UserError(f"{config.origin}: {key}: cannot read {path}: {error.strerror}; expected a readable "
                        "image file") from None


def write_image(config: AxVMCrateConfig, memory: GuestMemory, key: str, gpa: int, data: bytes) -> None:
    """Copy ``data`` to ``gpa``; an image that does not fit in RAM is a UserError naming ``key``."""
    try:
        memory.write(GuestPhysAddr(gpa), data)
    except (GuestMemoryError, ValueError) as error:
        name = getattr(config.kernel, key.split(".")[1]).name
        raise UserError(f"{config.origin}: {key}: {name} ({len(data):#x} bytes at {gpa:#x}) does not fit in "
                        f"guest RAM ({error}); expected a larger memory region or another load address") from None
