"""The one error a snapshot raises: one line saying what is wrong or what differs."""

from __future__ import annotations


class SnapshotError(ValueError):
    """A snapshot that cannot be written or restored here; the message is one line."""
