"""The snapshot directory and its manifest: what was saved, and whether it fits here.

Layout of a snapshot directory (format version 1)::

    manifest.json   format and project versions, backend, arch, the config (and its hash),
                    vCPU count, RAM regions, the guest clock, disks with size/mtime/head hash
    ram-<n>.bin     RAM region n, sparse (zero pages are holes)
    vcpu-<n>.json   vCPU n's full state (the backend's own layout, with its version)
    devices.json    every stateful device's state, keyed by bus and base address
    backend.json    the backend's VM-wide state, where it has one (KVM: PIC, IOAPIC, PIT, kvmclock)

A snapshot is refused, with one line naming the difference, when it is of a newer format, was
made by another backend or for another architecture, does not match the config it is restored
with, or when a disk changed since it was taken (size, mtime, or the hash of its first
``DISK_HEAD_BYTES``) unless forced.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import AxVMCrateConfig
from ..config.dump import config_to_dict
from .errors import SnapshotError

FORMAT = "axvisor-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEVICES = "devices.json"
BACKEND = "backend.json"
PLATFORM = "machine.json"
DISK_HEAD_BYTES = 1 << 20
"""How much of each disk is hashed: its partition table, superblock and first metadata."""


def ram_file(index: int) -> str:
    return f"ram-{index}.bin"


def vcpu_file(index: int) -> str:
    return f"vcpu-{index}.json"


def config_document(config: AxVMCrateConfig) -> dict[str, Any]:
    """The config as the plain document a snapshot stores (JSON-ready)."""
    document: dict[str, Any] = json.loads(json.dumps(config_to_dict(config), default=str))
    return document


def config_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class DiskRecord:
    """What a disk looked like when the snapshot was taken."""

    key: str
    path: str
    size: int
    mtime_ns: int
    head_sha256: str

    @classmethod
    def of(cls, key: str, path: Path) -> DiskRecord:
        stat = path.stat()
        with path.open("rb") as disk:
            head = disk.read(DISK_HEAD_BYTES)
        return cls(key, str(path), stat.st_size, stat.st_mtime_ns, hashlib.sha256(head).hexdigest())

    def change(self) -> str | None:
        """What differs now, in words; None when nothing does."""
        now = DiskRecord.of(self.key, Path(self.path))
        if now.size != self.size:
            return f"its size is {now.size} bytes, it was {self.size}"
        if now.head_sha256 != self.head_sha256:
            return f"its first {DISK_HEAD_BYTES >> 20} MiB changed"
        if now.mtime_ns != self.mtime_ns:
            return "it was modified (mtime)"
        return None


def disks_of(config: AxVMCrateConfig) -> list[DiskRecord]:
    path = config.kernel.disk_path
    return [DiskRecord.of("kernel.disk_path", Path(path))] if path is not None else []


def read_json(directory: Path, name: str) -> Any:
    try:
        return json.loads((directory / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        expected = "expected a snapshot directory made by 'vm snapshot'"
        raise SnapshotError(f"{directory / name}: not found; {expected}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SnapshotError(f"{directory / name}: cannot read it: {error}") from None


def write_json(directory: Path, name: str, data: Any) -> None:
    path = directory / name
    with path.open("x", encoding="utf-8") as out:
        json.dump(data, out, indent=1, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())


def first_difference(saved: Any, given: Any, where: str = "") -> str | None:
    """The dotted key of the first value that differs between two config documents."""
    if isinstance(saved, dict) and isinstance(given, dict):
        for key in sorted(set(saved) | set(given)):
            found = first_difference(saved.get(key), given.get(key), f"{where}.{key}" if where else key)
            if found is not None:
                return found
        return None
    if isinstance(saved, list) and isinstance(given, list) and len(saved) == len(given):
        for index, (a, b) in enumerate(zip(saved, given, strict=True)):
            found = first_difference(a, b, f"{where}[{index}]")
            if found is not None:
                return found
        return None
    return None if saved == given else (where or "(the whole config)")


def check_manifest(manifest: Any, directory: Path) -> None:
    """SnapshotError unless ``manifest`` is one this version can read."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{directory / MANIFEST}: not an axvisor snapshot manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SnapshotError(
            f"{directory}: snapshot format version {version!r} is newer than this axvisor reads "
            f"({FORMAT_VERSION}); restore it with the axvisor that wrote it "
            f"({manifest.get('project_version', '?')})"
        )
    for key, kind in (("config", dict), ("ram", list), ("disks", list), ("vcpus", int), ("backend", str),
                      ("arch", str), ("config_hash", str)):  # fmt: skip
        if not isinstance(manifest.get(key), kind):
            raise SnapshotError(f"{directory / MANIFEST}: {key} is missing or not a {kind.__name__}")
