"""VM snapshots: save a paused VM (RAM, vCPUs, devices, config) and restore or clone it."""

from .errors import SnapshotError
from .manifest import FORMAT_VERSION, DiskRecord, config_document, config_hash
from .protocols import RestorableDevice, RuntimeWiring, SnapshotClock, SnapshotMachine, SnapshotPlatform, SnapshotVCpu
from .ram import map_from_file, write_sparse
from .restore import RestoredVM, Snapshot, clone_document
from .take import prepare_directory, vcpu_state, write_snapshot

__all__ = [
    "FORMAT_VERSION",
    "DiskRecord",
    "RestorableDevice",
    "RestoredVM",
    "RuntimeWiring",
    "Snapshot",
    "SnapshotClock",
    "SnapshotError",
    "SnapshotMachine",
    "SnapshotPlatform",
    "SnapshotVCpu",
    "clone_document",
    "config_document",
    "config_hash",
    "map_from_file",
    "prepare_directory",
    "vcpu_state",
    "write_snapshot",
    "write_sparse",
]
