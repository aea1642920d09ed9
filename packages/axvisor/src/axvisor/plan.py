"""Everything ``axvisor run`` decides before a vCPU starts, as one function ``check`` shares.

``plan_vm(config)`` takes a loaded config through run's own build steps, without their cost:

1. images: the loaders' ImagePlan (files readable, kernels parsed, every piece placed, checked
   for fit in RAM, overlaps, and what the boot protocol allows); guest RAM is not touched;
2. devices: the VM composed by axvm's own recipe on a scripted backend with
   ``allocate_ram=False``: every device built and placed, each disk opened and closed again,
   each netdev spec parsed and its addresses resolved (nothing bound, no TAP created);
3. the host: the backend that will run the VM, guest RAM against the host's memory and vCPUs
   against the backend's limit, each bound with the way to raise it.

Every problem is one line naming the file and key; all of a config's problems are reported
together. ``run`` calls this for every config before it builds any VM, so a bad config never
starts a vCPU and ``check`` accepts exactly what ``run`` accepts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from axvm import AxVM, AxVMCrateConfig, ConfigError, ScriptedBackend
from axvm.host import HostNetLink, LocalHost

from .backends import BackendEntry, select_backend
from .errors import UserError
from .loaders import ImagePlan, missing_images, plan_guest

if TYPE_CHECKING:
    from axdevice import RxResult
    from axvm.host import HostDisk

T = TypeVar("T")
MAX_RAM_ENV = "AXVISOR_MAX_RAM_MIB"
MEMINFO = Path("/proc/meminfo")
MIB = 1 << 20


@dataclass(frozen=True)
class VmPlan:
    """What run will build for one config, found sound."""

    config: AxVMCrateConfig
    backend: BackendEntry | None
    """None only for check on a host that cannot run the VM (said in a warning)."""
    images: ImagePlan
    ram_bytes: int
    warnings: tuple[str, ...]


def plan_vm(config: AxVMCrateConfig, missing_images_ok: bool = False, missing_backend_ok: bool = False) -> VmPlan:
    """Check ``config`` as run would build it; UserError with one line per problem.

    What check leaves to warnings, since the config can be right while this host is not ready
    for it: ``missing_images_ok``, image and disk files not fetched or made yet;
    ``missing_backend_ok``, no backend here that runs the VM (then vCPUs are not bounded).
    """
    problems: list[str] = []
    images = _collect(problems, lambda: plan_guest(config, missing_ok=missing_images_ok, keep=not missing_images_ok))
    problems += netdev_problems(config)
    device_warnings = _collect(problems, lambda: compose_dry(config, missing_images_ok)) or []
    backend_problems: list[str] = []
    entry = _collect(backend_problems, lambda: select_backend(config))
    problems += ram_problems(config)
    if entry is not None:
        problems += vcpu_problems(config, entry)
    if not missing_backend_ok:
        problems += backend_problems
    if problems or images is None or (entry is None and not missing_backend_ok):
        raise UserError("\n".join(problems))
    warnings = (
        *config.warnings,
        *(missing_images(config) if missing_images_ok else ()),
        *device_warnings,
        *backend_problems,
    )
    ram = sum(region.size for region in config.kernel.memory_regions)
    return VmPlan(config, entry, images, ram, tuple(dict.fromkeys(warnings)))


def _collect(problems: list[str], step: Callable[[], T]) -> T | None:
    """Run one step; its user errors join ``problems`` so one run reports them all."""
    try:
        return step()
    except (UserError, ConfigError) as error:
        problems.extend(str(error).splitlines())
        return None


def compose_dry(config: AxVMCrateConfig, missing_disk_ok: bool = False) -> list[str]:
    """Build the VM's devices as run does, with no guest RAM and no vCPU; its warnings."""
    host = ProbeHost(config, missing_disk_ok)
    vm = AxVM(config, ScriptedBackend(), host=host, allocate_ram=False)
    try:
        return [*(warning for warning in vm.warnings if warning not in config.warnings), *host.warnings]
    finally:
        vm.stop()  # closes the disks it opened


