"""Errors every backend raises alike, so callers catch one type whatever runs the guest."""

from __future__ import annotations


class PendingReadError(RuntimeError):
    """A read exit and its answer out of order: run() while a read still waits for
    ``complete_read()``, or ``complete_read()`` with no read waiting.

    ``VCpu`` checks this for every backend; a backend that also checks (it needs the pending
    read to answer it) raises this same type.
    """
