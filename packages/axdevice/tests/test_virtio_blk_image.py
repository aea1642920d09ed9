"""Disk images as the raw-file backend opens them: locked against a second user, refused when
they cannot be a disk, and the struct flock it locks with checked against <fcntl.h>."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from axdevice import DiskImageError, DiskInUseError, RawFileBackend
from axdevice.virtio.blk import image_lock

SECTORS = 64


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(SECTORS * 512))
    return path


FLOCK_PROBE = r"""
#define _GNU_SOURCE
#define _FILE_OFFSET_BITS 64
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_END;
    lock.l_start = 0x0102030405060708LL;
    lock.l_len = 0x1112131415161718LL;
    lock.l_pid = 0x21222324;
    printf("%d %d %d %d %d %zu ", F_OFD_GETLK, F_OFD_SETLK, F_RDLCK, F_WRLCK, F_UNLCK, sizeof lock);
    for (size_t i = 0; i < sizeof lock; i++) printf("%02x", ((unsigned char *)&lock)[i]);
    printf("\n");
    return 0;
}
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OFD locks are Linux's")
def test_struct_flock_and_the_ofd_commands_match_the_header(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        wanted = os.environ.get("AXVISOR_REQUIRE_TOOLS", "").replace(",", " ").split()
        if "gcc" in wanted or "1" in wanted:
            pytest.fail("AXVISOR_REQUIRE_TOOLS requires gcc (to read <fcntl.h>), missing here")
        pytest.skip("gcc is not installed (needed to read <fcntl.h>)")
    source = tmp_path / "probe.c"
    source.write_text(FLOCK_PROBE)
    subprocess.run(["gcc", "-o", str(tmp_path / "probe"), str(source)], check=True, timeout=120)
    out = subprocess.run([str(tmp_path / "probe")], check=True, capture_output=True, text=True).stdout.split()
    getlk, setlk, rdlck, wrlck, unlck, size = map(int, out[:6])
    assert (image_lock.F_OFD_GETLK, image_lock.F_OFD_SETLK) == (getlk, setlk) == (36, 37)
    assert (image_lock.F_RDLCK, image_lock.F_WRLCK, image_lock.F_UNLCK) == (rdlck, wrlck, unlck)
    packed = image_lock.FLOCK.pack(wrlck, os.SEEK_END, 0x0102030405060708, 0x1112131415161718, 0x21222324)
    assert image_lock.FLOCK.size == size
    assert packed.hex() == out[6]


def test_a_second_read_write_user_in_one_process_is_refused(image: Path) -> None:
    first = RawFileBackend(image)
    for read_only in (False, True):
        with pytest.raises(DiskInUseError, match="in use by another VM") as refused:
            RawFileBackend(image, read_only=read_only)
        assert str(image) in str(refused.value) and "opened read-write there" in str(refused.value)
    first.close()
    RawFileBackend(image).close()  # free again once the first user is gone


def test_closing_another_descriptor_of_the_image_keeps_the_lock(image: Path) -> None:
    """A POSIX (process) lock would be dropped here; an open file description lock is not."""
    with RawFileBackend(image):
        os.close(os.open(image, os.O_RDONLY))
        with pytest.raises(DiskInUseError):
            RawFileBackend(image)


def test_read_only_users_share_the_image_and_a_writer_is_refused(image: Path) -> None:
    readers = [RawFileBackend(image, read_only=True) for _ in range(2)]
    with pytest.raises(DiskInUseError, match=r"opened read-only there\); a read-write disk needs the image to itself"):
        RawFileBackend(image)
    for reader in readers:
        reader.close()
    RawFileBackend(image).close()


def test_another_process_is_refused_while_a_backend_holds_the_image(image: Path) -> None:
    probe = textwrap.dedent(f"""
        from axdevice import DiskInUseError, RawFileBackend
        try:
            RawFileBackend({str(image)!r}, read_only=True)
        except DiskInUseError as error:
            print("refused:", error)
        else:
            print("opened")
    """)
    with RawFileBackend(image):
        held = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    free = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert held.startswith("refused:") and "opened read-write there" in held, held
    assert free.strip() == "opened"


def test_a_backend_dropped_without_close_releases_the_image(image: Path) -> None:
    RawFileBackend(image)  # collected at once: its finalizer closes the descriptor
    RawFileBackend(image).close()


def test_unlocked_backends_do_not_conflict(image: Path) -> None:
    with RawFileBackend(image, lock=False), RawFileBackend(image, lock=False):
        pass


@pytest.mark.parametrize("read_only", [False, True])
def test_paths_that_cannot_be_disks_are_refused(tmp_path: Path, read_only: bool) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it read-only would block until a writer came
    empty = tmp_path / "empty.img"
    empty.touch()
    tiny = tmp_path / "tiny.img"
    tiny.write_bytes(bytes(100))
    cases = [
        (directory, "is a directory"),
        (fifo, "is a FIFO"),
        (empty, r"is empty \(0 bytes\)"),
        (tiny, "100 bytes, less than one 512-byte sector"),
    ]
    if Path("/dev/null").exists() and stat.S_ISCHR(os.stat("/dev/null").st_mode):
        cases.append((Path("/dev/null"), "is a character device"))
    for path, what in cases:
        with pytest.raises(DiskImageError, match=what) as refused:
            RawFileBackend(path, read_only=read_only)
        message = str(refused.value)
        assert str(path) in message and "expected a raw disk image file or a block device" in message
        assert "\n" not in message
