"""scripts/fetch-debian-images.sh from a cold cache against a local Debian-style archive (no
internet): the corrupt binary-all index real mirrors serve while they sync, a suite whose firmware
is only in binary-all, a mirror that answers 503, a dead first mirror, a cache that needs no
network, and a package that does not exist.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .debian_repo import Archive, Mirror, dead_url, kernel, opensbi, serve
from .host_tools import require

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "scripts" / "fetch-debian-images.sh"
RELEASE = "7.7.7+test-riscv64"  # a kernel version no script knows


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    require("apt-get", "dpkg-deb", why="the fetch script runs apt-get and dpkg-deb (a Debian-based host)")
    archive = Archive(tmp_path / "archive")
    packages = [opensbi("9.9-1"), *kernel(RELEASE, "7.7.7-1")]
    # trixie: the riscv64 index lists the arch:all firmware too; binary-all is mid-sync (corrupt).
    archive.write_suite("trixie", {"riscv64": packages, "all": [opensbi("9.9-1")]}, corrupt=("all",))
    # bookworm: riscv64 is no release architecture there; the firmware is in binary-all only.
    archive.write_suite("bookworm", {"amd64": [], "all": [opensbi("8.8-1")]})
    return archive


@pytest.fixture
def mirror(archive: Archive) -> Iterator[Mirror]:
    with serve(archive) as running:
        yield running


def fetch(cache: Path, mirrors: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AXVISOR_CACHE": str(cache),
        "AXVISOR_DEBIAN_MIRROR": mirrors,
        "AXVISOR_DEBIAN_TRUSTED": "1",
        "AXVISOR_FETCH_ATTEMPTS": "3",
        "AXVISOR_FETCH_DELAY": "0",
    }
    env.pop("AXVISOR_DEBIAN_SUITE", None)
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def firmware(cache: Path) -> bytes:
    return (cache / "riscv64" / "opensbi" / "fw_jump.bin").read_bytes()


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 2, and besides the ==> progress lines exactly one line, the script's error."""
    assert result.returncode == 2, result.stderr
    others = [line for line in result.stderr.splitlines() if not line.startswith("==> ")]
    assert len(others) == 1, result.stderr
    assert others[0].startswith("fetch-debian-images: ")
    return others[0]


def test_a_cold_fetch_lays_out_the_images_despite_a_corrupt_binary_all_index(tmp_path: Path, mirror: Mirror) -> None:
    result = fetch(tmp_path / "cache", mirror.url, "opensbi", "linux-image-riscv64")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "cache" / "riscv64"
    assert firmware(tmp_path / "cache") == b"fw_jump 9.9-1"
    assert (out / "opensbi" / "fw_dynamic.bin").read_bytes() == b"fw_dynamic 9.9-1"
    assert (out / "opensbi" / ".axvisor-version").read_text() == "9.9-1\n"
    # The metapackage is resolved to the kernel it depends on; no version is written in the script.
    assert (out / "linux" / "version").read_text() == f"{RELEASE}\n"
    assert (out / "linux" / "Image").read_bytes()[0x30:0x38] == b"RISCV\0\0\0"
    assert (out / "linux" / "modules" / RELEASE).is_dir()
    assert f"linux-image-{RELEASE} 7.7.7-1 (trixie)" in result.stdout
    assert "warning" not in result.stderr


def test_a_package_only_in_binary_all_is_found_there(tmp_path: Path, mirror: Mirror) -> None:
    assert fetch(tmp_path / "cache", mirror.url, "opensbi").returncode == 0
    result = fetch(tmp_path / "cache", mirror.url, "opensbi@bookworm")
    assert result.returncode == 0, result.stderr
    # Off the default suite the package gets a tree of its own: trixie's firmware stays in place.
    assert firmware(tmp_path / "cache") == b"fw_jump 9.9-1"
    bookworm = tmp_path / "cache" / "riscv64" / "opensbi@bookworm"
    assert (bookworm / "fw_jump.bin").read_bytes() == b"fw_jump 8.8-1"
    assert (bookworm / ".axvisor-suite").read_text() == "bookworm\n"
    assert "opensbi 8.8-1 (bookworm)" in result.stdout


