"""Snapshots in the VMM: taking one of a managed VM, and building VMs from one (restore, clones).

The format and the restore itself are axvm's (``axvm.snapshot``); this module adds the VMM's
policy: which backend a restored VM runs on (the one its config selects here, which must be the
one the snapshot was taken on), the host resources (``VmmHost``: disks, networks), the project
version written into the manifest, and each clone's own disk (a private copy of the snapshot's
disk, copied with reflinks where the file system has them, or the snapshot's disk shared when it
was attached read-only).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from axdevice import EmuDeviceType
from axvm import AxVM, AxVMCrateConfig, ConfigError, config_from_dict
from axvm.snapshot import Snapshot, SnapshotError, clone_document

from .backends import select_backend
from .errors import UserError
from .vmm import VmmHost, build_vm

Sink = Callable[[bytes], object]


def project_version() -> str:
    """axvisor's version, for the manifest (importlib.metadata is imported only here: it costs
    run's start-up a fifth of a second)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("axvisor")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def open_snapshot(directory: str | Path, *, force: bool = False, config: AxVMCrateConfig | None = None) -> Snapshot:
    """The snapshot at ``directory`` checked against this host: SnapshotError (one line) when
    it is of a newer format, its backend is not the one its config selects here, ``config``
    (when given) is not its config, or a disk changed (unless ``force``)."""
    snapshot = Snapshot.open(directory)
    try:
        entry = select_backend(snapshot.config)
    except UserError as error:
        raise SnapshotError(f"{directory}: {error}") from None
    snapshot.check_fits(backend=entry.kind.value, config=config, force=force)
    return snapshot


def restore_build(snapshot: Snapshot, config: AxVMCrateConfig | None = None) -> Callable[[AxVMCrateConfig, Sink], AxVM]:
    """A build function for a VMM: the first call builds the VM restored from ``snapshot`` (with
    ``config``, a clone's, when given), every later one (a guest reset, a restart) a cold boot
    from the config, as for any VM."""
    used = False

    def build(wanted: AxVMCrateConfig, sink: Sink) -> AxVM:
        nonlocal used
        backend = select_backend(wanted).factory(wanted)
        if used:
            return build_vm(wanted, backend, sink)
        used = True
        return snapshot.build(backend, sink, VmmHost(), config=config or wanted)

    return build


def clone_configs(snapshot: Snapshot, count: int, disk_dir: Path) -> list[AxVMCrateConfig]:
    """``count`` clone configs: ids and names of their own (so MAC addresses of their own), and
    each a private copy of the disk in ``disk_dir``; a disk the saved VM had read-only is shared
    (the guest's driver negotiated read-only, so a clone cannot be given it writable, nor a
    writable disk read-only)."""
    if count < 1:
        raise SnapshotError(f"--clone {count}: expected 1 or more clones")
    disk = snapshot.config.kernel.disk_path
    shared = disk is None or _disk_read_only(snapshot.config)
    configs = []
    for index in range(count):
        clone_disk: Path | None = None
        if disk is not None and not shared:
            clone_disk = disk_dir / f"clone{index}-{Path(disk).name}"
            try:
                disk_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(disk, clone_disk)  # copy_file_range: reflinked where the file system can
            except OSError as error:
                raise SnapshotError(f"clone {index}: copying disk {disk} to {clone_disk}: {error.strerror}") from None
        document = clone_document(snapshot, index, clone_disk)
        try:
            configs.append(config_from_dict(document, snapshot.directory / "manifest.json"))
        except ConfigError as error:
            raise SnapshotError(f"clone {index}: {str(error).splitlines()[0]}") from None
    return configs


def _disk_read_only(config: AxVMCrateConfig) -> bool:
    """Whether the config attaches its disk read-only (a virtio-blk entry with cfg_list = [1])."""
    return any(
        EmuDeviceType.parse(entry.emu_type) is EmuDeviceType.VirtioBlk and bool(entry.cfg_list and entry.cfg_list[0])
        for entry in config.devices.emu_devices
    )
