"""A raw disk image (or host block device) as a ``BlockBackend``: the injected I/O of virtio-blk.

This is the one virtio module that touches the host: reads and writes go straight between the
file and guest memory with os.preadv / os.pwritev (no copy through Python buffers), FLUSH is
an fsync. The image is opened, checked and locked by ``image.open_image`` (one read-write user
or many read-only ones) and stays locked until ``close``.

Discard. Python's os module has no fallocate(2) (only posix_fallocate, which allocates), so on
Linux this calls glibc's ``fallocate64`` (or ``fallocate``) through ctypes with
FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: the range reads back as zeros and its blocks go
back to the host filesystem. Discard is a hint: a driver that needs zeros afterwards asks for
WRITE_ZEROES, so where the filesystem refuses to punch (EOPNOTSUPP) discarding becomes a no-op
for the rest of the backend's life and the guest is told OK; other errors are reported. Write-zeroes punches
a hole when the driver allows unmapping and punching works, and otherwise writes zeros in
chunks. Off Linux, neither discard nor write-zeroes is offered through punching: discard is
not offered, write-zeroes writes zeros.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import weakref
from collections.abc import Callable, Sequence

from .image import open_image

FALLOC_FL_KEEP_SIZE = 0x01  # <linux/falloc.h>
FALLOC_FL_PUNCH_HOLE = 0x02

_ZERO_CHUNK = 1 << 20  # write-zeroes without punching writes this much per call


def _iov_max() -> int:
    try:
        value = os.sysconf("SC_IOV_MAX")
    except (ValueError, OSError):
        value = -1
    return value if value > 0 else 1024  # Linux's UIO_MAXIOV


_IOV_MAX = _iov_max()


def _load_fallocate() -> Callable[[int, int, int, int], int] | None:
    """glibc's fallocate with a 64-bit off_t, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    func = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if func is None:
        return None
    # int fallocate64(int fd, int mode, off64_t offset, off64_t len)
    func.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


_fallocate_func: list[Callable[[int, int, int, int], int] | None] = []  # loaded on first use


def _get_fallocate() -> Callable[[int, int, int, int], int] | None:
    if not _fallocate_func:
        _fallocate_func.append(_load_fallocate())
    return _fallocate_func[0]


def _advance(views: list[memoryview], count: int) -> list[memoryview]:
    """``views`` without their first ``count`` bytes (after a short read or write)."""
    out: list[memoryview] = []
    for view in views:
        if count >= view.nbytes:
            count -= view.nbytes
            continue
        out.append(view[count:] if count else view)
        count = 0
    return out


class RawFileBackend:
    """A raw image file or block device opened by path; the backend owns the descriptor."""

    def __init__(
        self, path: str | os.PathLike[str], read_only: bool = False, serial: str | None = None, lock: bool = True
    ) -> None:
        """Open ``path``; DiskImageError if it cannot be a disk or another VM holds it (see ``image``).

        ``lock=False`` skips the image lock (QEMU's ``file.locking=off``): only for images that
        nothing else can open.
        """
        self._fd, self._size = open_image(path, read_only, lock)
        # A backend dropped without close() still releases its descriptor, and with it the lock.
        self._closer = weakref.finalize(self, os.close, self._fd)
        self._name = os.fspath(path)
        self._read_only = read_only
        self._serial = serial if serial is not None else os.path.basename(os.fspath(path))
        self._punch = not read_only and _get_fallocate() is not None
        self.supports_discard = self._punch
        self.supports_write_zeroes = not read_only

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def serial(self) -> str:
        return self._serial

    @property
    def name(self) -> str:
        """The image's path, for the host's log."""
        return self._name

    def fileno(self) -> int:
        return self._fd

    def readv(self, offset: int, views: Sequence[memoryview]) -> int:
        return self._transfer(os.preadv, offset, views)

    def writev(self, offset: int, views: Sequence[memoryview]) -> int:
        if self._read_only:
            raise OSError(errno.EROFS, "read-only block backend")
        return self._transfer(os.pwritev, offset, views)

    def _transfer(
        self, call: Callable[[int, list[memoryview], int], int], offset: int, views: Sequence[memoryview]
    ) -> int:
        """Repeat ``call`` (preadv or pwritev) until every view is done or the file ends."""
        pending = [view for view in views if view.nbytes]
        done = 0
        while pending:
            batch = pending[:_IOV_MAX]
            n = call(self._fd, batch, offset + done)
            if n <= 0:
                break  # end of file: the caller sees a short count
            done += n
            pending = _advance(batch, n) + pending[_IOV_MAX:]
        return done

    def flush(self) -> None:
        os.fsync(self._fd)

    def discard(self, offset: int, length: int) -> None:
        """Give ``[offset, offset + length)`` back to the host; a no-op where that is refused."""
        if not self._punch or length <= 0:
            return
        try:
            self._fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            self._punch = False  # this filesystem cannot; discard is advisory

    def write_zeroes(self, offset: int, length: int, unmap: bool = False) -> None:
        """Make ``[offset, offset + length)`` read as zeros, by a hole if ``unmap`` allows it."""
        if self._read_only:
            raise OSError(errno.EROFS, "read-only block backend")
        if unmap and self._punch:
            try:
                self._fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
                return
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                self._punch = False
        zeros = bytes(min(_ZERO_CHUNK, length))
        done = 0
        while done < length:
            n = os.pwrite(self._fd, memoryview(zeros)[: min(_ZERO_CHUNK, length - done)], offset + done)
            if n <= 0:
                raise OSError(errno.EIO, "short write while writing zeros")
            done += n

    def _fallocate(self, mode: int, offset: int, length: int) -> None:
        func = _get_fallocate()
        if func is None:
            raise OSError(errno.EOPNOTSUPP, "fallocate is not available on this host")
        if func(self._fd, mode, offset, length) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"fallocate: {os.strerror(code)}")

    def close(self) -> None:
        """Close the image, which releases its lock; closing twice is harmless."""
        if self._fd >= 0:
            self._closer()
            self._fd = -1

    def __enter__(self) -> RawFileBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