class ProbeHost(LocalHost):
    """Disks are opened as run opens them, image lock included (two virtio-blk devices of one
    config on one image, or a disk a running VM holds, are refused as run refuses them), and
    closed again with the dry VM. A netdev's addresses are resolved, but nothing is bound and no
    TAP interface is created.
    With ``missing_disk_ok``, a disk image not made yet is a warning, as images not fetched yet
    are for check."""

    def __init__(self, config: AxVMCrateConfig, missing_disk_ok: bool = False) -> None:
        self._origin = config.origin
        self._missing_disk_ok = missing_disk_ok
        self.warnings: list[str] = []

    def open_disk(self, path: Path, read_only: bool) -> HostDisk:
        if self._missing_disk_ok and not os.path.lexists(path):
            self.warnings.append(
                f"{self._origin}: kernel.disk_path: {path} does not exist; expected a disk image "
                "(make it, or fix the path)"
            )
            return _AbsentDisk(path.name, read_only)
        return super().open_disk(path, read_only)

    def open_netdev(self, spec: str) -> HostNetLink:
        from .net.dgram import resolve_udp  # sockets: only for a VM that has a netdev
        from .net.spec import UdpSpec, parse_netdev_spec

        try:
            parsed = parse_netdev_spec(spec)
        except ValueError:
            return _IdleLink()  # reported once, by netdev_problems
        if isinstance(parsed, UdpSpec):
            resolve_udp(parsed.local, parsed.remote)
        return _IdleLink()


class _AbsentDisk:
    """Stands for a disk image not made yet, in a dry VM only: one empty sector."""

    size_bytes = 512

    def __init__(self, serial: str, read_only: bool) -> None:
        self.serial = serial
        self.read_only = read_only

    def readv(self, offset: int, views: object) -> int:
        return 0

    def writev(self, offset: int, views: object) -> int:
        return 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _IdleLink:
    """A network link that carries nothing: what a dry VM's virtio-net is given."""

    def send(self, frame: bytes) -> None:
        pass

    def start(self, deliver: Callable[[bytes], RxResult]) -> None:
        pass

    def rx_ready(self) -> None:
        pass

    def close(self) -> None:
        pass


def netdev_problems(config: AxVMCrateConfig) -> list[str]:
    """One line per ``[devices] netdevs`` entry that is not a netdev spec (checked without opening it)."""
    if not config.devices.netdevs:
        return []
    from .net.spec import parse_netdev_spec  # sockets and TAP: only for a VM that has a netdev

    problems = []
    for name, spec in config.devices.netdevs:
        try:
            parse_netdev_spec(spec)
        except ValueError as error:
            problems.append(f"{config.origin}: devices.netdevs.{name}: {error}")
    return problems


def ram_limit() -> tuple[int, str] | None:
    """The most guest RAM one VM may have, in bytes, and what set it; None when unknown."""
    value = os.environ.get(MAX_RAM_ENV)
    if value is not None:
        if not value.strip().isdigit() or int(value) < 1:
            raise UserError(f"{MAX_RAM_ENV}={value!r}: expected a positive number of MiB (e.g. {MAX_RAM_ENV}=65536)")
        return int(value) * MIB, f"{MAX_RAM_ENV}={int(value)}"
    try:
        for line in MEMINFO.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name == "MemTotal" and rest.split()[1:] == ["kB"]:
                return int(rest.split()[0]) * 1024, "this host's memory (MemTotal in /proc/meminfo)"
    except (OSError, ValueError, IndexError):
        pass
    return None


def ram_problems(config: AxVMCrateConfig) -> list[str]:
    ram = sum(region.size for region in config.kernel.memory_regions)
    limit = ram_limit()
    if limit is None or ram <= limit[0]:
        return []
    bound, source = limit
    return [
        f"{config.origin}: kernel.memory_regions: {ram // MIB} MiB of guest RAM is more than the {bound // MIB} "
        f"MiB of {source}; expected less, or set {MAX_RAM_ENV} to allow more"
    ]


def vcpu_problems(config: AxVMCrateConfig, entry: BackendEntry) -> list[str]:
    limit = entry.max_vcpus()
    cpus = config.base.cpu_num
    if limit is None or cpus <= limit.count:
        return []
    return [
        f"{config.origin}: base.cpu_num: {cpus} vCPUs, but the {entry.kind.value} backend runs at most "
        f"{limit.count} in one VM ({limit.source}); expected cpu_num <= {limit.count}, or {limit.raise_by}"
    ]
