"""What a VM takes from the host for its devices: disk files, network links, entropy.

Device models never open files or sockets themselves; the VM asks a ``HostResources`` for the
host side of each device. ``LocalHost`` serves disks from files and entropy from the kernel;
network links need the VMM's backends (TAP, UDP), which axvisor supplies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from axdevice.virtio.blk.backend import BlockBackend  # the protocol alone: the disk device loads with a disk

if TYPE_CHECKING:
    from axdevice import RxResult


class HostNetLink(Protocol):
    """The host end of a virtio-net device (axvisor's TAP and UDP backends)."""

    def send(self, frame: bytes) -> None: ...

    def start(self, deliver: Callable[[bytes], RxResult]) -> None: ...

    def rx_ready(self) -> None: ...

    def close(self) -> None: ...


class HostDisk(BlockBackend, Protocol):
    """A disk the VM opened for a virtio-blk device; the VM closes it when it stops."""

    def close(self) -> None: ...


class HostResources(Protocol):
    def open_disk(self, path: Path, read_only: bool) -> HostDisk: ...

    def open_netdev(self, spec: str) -> HostNetLink: ...

    def entropy(self, size: int) -> bytes: ...


class NoHostNetwork(ValueError):
    pass


class LocalHost:
    """Disks are files, entropy is os.urandom, and there is no network unless a VMM adds one."""

    def open_disk(self, path: Path, read_only: bool) -> HostDisk:
        from axdevice import RawFileBackend

        return RawFileBackend(path, read_only=read_only)

    def open_netdev(self, spec: str) -> HostNetLink:
        raise NoHostNetwork(f"no host network backend for {spec!r} here; run the VM with axvisor")

    def entropy(self, size: int) -> bytes:
        return os.urandom(size)
