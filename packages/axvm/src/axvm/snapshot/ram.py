"""Guest RAM in a snapshot: one sparse file per region, and mapping it back copy-on-write.

A region is written page by page, skipping pages that are all zeros with a seek, so the file
takes disk space only for the RAM the guest touched (holes read back as zeros). Restoring maps
the file MAP_PRIVATE (``GuestMemoryRegion.from_file(shared=False)``): nothing is read until the
guest touches a page, a guest write copies just that page, and the file is never changed, so
any number of VMs (clones) can run from one snapshot at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from axaddrspace import AddrSpace, GuestMemoryRegion, MappingFlags

PAGE = 4096
CHUNK = 2 << 20
"""Zero test granularity first (one comparison per 2 MiB of untouched RAM), then per page."""
_ZERO_CHUNK = bytes(CHUNK)
_ZERO_PAGE = bytes(PAGE)


def write_sparse(region: GuestMemoryRegion, path: Path) -> int:
    """Write ``region`` to ``path`` (created, never there before) with holes for zero pages;
    returns the bytes written (the pages that were not zero)."""
    view = region.view
    size = region.size
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        for base in range(0, size, CHUNK):
            chunk = bytes(view[base : base + CHUNK])
            if chunk == _ZERO_CHUNK[: len(chunk)]:
                continue
            run_start = None
            for offset in range(0, len(chunk) + PAGE, PAGE):
                page_is_data = offset < len(chunk) and chunk[offset : offset + PAGE] != _ZERO_PAGE
                if page_is_data and run_start is None:
                    run_start = offset
                elif not page_is_data and run_start is not None:
                    written += os.pwrite(fd, chunk[run_start:offset], base + run_start)
                    run_start = None
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


def map_from_file(addrspace: AddrSpace, gpa: int, size: int, flags: MappingFlags, path: Path) -> GuestMemoryRegion:
    """Map ``path`` privately (copy-on-write) as the RAM region at ``gpa``."""
    region = GuestMemoryRegion.from_file(gpa, path, size, writable=True, shared=False)
    try:
        addrspace.map_linear(gpa, size, region, flags)
    except BaseException:
        region.close()
        raise
    return region
