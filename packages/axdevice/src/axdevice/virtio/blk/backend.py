"""What virtio-blk needs from the storage behind it: the ``BlockBackend`` protocol.

The device is sans-IO; a backend does the I/O, straight into guest memory: ``readv`` fills
and ``writev`` drains a list of memoryviews over the guest's buffers (os.preadv / os.pwritev
in ``RawFileBackend``). Offsets and lengths reaching a backend were already checked against
``size_bytes`` by the device. A backend reports trouble by raising (OSError or anything
else); the device answers the request with VIRTIO_BLK_S_IOERR and carries on.

Two operations are optional. A backend that has a callable ``discard(offset, length)`` and
does not set ``supports_discard = False`` gets VIRTIO_BLK_F_DISCARD offered; likewise
``write_zeroes(offset, length, unmap)`` and ``supports_write_zeroes`` for
VIRTIO_BLK_F_WRITE_ZEROES. Read-only backends get neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class BlockBackend(Protocol):
    """A disk image or device the guest sees as a virtio block device."""

    @property
    def size_bytes(self) -> int:
        """The disk's size; the guest sees ``size_bytes // 512`` sectors."""

    @property
    def read_only(self) -> bool:
        """Whether writes are refused (VIRTIO_BLK_F_RO is offered)."""

    @property
    def serial(self) -> str:
        """The ID string GET_ID returns (its first 20 bytes, UTF-8, NUL padded)."""

    def readv(self, offset: int, views: Sequence[memoryview]) -> int:
        """Fill ``views`` in order from byte ``offset``; the number of bytes read."""

    def writev(self, offset: int, views: Sequence[memoryview]) -> int:
        """Write ``views`` in order at byte ``offset``; the number of bytes written."""

    def flush(self) -> None:
        """Make every completed write durable (VIRTIO_BLK_T_FLUSH)."""


def supports_discard(backend: BlockBackend) -> bool:
    """Whether ``backend`` has a usable optional ``discard``."""
    return (
        not backend.read_only
        and callable(getattr(backend, "discard", None))
        and bool(getattr(backend, "supports_discard", True))
    )


def supports_write_zeroes(backend: BlockBackend) -> bool:
    """Whether ``backend`` has a usable optional ``write_zeroes``."""
    return (
        not backend.read_only
        and callable(getattr(backend, "write_zeroes", None))
        and bool(getattr(backend, "supports_write_zeroes", True))
    )