def test_a_mirror_answering_503_is_retried(tmp_path: Path, mirror: Mirror) -> None:
    mirror.fail("dists/trixie/main/binary-riscv64/", 2)
    mirror.fail("pool/", 1)
    result = fetch(tmp_path / "cache", mirror.url, "opensbi")
    assert result.returncode == 0, result.stderr
    assert mirror.failed == 3 and mirror.failures == {
        "/debian/dists/trixie/main/binary-riscv64/": 0,
        "/debian/pool/": 0,
    }
    assert "transient failure, try 2 of 3" in result.stderr
    assert firmware(tmp_path / "cache") == b"fw_jump 9.9-1"


def test_a_dead_first_mirror_falls_back_to_the_next(tmp_path: Path, mirror: Mirror) -> None:
    dead = dead_url()
    result = fetch(tmp_path / "cache", f"{dead} {mirror.url}", "opensbi")
    assert result.returncode == 0, result.stderr
    assert f"trying {mirror.url}" in result.stderr
    assert firmware(tmp_path / "cache") == b"fw_jump 9.9-1"


def test_an_index_that_fails_is_forgiven_when_every_package_still_resolves(
    tmp_path: Path, archive: Archive, mirror: Mirror
) -> None:
    cache = tmp_path / "cache"
    assert fetch(cache, mirror.url, "opensbi").returncode == 0
    # The archive moves on (a new opensbi), and its riscv64 index cannot be fetched for now: the
    # index fetched before still names the kernel.
    packages = [opensbi("9.9-2"), *kernel(RELEASE, "7.7.7-1")]
    archive.write_suite(
        "trixie", {"riscv64": packages, "all": []}, corrupt=("all",), date="Sun, 02 Jan 2000 00:00:00 UTC"
    )
    mirror.fail("dists/trixie/main/binary-riscv64/", 1000)
    result = fetch(cache, mirror.url, "linux-image-riscv64")
    assert result.returncode == 0, result.stderr
    assert mirror.failed > 0
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "binary-riscv64" in warnings[0], result.stderr
    assert (cache / "riscv64" / "linux" / "version").read_text() == f"{RELEASE}\n"


def test_a_cached_package_needs_no_network(tmp_path: Path, archive: Archive) -> None:
    cache = tmp_path / "cache"
    with serve(archive) as mirror:
        assert fetch(cache, mirror.url, "opensbi").returncode == 0
        url = mirror.url
    # The server is gone: anything that asked the network would fail.
    again = fetch(cache, url, "opensbi")
    assert again.returncode == 0, again.stderr
    assert "already in" in again.stderr
    # Without the unpacked tree, the .deb downloaded before is unpacked again.
    for path in sorted((cache / "riscv64" / "opensbi").rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() else path.rmdir()
    (cache / "riscv64" / "opensbi").rmdir()
    from_deb = fetch(cache, url, "opensbi")
    assert from_deb.returncode == 0, from_deb.stderr
    assert "downloaded before" in from_deb.stderr
    assert firmware(cache) == b"fw_jump 9.9-1"


@pytest.mark.parametrize("spec", ["no-such-package", "no-such-package@bookworm"])
def test_a_package_missing_from_the_archive_is_one_line_and_exit_2(tmp_path: Path, mirror: Mirror, spec: str) -> None:
    line = assert_one_error_line(fetch(tmp_path / "cache", mirror.url, spec))
    assert "no-such-package" in line and mirror.url in line


def test_no_mirror_reachable_is_one_line_and_exit_2(tmp_path: Path) -> None:
    require("apt-get", "dpkg-deb", why="the fetch script runs apt-get and dpkg-deb (a Debian-based host)")
    dead = dead_url()
    line = assert_one_error_line(fetch(tmp_path / "cache", dead, "opensbi"))
    assert dead in line and "Could not connect" in line


def test_a_mirror_that_is_no_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    require("apt-get", "dpkg-deb", why="the fetch script runs apt-get and dpkg-deb (a Debian-based host)")
    line = assert_one_error_line(fetch(tmp_path / "cache", "deb.debian.org", "opensbi"))
    assert "AXVISOR_DEBIAN_MIRROR: 'deb.debian.org' is not a mirror URL" in line
