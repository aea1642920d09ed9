"""A small Debian-style archive on a local HTTP server, so the image scripts are tested offline.

The archive copies what broke real fetches: trixie's riscv64 index lists its arch:all packages
too, while its binary-all index is listed in Release with a size and hash the file does not have
(a mirror in mid-sync); bookworm has no riscv64 index at all, so its firmware is found only in
binary-all. Release files are unsigned: the scripts are told to trust them. The server can be
made to answer 503 for a path a number of times, and records every path asked for.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RELEASE_DATE = "Sat, 01 Jan 2000 00:00:00 UTC"
OPENSBI_DIR = "usr/lib/riscv64-linux-gnu/opensbi/generic"


@dataclass(frozen=True)
class Package:
    """A package to build: its control fields and the files it installs (path -> contents)."""

    name: str
    version: str
    arch: str
    files: dict[str, bytes] = field(default_factory=dict)
    depends: str = ""

    @property
    def deb_name(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def opensbi(version: str) -> Package:
    """A stand-in for Debian's opensbi: the generic platform's firmware, tagged with the version."""
    return Package(
        "opensbi",
        version,
        "all",
        {
            f"{OPENSBI_DIR}/fw_jump.bin": f"fw_jump {version}".encode(),
            f"{OPENSBI_DIR}/fw_dynamic.bin": f"fw_dynamic {version}".encode(),
        },
    )


def kernel(release: str, version: str) -> list[Package]:
    """A riscv64 kernel package (a flat Image with the RISCV magic at 0x30) and its metapackage."""
    image = bytearray(64)
    image[0x30:0x38] = b"RISCV\0\0\0"
    real = Package(
        f"linux-image-{release}",
        version,
        "riscv64",
        {f"boot/vmlinux-{release}": bytes(image), f"usr/lib/modules/{release}/modules.builtin": b""},
    )
    meta = Package("linux-image-riscv64", version, "riscv64", depends=f"{real.name} (= {version})")
    return [real, meta]


def build_deb(package: Package, where: Path) -> Path:
    """Build PACKAGE with dpkg-deb into WHERE; returns the .deb."""
    root = where / f"{package.name}-{package.version}"
    for path, data in package.files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    control = [
        f"Package: {package.name}",
        f"Version: {package.version}",
        f"Architecture: {package.arch}",
        "Maintainer: axvisor tests <tests@invalid>",
        f"Description: {package.name} for the fetch tests",
    ]
    if package.depends:
        control.append(f"Depends: {package.depends}")
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    deb = where / package.deb_name
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True, capture_output=True
    )
    return deb


class Archive:
    """The archive's files under ROOT/debian; suites are (re)written with write_suite."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.top = root / "debian"
        self.debs = root / "debs"
        self.debs.mkdir(parents=True, exist_ok=True)
        self.built: dict[str, Path] = {}

    def add(self, package: Package) -> str:
        """Build PACKAGE into the pool (once); returns its Packages stanza."""
        key = package.deb_name
        if key not in self.built:
            deb = build_deb(package, self.debs)
            pool = self.top / "pool" / "main" / package.name[0] / package.name
            pool.mkdir(parents=True, exist_ok=True)
            target = pool / deb.name
            target.write_bytes(deb.read_bytes())
            self.built[key] = target
        target = self.built[key]
        data = target.read_bytes()
        lines = [
            f"Package: {package.name}",
            f"Version: {package.version}",
            f"Architecture: {package.arch}",
            "Maintainer: axvisor tests <tests@invalid>",
            "Installed-Size: 1",
            f"Filename: {target.relative_to(self.top)}",
            f"Size: {len(data)}",
            f"SHA256: {hashlib.sha256(data).hexdigest()}",
            f"Description: {package.name} for the fetch tests",
        ]
        if package.depends:
            lines.insert(3, f"Depends: {package.depends}")
        return "\n".join(lines) + "\n"

    def write_suite(
        self, suite: str, indexes: dict[str, list[Package]], corrupt: tuple[str, ...] = (), date: str = RELEASE_DATE
    ) -> None:
        """Write dists/SUITE: one index per architecture in INDEXES; those in CORRUPT are listed in
        Release with a size and hash their files do not have."""
        dists = self.top / "dists" / suite
        entries = []
        for arch, packages in indexes.items():
            text = "\n".join(self.add(package) for package in packages).encode()
            for name, data in (
                ("Packages", text),
                ("Packages.xz", lzma.compress(text)),
                ("Packages.gz", gzip.compress(text, mtime=0)),
            ):
                path = f"main/binary-{arch}/{name}"
                (dists / path).parent.mkdir(parents=True, exist_ok=True)
                (dists / path).write_bytes(data)
                listed = data + b"a newer file the mirror has not synced yet" if arch in corrupt else data
                entries.append(f" {hashlib.sha256(listed).hexdigest()} {len(listed)} {path}")
        release = [
            "Origin: axvisor-test",
            "Label: axvisor-test",
            f"Suite: {suite}",
            f"Codename: {suite}",
            f"Date: {date}",
            # As Debian's: arch:all packages are in each architecture's index too, so apt fetches
            # binary-all only when a sources line asks for it.
            "No-Support-for-Architecture-all: Packages",
            "Architectures: " + " ".join([arch for arch in indexes if arch != "all"] + ["all"]),
            "Components: main",
            "SHA256:",
            *entries,
        ]
        before = (dists / "Release").stat().st_mtime if (dists / "Release").exists() else None
        (dists / "Release").write_text("\n".join(release) + "\n")
        if before is not None:  # newer by a whole second, or If-Modified-Since would get a 304
            os.utime(dists / "Release", (before + 2, before + 2))


class Mirror:
    """An HTTP server for an Archive on 127.0.0.1; fail(prefix, n) answers 503 n times."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.requests: list[str] = []
        self.failures: dict[str, int] = {}
        self.failed = 0
        self._lock = threading.Lock()
        handler = partial(_Handler, self, directory=str(archive.root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/debian"

    def fail(self, prefix: str, times: int) -> None:
        """Answer 503 to the next TIMES requests for paths under /debian/PREFIX."""
        with self._lock:
            self.failures[f"/debian/{prefix}"] = times

    def should_fail(self, path: str) -> bool:
        with self._lock:
            self.requests.append(path)
            for prefix, left in self.failures.items():
                if path.startswith(prefix) and left > 0:
                    self.failures[prefix] = left - 1
                    self.failed += 1
                    return True
        return False

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, mirror: Mirror, *args, **kwargs) -> None:
        self.mirror = mirror
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self.mirror.should_fail(self.path):
            self.send_error(503, "Service Unavailable")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the mirror's requests are in Mirror.requests."""


@contextmanager
def serve(archive: Archive) -> Iterator[Mirror]:
    mirror = Mirror(archive)
    try:
        yield mirror
    finally:
        mirror.stop()


def dead_url() -> str:
    """A mirror URL on a port nothing listens on (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/debian"
