"""Address ranges an engine keeps for itself: where fault hooks go, which code to re-translate.

``page_windows`` widens device windows to the whole pages unicorn maps. ``hook_gaps`` is the
complement of what an engine maps (RAM with every permission, device windows): unicorn's
unmapped/protection hooks placed only there leave RAM stores on unicorn's fast path.
``CodeRanges`` collects guest physical ranges written behind an engine's back (device DMA, the
VMM) from any thread, for the hart to invalidate on its own thread, page by page (unicorn
invalidates a range through one address translation, so a range must not cross a page it did not
translate).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable

from axaddrspace import PAGE_SIZE

_LAST = (1 << 64) - 1
FLUSH_ALL_PAGES = 1024
"""Past this many dirty pages one full flush is cheaper than page-by-page invalidation."""


def hook_gaps(covered: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ``(begin, end)`` ranges of the 64-bit physical space outside every
    ``(start, size)`` of ``covered`` (which may touch or overlap)."""
    gaps: list[tuple[int, int]] = []
    cursor = 0
    for start, size in sorted((s, n) for s, n in covered if n > 0):
        if start > cursor:
            gaps.append((cursor, start - 1))
        cursor = max(cursor, start + size)
    if cursor <= _LAST:
        gaps.append((cursor, _LAST))
    return gaps


class CodeRanges:
    """Pages written behind an engine's back: added from any thread, taken by the hart's own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pages: set[int] = set()
        self._overflow = False

    def add(self, gpa: int, size: int) -> None:
        if size <= 0:
            return
        first = gpa - gpa % PAGE_SIZE
        with self._lock:
            if self._overflow:
                return
            pages = range(first, gpa + size, PAGE_SIZE)
            if len(pages) + len(self._pages) > FLUSH_ALL_PAGES:
                self._overflow = True
                self._pages.clear()
                return
            self._pages.update(pages)

    def add_many(self, ranges: Iterable[tuple[int, int]]) -> None:
        """``add`` for each ``(gpa, size)``, under one acquisition of the lock (a block request
        names hundreds of pages)."""
        with self._lock:
            if self._overflow:
                return
            pages = self._pages
            for gpa, size in ranges:
                if size <= 0:
                    continue
                span = range(gpa - gpa % PAGE_SIZE, gpa + size, PAGE_SIZE)
                if len(span) + len(pages) > FLUSH_ALL_PAGES:  # as ``add``: never a set of a huge range
                    self._overflow = True
                    pages.clear()
                    return
                if len(span) == 1:
                    pages.add(span[0])
                else:
                    pages.update(span)

    def take(self) -> tuple[list[int], bool]:
        """(the dirty pages' addresses, sorted; whether to flush everything instead), and reset."""
        with self._lock:
            pages, overflow = sorted(self._pages), self._overflow
            self._pages = set()
            self._overflow = False
        return pages, overflow

    def __bool__(self) -> bool:
        return bool(self._pages) or self._overflow


def pages_within(pages: list[int], spans: Iterable[tuple[int, int]]) -> list[int]:
    """The addresses of sorted ``pages`` inside some ``(start, size)`` of ``spans`` (disjoint), in
    order: a bisection per span, not a scan of every span per page (a virtio-blk read dirties
    thousands of pages per second, all checked on the hart's thread)."""
    inside: list[int] = []
    for start, size in sorted(spans):
        inside.extend(pages[bisect_left(pages, start) : bisect_left(pages, start + size)])
    return inside


def page_windows(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Device windows widened to whole pages (unicorn maps pages) and merged where they meet."""
    spans = []
    for start, size in ranges:
        if size <= 0 or start < 0:
            raise ValueError(f"MMIO window ({start:#x}, {size:#x}) is empty or negative")
        first = start - start % PAGE_SIZE
        end = -(-(start + size) // PAGE_SIZE) * PAGE_SIZE
        spans.append((first, end))
    merged: list[tuple[int, int]] = []
    for first, end in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((first, end))
    return [(first, end - first) for first, end in merged]
