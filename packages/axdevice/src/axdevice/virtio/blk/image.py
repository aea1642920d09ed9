"""Opening a disk image for a VM: what may be a disk, and who else may use it at the same time.

A disk is a regular file or a block device of at least one 512-byte sector. Anything else is
refused before the guest sees it, with one sentence saying what the path is and what is
expected: a directory, a FIFO (opening one would block the VMM until a writer appears), a
character device or a socket (no size, no random access), or an empty file (a disk of zero
sectors, which Linux attaches and then cannot use). The type is checked with stat before the
open, so a FIFO or a terminal is never opened, and again with fstat on the descriptor, so a
path swapped in between is caught too.

The image is then locked (``image_lock``): exclusively when read-write, shared when read-only.
"""

from __future__ import annotations

import fcntl
import os
import stat

from .image_lock import ImageLockedError, lock_image
from .request import SECTOR_SIZE  # the smallest disk is one sector

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISSOCK, "a socket"),
)
EXPECTED = "expected a raw disk image file or a block device"


class DiskImageError(ValueError):
    """The path cannot be this VM's disk; ``str()`` is one sentence naming it and what is expected."""


class DiskInUseError(DiskImageError):
    """Another VM (in this process or another) holds a conflicting lock on the image."""


def _check_kind(path: str, mode: int) -> None:
    for test, what in _KINDS:
        if test(mode):
            raise DiskImageError(f"{path} is {what}; {EXPECTED}")
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise DiskImageError(f"{path} is not a regular file; {EXPECTED}")


def open_image(path: str | os.PathLike[str], read_only: bool, lock: bool = True) -> tuple[int, int]:
    """Open and lock a disk image; (descriptor, size in bytes).

    DiskImageError (DiskInUseError when another VM holds it) for a path that cannot be this
    disk; OSError for the host's own refusals (missing file, permissions).
    """
    name = os.fspath(path)
    _check_kind(name, os.stat(name).st_mode)
    flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    fd = os.open(name, flags)
    try:
        _check_kind(name, os.fstat(fd).st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        size = os.lseek(fd, 0, os.SEEK_END)  # works for block devices too
        if size < SECTOR_SIZE:
            what = "empty (0 bytes)" if size == 0 else f"{size} bytes, less than one {SECTOR_SIZE}-byte sector"
            raise DiskImageError(
                f"{name} is {what}; {EXPECTED} of at least one sector "
                f"(e.g. make one with: truncate -s 64M {name} && mkfs.ext4 {name})"
            )
        if lock:
            try:
                lock_image(fd, exclusive=not read_only, name=name)
            except ImageLockedError as error:
                raise DiskInUseError(
                    f"disk image {name} is in use by another VM (opened {error.holder} there); "
                    f"{'a read-write disk needs the image to itself: ' if not read_only else ''}"
                    "stop that VM, or give this one its own copy of the image"
                ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd, size
