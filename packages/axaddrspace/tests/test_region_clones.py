"""RAM regions mapped privately from one file, as VM clones restored from one snapshot use them:
each region's writes stay its own, the file is never written, a hole reads as zeros, and a page
is brought in only when it is touched (nothing is read ahead of the guest)."""

from __future__ import annotations

import os
from pathlib import Path

from axaddrspace import GuestMemoryRegion

PAGE = 4096
SIZE = 16 << 20


def _sparse_snapshot(path: Path) -> None:
    with path.open("wb") as out:
        out.seek(PAGE)
        out.write(b"saved page")
        out.truncate(SIZE)  # everything else is a hole


def _resident_kib(region: GuestMemoryRegion) -> int:
    """Rss of the mapping that holds ``region`` (from /proc/self/smaps)."""
    start = int(region.host_addr)
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for index, line in enumerate(lines):
        head = line.split()[0]
        if "-" in head and int(head.split("-")[0], 16) == start:
            for detail in lines[index + 1 : index + 25]:
                if detail.startswith("Rss:"):
                    return int(detail.split()[1])
    raise AssertionError(f"no mapping at {start:#x}")


def test_two_private_regions_over_one_file_keep_their_writes_apart(tmp_path: Path) -> None:
    path = tmp_path / "ram-0.bin"
    _sparse_snapshot(path)
    before = path.read_bytes()
    with (
        GuestMemoryRegion.from_file(0x8000_0000, path, SIZE, shared=False) as one,
        GuestMemoryRegion.from_file(0x8000_0000, path, SIZE, shared=False) as two,
    ):
        assert bytes(one.view[PAGE : PAGE + 10]) == b"saved page" == bytes(two.view[PAGE : PAGE + 10])
        one.view[PAGE : PAGE + 3] = b"one"
        two.view[5 * PAGE : 5 * PAGE + 3] = b"two"
        assert bytes(two.view[PAGE : PAGE + 10]) == b"saved page"  # one's write is one's alone
        assert bytes(one.view[5 * PAGE : 5 * PAGE + 3]) == bytes(3)  # a hole reads as zeros
    assert path.read_bytes() == before
    assert os.stat(path).st_blocks * 512 < SIZE  # still sparse


def test_nothing_is_read_until_touched(tmp_path: Path) -> None:
    path = tmp_path / "ram-0.bin"
    _sparse_snapshot(path)
    with GuestMemoryRegion.from_file(0x8000_0000, path, SIZE, shared=False) as region:
        assert _resident_kib(region) == 0
        assert region.view[PAGE] == ord("s")
        assert 0 < _resident_kib(region) < 1024  # the touched page (and a little readahead), not 16 MiB
