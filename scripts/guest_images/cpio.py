"""Writing cpio archives in the "newc" format, as the Linux initramfs unpacker reads them.

Theory of operation (Documentation/driver-api/early-userspace/buffer-format.rst): an archive is a
sequence of entries, each a 110-byte ASCII header ("070701" and thirteen 8-digit hex fields: inode,
mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check),
the NUL-terminated name padded with zeros to a multiple of 4 bytes (counting the header), and the
data padded likewise; an entry named TRAILER!!! ends it. A symlink's data is its target. Writing
the headers ourselves means owners (always 0), modes and device nodes need no root, and fixed
mtimes, inode numbers and entry order make an archive byte-for-byte reproducible.
"""

from __future__ import annotations

import io
import stat
from collections.abc import Iterable
from dataclasses import dataclass

CPIO_MAGIC = b"070701"
CPIO_TRAILER = "TRAILER!!!"


class PathError(ValueError):
    """A path that cannot be placed in the archive."""


CPIO_MAGIC = b"070701"
CPIO_TRAILER = "TRAILER!!!"


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


@dataclass(frozen=True)
class CpioEntry:
    """One archive member: name without a leading slash, mode with its file-type bits."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node


def cpio_header(entry: CpioEntry, ino: int, mtime: int) -> bytes:
    name = entry.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, mtime, len(entry.data), 0, 0, *entry.rdev, len(name), 0)
    header = CPIO_MAGIC + b"".join(b"%08X" % value for value in fields)
    return header + name + _pad4(len(header) + len(name))


def write_cpio(entries: Iterable[CpioEntry], out: io.RawIOBase | io.BufferedIOBase, mtime: int = 0) -> None:
    """Write entries in the order given (parents first), inode numbers counting from 1, then the trailer."""
    ino = 0
    for ino, entry in enumerate(entries, start=1):
        if entry.data and not (stat.S_ISREG(entry.mode) or stat.S_ISLNK(entry.mode)):
            raise ValueError(f"{entry.name}: only files and symlinks carry data")
        out.write(cpio_header(entry, ino, mtime))
        out.write(entry.data + _pad4(len(entry.data)))
    out.write(cpio_header(CpioEntry(CPIO_TRAILER, 0), 0, 0))


class Tree:
    """An archive's members by path; parent directories are added as needed, output sorted."""

    def __init__(self) -> None:
        self.entries: dict[str, CpioEntry] = {}

    def _add(self, path: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name = path.strip("/")
        if not name or any(part in ("", ".", "..") for part in name.split("/")):
            raise PathError(f"{path!r} is not a valid path inside the archive")
        parent = name.rpartition("/")[0]
        if parent and parent not in self.entries:
            self.directory(parent)
        elif parent and not stat.S_ISDIR(self.entries[parent].mode):
            raise PathError(f"{path}: {parent} is not a directory in the archive")
        self.entries[name] = CpioEntry(name, mode, data, rdev)

    def directory(self, path: str, mode: int = 0o755) -> None:
        self._add(path, stat.S_IFDIR | mode)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._add(path, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def write(self, out: io.RawIOBase | io.BufferedIOBase, mtime: int = 0) -> None:
        # Sorted names put each directory before what it holds: a parent is a prefix of its children.
        write_cpio((self.entries[name] for name in sorted(self.entries)), out, mtime)
