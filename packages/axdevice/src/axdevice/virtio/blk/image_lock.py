"""Advisory locks on disk images, as QEMU takes them: one VM writes an image, or many read it.

Two VMs writing one ext4 image corrupt it, so a backend locks its image for as long as it is
open: a write lock (exclusive) for a read-write disk, a read lock (shared) for a read-only one.
Read-only users coexist; a read-write user conflicts with every other user.

The locks are open file description (OFD) locks, fcntl(F_OFD_SETLK) on Linux 3.15+, over the
whole file. They belong to the open file description, not to the process, which is what two
VMs in one VMM need: a second open of the image in the same process conflicts like one in
another process, and closing some other descriptor of the same file (a POSIX lock would then
be dropped) keeps the lock. Closing the backend's descriptor releases it. Where fcntl has no
OFD commands (not Linux), flock(2), whose locks also belong to the open file description, is
used instead. A filesystem that cannot lock at all (ENOLCK, EINVAL, EOPNOTSUPP) is logged and
left unlocked, as QEMU warns and goes on.

``struct flock`` is built with native alignment: short l_type, short l_whence, off_t l_start,
off_t l_len, pid_t l_pid, padded to off_t's alignment (Python's fcntl uses the large-file
interface, so off_t is 64-bit). The test suite compiles the same struct from <fcntl.h> and
compares bytes and command numbers.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import sys

logger = logging.getLogger(__name__)

# <bits/fcntl-linux.h>: the OFD commands, when the fcntl module does not export them.
F_OFD_GETLK: int = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK: int = getattr(fcntl, "F_OFD_SETLK", 37)
F_RDLCK: int = fcntl.F_RDLCK
F_WRLCK: int = fcntl.F_WRLCK
F_UNLCK: int = fcntl.F_UNLCK

# struct flock: l_type, l_whence, l_start, l_len, l_pid; "0q" pads the end to off_t's alignment.
FLOCK = struct.Struct("@hhqqi0q")

_HAVE_OFD = sys.platform.startswith("linux")
_CONFLICT = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
_UNSUPPORTED = (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS)


class ImageLockedError(OSError):
    """Another open file description holds a conflicting lock on the image."""

    def __init__(self, holder: str) -> None:
        super().__init__(errno.EAGAIN, f"locked by another user who opened it {holder}")
        self.holder = holder


def flock_bytes(lock_type: int) -> bytes:
    """A ``struct flock`` over the whole file (start 0, length 0 = to the end, l_pid 0 for OFD)."""
    return FLOCK.pack(lock_type, os.SEEK_SET, 0, 0, 0)


def lock_image(fd: int, exclusive: bool, name: str) -> bool:
    """Lock ``fd``'s image for this descriptor's lifetime; False where the filesystem cannot lock.

    ImageLockedError when another user holds a conflicting lock (its ``holder`` says whether
    that user reads or writes the image, where the host can tell).
    """
    try:
        if _HAVE_OFD:
            fcntl.fcntl(fd, F_OFD_SETLK, flock_bytes(F_WRLCK if exclusive else F_RDLCK))
        else:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in _CONFLICT:
            raise ImageLockedError(_holder(fd, exclusive)) from None
        if error.errno in _UNSUPPORTED:
            logger.warning("cannot lock disk image %s (%s): another VM could open it too", name, error.strerror)
            return False
        raise
    return True


def _holder(fd: int, exclusive: bool) -> str:
    """How the conflicting user opened the image: F_OFD_GETLK reports the lock in the way."""
    if not _HAVE_OFD:
        return "read-write" if not exclusive else "read-only or read-write"
    try:
        answer = fcntl.fcntl(fd, F_OFD_GETLK, flock_bytes(F_WRLCK if exclusive else F_RDLCK))
    except OSError:
        return "read-only or read-write"
    lock_type = FLOCK.unpack(answer)[0]
    if lock_type == F_WRLCK:
        return "read-write"
    if lock_type == F_RDLCK:
        return "read-only"
    return "read-only or read-write"  # released in between: say what could have conflicted
