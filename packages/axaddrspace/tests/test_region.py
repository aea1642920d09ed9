"""GuestMemoryRegion: alignment checks, host address, zero-copy view, file backing, close."""

from __future__ import annotations

import ctypes
import gc
import mmap
import os

import pytest

from axaddrspace import PAGE_SIZE, AddrRange, GuestMemory, GuestMemoryError, GuestMemoryRegion, GuestPhysAddr


def test_anonymous_region_is_zeroed_and_describes_itself():
    with GuestMemoryRegion.anonymous(0x8000_0000, 2 * PAGE_SIZE) as region:
        assert region.gpa == 0x8000_0000 and type(region.gpa) is GuestPhysAddr
        assert region.size == 2 * PAGE_SIZE
        assert region.range == AddrRange(0x8000_0000, 0x8000_2000)
        assert region.writable and not region.closed
        assert len(region.view) == 2 * PAGE_SIZE
        assert bytes(region.view) == bytes(2 * PAGE_SIZE)


@pytest.mark.parametrize(
    ("gpa", "size", "named"),
    [
        (0x1001, PAGE_SIZE, "0x1001"),
        (0x1000, PAGE_SIZE + 1, "0x1001"),
        (0x1000, 0, "0x0"),
        (0x1000, -PAGE_SIZE, "size"),
        ((1 << 64) - PAGE_SIZE, 2 * PAGE_SIZE, "64-bit"),
    ],
)
def test_misaligned_or_empty_regions_are_rejected_by_name(gpa, size, named):
    with pytest.raises(ValueError, match=named):
        GuestMemoryRegion.anonymous(gpa, size)


def test_host_addr_is_the_address_of_the_first_byte():
    with GuestMemoryRegion.anonymous(0, PAGE_SIZE) as region:
        region.view[:5] = b"hello"
        region.view[PAGE_SIZE - 3 :] = b"end"
        assert ctypes.string_at(int(region.host_addr), 5) == b"hello"
        assert ctypes.string_at(int(region.host_addr) + PAGE_SIZE - 3, 3) == b"end"
        # and the other way: writing through the host address shows up in the view
        ctypes.memmove(int(region.host_addr) + 100, b"via host", 8)
        assert bytes(region.view[100:108]) == b"via host"


def test_close_unmaps_and_is_idempotent():
    region = GuestMemoryRegion.anonymous(0, PAGE_SIZE)
    region.close()
    region.close()
    assert region.closed
    with pytest.raises(ValueError, match="closed"):
        _ = region.view
    assert "closed" in repr(region)


def test_close_with_a_borrowed_view_defers_the_unmap():
    region = GuestMemoryRegion.anonymous(0, PAGE_SIZE)
    borrowed = region.view[0:16]
    region.close()  # must not raise, and must not leave the borrower with a dangling pointer
    borrowed[:4] = b"safe"
    assert bytes(borrowed[:4]) == b"safe"
    borrowed.release()
    gc.collect()


def test_region_keeps_its_mmap_alive():
    region = GuestMemoryRegion.anonymous(0, PAGE_SIZE)
    region.view[:4] = b"live"
    gc.collect()  # nothing else references the mmap; the region must
    assert ctypes.string_at(int(region.host_addr), 4) == b"live"
    region.close()


def test_adopting_a_read_only_mmap_is_refused(tmp_path):
    path = tmp_path / "ro.bin"
    path.write_bytes(bytes(PAGE_SIZE))
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), PAGE_SIZE, access=mmap.ACCESS_READ)
    with pytest.raises(ValueError, match="writable"):
        GuestMemoryRegion(0, mm)
    mm.close()


def test_file_backed_region_writes_reach_the_file(tmp_path):
    path = tmp_path / "ram.bin"
    path.write_bytes(b"\xaa" * (3 * PAGE_SIZE))
    region = GuestMemoryRegion.from_file(0x4000_0000, path, size=2 * PAGE_SIZE, offset=PAGE_SIZE)
    memory = GuestMemory([region])
    assert memory.read(0x4000_0000, 2) == b"\xaa\xaa"
    memory.write(0x4000_0000, b"first page")
    memory.write_u32(0x4000_0000 + 2 * PAGE_SIZE - 4, 0x11223344)
    region.flush()
    data = path.read_bytes()
    assert data[PAGE_SIZE : PAGE_SIZE + 10] == b"first page"
    assert data[3 * PAGE_SIZE - 4 :] == bytes.fromhex("44332211")
    assert data[:PAGE_SIZE] == b"\xaa" * PAGE_SIZE  # outside the mapped window: untouched
    memory.close()
    assert region.closed


def test_file_backed_region_close_flushes(tmp_path):
    path = tmp_path / "ram.bin"
    path.write_bytes(bytes(PAGE_SIZE))
    region = GuestMemoryRegion.from_file(0, path)
    assert region.size == PAGE_SIZE
    region.view[7:10] = b"abc"
    region.close()
    assert path.read_bytes()[7:10] == b"abc"


def test_private_file_region_keeps_writes_to_itself(tmp_path):
    path = tmp_path / "image.bin"
    path.write_bytes(bytes(PAGE_SIZE))
    with GuestMemoryRegion.from_file(0, path, shared=False) as region:
        region.view[:4] = b"priv"
        region.flush()
        assert bytes(region.view[:4]) == b"priv"
    assert path.read_bytes()[:4] == bytes(4)


def test_read_only_file_region_rejects_writes(tmp_path):
    path = tmp_path / "rom.bin"
    path.write_bytes(b"ROM!" + bytes(PAGE_SIZE - 4))
    os.chmod(path, 0o444)
    region = GuestMemoryRegion.from_file(0x1000, path, writable=False)
    memory = GuestMemory([region])
    assert not region.writable and region.view.readonly
    assert memory.read(0x1000, 4) == b"ROM!"
    with pytest.raises(GuestMemoryError, match="read-only") as exc:
        memory.write(0x1002, b"xx")
    assert exc.value.addr == 0x1002
    with pytest.raises(GuestMemoryError, match="read-only"):
        memory.view(0x1000, 4, writable=True)
    assert memory.view(0x1000, 4).readonly
    assert memory.read(0x1000, 4) == b"ROM!"
    memory.close()


@pytest.mark.parametrize(
    ("size", "offset", "named"),
    [(None, 1, "offset"), (3 * PAGE_SIZE, 0, "needs"), (100, 0, "size"), (None, 2 * PAGE_SIZE, "size")],
)
def test_file_region_errors_name_the_file(tmp_path, size, offset, named):
    path = tmp_path / "small.bin"
    path.write_bytes(bytes(2 * PAGE_SIZE))
    with pytest.raises(ValueError, match=named) as exc:
        GuestMemoryRegion.from_file(0, path, size=size, offset=offset)
    assert "small.bin" in str(exc.value)
