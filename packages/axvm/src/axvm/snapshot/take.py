"""Writing a snapshot of a paused (or never started) VM into a new directory.

The caller pauses the VM first (every vCPU out of the guest, the guest clock stopped) and
hands over each vCPU's state, read on that vCPU's own thread; devices are read under the
device lock, RAM region by region. The manifest is written last: a directory without one is
an unfinished snapshot and is never restored.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..vm import AxVM
from .devices import capture_devices
from .errors import SnapshotError
from .manifest import (
    BACKEND,
    DEVICES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PLATFORM,
    config_document,
    config_hash,
    disks_of,
    ram_file,
    vcpu_file,
    write_json,
)
from .protocols import SnapshotClock, SnapshotMachine, SnapshotPlatform, SnapshotVCpu
from .ram import write_sparse


def vcpu_state(vm: AxVM, index: int) -> dict[str, Any]:
    """vCPU ``index``'s full state; SnapshotError when its backend cannot save one. Call it on
    the thread that runs that vCPU, or while none does."""
    arch = vm.vcpus[index].arch
    if not isinstance(arch, SnapshotVCpu):
        raise SnapshotError(f"the {vm.backend.name} backend's vCPUs ({type(arch).__name__}) cannot save their state")
    return arch.save_state()


def prepare_directory(directory: Path) -> None:
    """Create ``directory``; SnapshotError if it exists with anything in it (a restored VM maps
    the RAM files of its snapshot, so a snapshot is never written over another)."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise SnapshotError(f"{directory}: exists and is not an empty directory; give a new directory for the snapshot")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SnapshotError(f"{directory}: cannot create it: {error.strerror}") from None


def write_snapshot(
    vm: AxVM,
    directory: Path,
    *,
    project_version: str,
    vcpu_states: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``vm`` into ``directory`` (new or empty); returns the manifest. ``vcpu_states``:
    each vCPU's ``save_state()`` taken on its own thread (default: read here)."""
    prepare_directory(directory)
    states = list(vcpu_states) if vcpu_states is not None else [vcpu_state(vm, i) for i in range(len(vm.vcpus))]
    if len(states) != len(vm.vcpus):
        raise SnapshotError(f"{len(states)} vCPU states for {len(vm.vcpus)} vCPUs")
    backend = vm.backend
    with vm.device_lock:
        devices = capture_devices(vm.buses)
        clock = backend.save_clock() if isinstance(backend, SnapshotClock) else None
        machine = backend.save_machine_state() if isinstance(backend, SnapshotMachine) else None
        platform = vm.machine.save_platform_state() if isinstance(vm.machine, SnapshotPlatform) else None
    flags = {region.gpa: region.flags for region in vm.config.kernel.memory_regions}
    ram = []
    try:
        for index, region in enumerate(vm.addrspace.memory.regions):
            written = write_sparse(region, directory / ram_file(index))
            gpa = int(region.gpa)
            ram.append({"gpa": gpa, "size": region.size, "flags": flags.get(gpa, 0x7), "file": ram_file(index),
                        "bytes_written": written})  # fmt: skip
        for index, state in enumerate(states):
            write_json(directory, vcpu_file(index), state)
        write_json(directory, DEVICES, devices)
        if machine is not None:
            write_json(directory, BACKEND, machine)
        if platform is not None:
            write_json(directory, PLATFORM, platform)
        document = config_document(vm.config)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "project_version": project_version,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "backend": backend.name,
            "arch": vm.config.base.arch.value,
            "vm": {"id": vm.id, "name": vm.name},
            "config_hash": config_hash(document),
            "config": document,
            "vcpus": len(vm.vcpus),
            "ram": ram,
            "clock": clock,
            "disks": [record.__dict__ for record in disks_of(vm.config)],
        }
        write_json(directory, MANIFEST, manifest)
    except OSError as error:
        raise SnapshotError(f"{directory}: writing the snapshot failed: {error.strerror or error}") from None
    return manifest
