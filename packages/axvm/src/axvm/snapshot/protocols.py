"""What a snapshot needs from the parts it saves: small runtime-checkable protocols, satisfied
structurally by the backends' vCPUs and clocks, axdevice's devices and the machines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from ..machine import BootTarget


@runtime_checkable
class SnapshotVCpu(Protocol):
    """A backend vCPU whose full state can be saved as plain data and put back."""

    def save_state(self) -> dict[str, Any]: ...

    def load_state(self, state: Mapping[str, Any]) -> None: ...


@runtime_checkable
class SnapshotClock(Protocol):
    """A backend whose guest clock can be read and set (the soft riscv mtime)."""

    def save_clock(self) -> int: ...

    def restore_clock(self, ticks: int) -> None: ...


@runtime_checkable
class SnapshotMachine(Protocol):
    """A backend with VM-wide state of its own (KVM's in-kernel PIC/IOAPIC/PIT and kvmclock)."""

    def save_machine_state(self) -> dict[str, Any]: ...

    def restore_machine_state(self, saved: Mapping[str, Any]) -> None: ...


@runtime_checkable
class SnapshotPlatform(Protocol):
    """A machine with state of its own outside devices and vCPUs (the arm board's PSCI power
    states: a secondary vCPU still off must come back off)."""

    def save_platform_state(self) -> dict[str, Any]: ...

    def restore_platform_state(self, saved: Mapping[str, Any]) -> None: ...


@runtime_checkable
class RestorableDevice(Protocol):
    """A device with a saved state (a dataclass) that it can take back in place."""

    def state(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


@runtime_checkable
class RuntimeWiring(Protocol):
    """A machine that connects the backend to its devices at boot (inline MMIO, ecall hooks)
    apart from writing boot data, so a restored VM gets the wiring without the boot data."""

    def connect(self, target: BootTarget) -> None: ...
