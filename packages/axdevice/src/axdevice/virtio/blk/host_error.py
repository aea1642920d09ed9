"""Host-side failures of a disk: the guest gets IOERR, the host gets a log line and a count.

A guest that asks for sectors outside the disk gets IOERR too, but that is the guest's own
mistake; this module is about the host failing a valid request: EIO from a failing device,
ENOSPC from a full filesystem under a sparse image, a read that ends early because the image
was truncated below the size the guest was given. Each kind (the errno name, ``short-read`` /
``short-write`` for a transfer that stopped early, else the exception's class name) is counted
per disk, and the first of each kind is logged, so a failing disk neither goes unnoticed nor
floods the log at one line per request.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostError:
    """One request the host failed: which operation, where, and the exception (None: short)."""

    operation: str  # "read", "write", "flush", "discard" or "write-zeroes"
    offset: int
    length: int
    error: BaseException | None = None
    done: int = 0  # bytes moved before a short transfer stopped

    @property
    def kind(self) -> str:
        if self.error is None:
            return f"short-{self.operation}"
        code = getattr(self.error, "errno", None)
        if isinstance(code, int) and code in errno.errorcode:
            return errno.errorcode[code]
        return type(self.error).__name__

    def describe(self) -> str:
        where = f"{self.operation} of {self.length} bytes at byte {self.offset}"
        if self.error is None:
            return (
                f"{where} moved only {self.done} bytes: the image ends early "
                "(was it truncated or shrunk while the VM runs?)"
            )
        return f"{where} failed: {self.kind} ({self.error})"


class HostErrorLog:
    """Counts per kind for one disk (``counts``); logs the first failure of each kind."""

    def __init__(self, disk_name: str, counts: dict[str, int] | None = None) -> None:
        self.disk_name = disk_name
        self.counts: dict[str, int] = dict(counts or {})

    def __call__(self, failure: HostError) -> None:
        kind = failure.kind
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.counts[kind] == 1:
            logger.warning(
                "virtio-blk disk %s: host I/O error: %s; the guest gets IOERR "
                "(further %s errors on this disk are only counted)",
                self.disk_name,
                failure.describe(),
                kind,
            )
