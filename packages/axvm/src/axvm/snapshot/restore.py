"""Restoring a snapshot into a fresh VM: the same composition, then the saved state.

``Snapshot.open`` reads and checks the manifest; ``check_fits`` refuses, with one line, a
snapshot that does not fit (another backend, another config, a changed disk);
``Snapshot.build`` composes the VM from the saved config with its RAM mapped copy-on-write from
the snapshot's files and no images loaded, and at once the guest clock, the backend's VM-wide
state and every device's state put back (which raises the interrupt lines the saved state holds
high), the clock then held still. Its ``boot()`` restores the rest instead of preparing a boot:
each vCPU set up and then given its saved state, the machine's runtime wiring (inline MMIO, the
ecall hook) connected without writing boot data over guest RAM, the clock let go.
A guest reset of a restored VM is a cold boot from the config, as for any VM.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axaddrspace import GuestPhysAddr, MappingFlags

from ..backend import GuestClock, VmBackend
from ..config import AxVMCrateConfig, ConfigError, config_from_dict
from ..host import HostResources
from ..lifecycle import VMState, check_vm_transition
from ..machine import BootPlan
from ..vm import AxVM
from .devices import restore_devices
from .errors import SnapshotError
from .manifest import (
    BACKEND,
    DEVICES,
    MANIFEST,
    PLATFORM,
    DiskRecord,
    check_manifest,
    config_document,
    config_hash,
    first_difference,
    read_json,
    vcpu_file,
)
from .protocols import RuntimeWiring, SnapshotClock, SnapshotMachine, SnapshotPlatform, SnapshotVCpu
from .ram import map_from_file


@dataclass(frozen=True)
class Snapshot:
    """A snapshot directory whose manifest this version reads."""

    directory: Path
    manifest: dict[str, Any]
    config: AxVMCrateConfig

    @classmethod
    def open(cls, directory: str | Path) -> Snapshot:
        directory = Path(directory)
        manifest = read_json(directory, MANIFEST)
        check_manifest(manifest, directory)
        try:
            config = config_from_dict(manifest["config"], directory / MANIFEST)
        except ConfigError as error:
            first = str(error).splitlines()[0]
            raise SnapshotError(f"{directory / MANIFEST}: its config does not load: {first}") from None
        return cls(directory, manifest, config)

    @property
    def backend(self) -> str:
        return str(self.manifest["backend"])

    def check_fits(self, *, backend: str, config: AxVMCrateConfig | None = None, force: bool = False) -> None:
        """SnapshotError, one line naming what differs, unless the snapshot restores here: on
        ``backend``, with ``config`` when one is given, with every disk as it was (or ``force``)."""
        where = str(self.directory)
        manifest = self.manifest
        if backend != self.backend:
            raise SnapshotError(f"{where}: taken on the {self.backend} backend; this VM would run on {backend}")
        if config is not None:
            if config.base.arch.value != manifest["arch"]:
                raise SnapshotError(f"{where}: a {manifest['arch']} snapshot; the config is {config.base.arch.value}")
            document = config_document(config)
            if config_hash(document) != manifest["config_hash"]:
                key = first_difference(manifest["config"], document) or "?"
                raise SnapshotError(f"{where}: taken with another config: {key} differs from {config.source or 'it'}")
        if force:
            return
        for entry in manifest["disks"]:
            try:
                record = DiskRecord(**entry)
                change = record.change()
            except TypeError:
                raise SnapshotError(f"{where}/{MANIFEST}: a disk record is malformed: {entry!r}") from None
            except OSError as error:
                raise SnapshotError(f"{where}: disk {entry.get('path')}: {error.strerror}") from None
            if change is not None:
                raise SnapshotError(
                    f"{where}: disk {record.path} ({record.key}) changed since the snapshot: {change}; "
                    "restore with --force to use it as it is now"
                )

    def vcpu_states(self) -> list[dict[str, Any]]:
        count = int(self.manifest["vcpus"])
        if count != self.config.base.cpu_num:
            raise SnapshotError(f"{self.directory}: {count} vCPU states for a config with {self.config.base.cpu_num}")
        return [read_json(self.directory, vcpu_file(index)) for index in range(count)]

    def build(
        self,
        backend: VmBackend,
        console_output: Callable[[bytes], object] | None = None,
        host: HostResources | None = None,
        *,
        config: AxVMCrateConfig | None = None,
    ) -> AxVM:
        """The VM composed from the saved config (or ``config``, a clone's), RAM mapped from the
        snapshot, Loaded; its ``boot()`` restores the saved state."""
        vm = RestoredVM(self, config or self.config, backend, console_output, host)
        vm.mark_loaded()
        return vm


class RestoredVM(AxVM):
    """An AxVM whose RAM is a snapshot's and whose boot is that snapshot's restore."""

    def __init__(
        self,
        snapshot: Snapshot,
        config: AxVMCrateConfig,
        backend: VmBackend,
        console_output: Callable[[bytes], object] | None,
        host: HostResources | None,
    ) -> None:
        super().__init__(config, backend, console_output, host, allocate_ram=False)
        self.snapshot = snapshot
        self._clock_held = False
        try:
            with self._step("map the snapshot's RAM"):
                self._map_snapshot_ram()
            with self._step("restore the snapshot's clock and devices"):
                self._restore_machine()
        except BaseException:
            self.stop()
            raise

    def _map_snapshot_ram(self) -> None:
        expected = sorted((region.gpa, region.size) for region in self.config.kernel.memory_regions)
        saved = self.snapshot.manifest["ram"]
        if sorted((entry.get("gpa"), entry.get("size")) for entry in saved) != expected:
            raise SnapshotError(f"{self.snapshot.directory}: its RAM regions are not the config's memory_regions")
        for entry in saved:
            name = str(entry["file"])
            if Path(name).name != name:
                raise SnapshotError(f"{self.snapshot.directory / MANIFEST}: RAM file {name!r} is not a plain file name")
            path = self.snapshot.directory / name
            map_from_file(self.addrspace, entry["gpa"], entry["size"], MappingFlags.parse(entry["flags"]), path)

    def boot(self, plan: BootPlan | None = None) -> None:
        """Loaded -> Running with the snapshot's state instead of a boot (``plan`` is ignored)."""
        check_vm_transition(self.name, self.state, VMState.RUNNING)
        with self._step("restore the snapshot"):
            self._restore()
        self._transition(VMState.RUNNING)

    def _restore_machine(self) -> None:
        """At build, before anything can reach the devices (console input queued for a VM
        created Ready is pushed into its UART at once, and a later device restore would drop
        it): the guest clock, the backend's VM-wide state and every device's state. The guest
        clock then stands still until ``boot()``, so a VM left Ready sees no time pass."""
        snapshot = self.snapshot
        clock = snapshot.manifest.get("clock")
        if isinstance(clock, int) and isinstance(self.backend, SnapshotClock):
            self.backend.restore_clock(clock)
        if isinstance(self.backend, SnapshotMachine):
            try:
                self.backend.restore_machine_state(read_json(snapshot.directory, BACKEND))
            except ValueError as error:
                raise SnapshotError(f"{snapshot.directory / BACKEND}: {error}") from None
        if isinstance(self.backend, GuestClock):
            self.backend.pause_clock()
            self._clock_held = True
        saved = read_json(snapshot.directory, DEVICES)
        if not isinstance(saved, dict):
            raise SnapshotError(f"{snapshot.directory / DEVICES}: expected a table of devices")
        with self.device_lock:
            restore_devices(self.buses, saved)
        if isinstance(self.machine, SnapshotPlatform):
            try:
                self.machine.restore_platform_state(read_json(snapshot.directory, PLATFORM))
            except ValueError as error:
                raise SnapshotError(f"{snapshot.directory / PLATFORM}: {error}") from None

    def _restore(self) -> None:
        """At boot: each vCPU set up and given its saved state, the machine's runtime wiring
        connected, the guest clock let go."""
        snapshot = self.snapshot
        states = snapshot.vcpu_states()
        for vcpu in self.vcpus:
            vcpu.setup(GuestPhysAddr(self.config.kernel.entry_point), self.backend.stage2)
        if isinstance(self.machine, RuntimeWiring):
            self.machine.connect(self._target)
        for vcpu, state in zip(self.vcpus, states, strict=True):
            if not isinstance(vcpu.arch, SnapshotVCpu):
                raise SnapshotError(f"the {self.backend.name} backend's vCPUs cannot take a saved state")
            try:
                vcpu.arch.load_state(state)
            except ValueError as error:
                raise SnapshotError(f"{snapshot.directory / vcpu_file(vcpu.id)}: {error}") from None
        if self._clock_held and isinstance(self.backend, GuestClock):
            self.backend.resume_clock()
            self._clock_held = False


def clone_document(snapshot: Snapshot, index: int, disk: Path | None) -> dict[str, Any]:
    """The config document of clone ``index``: its own VM id (hence its own MAC addresses,
    which derive from the id), name and disk."""
    document: dict[str, Any] = json.loads(json.dumps(snapshot.manifest["config"]))
    base = document["base"]
    base["id"] = int(base["id"]) + index
    base["name"] = f"{base['name']}-clone{index}"
    if disk is not None:
        document["kernel"]["disk_path"] = str(disk)
    return document
