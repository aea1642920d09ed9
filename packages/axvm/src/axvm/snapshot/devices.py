"""Device state in a snapshot: every device with a state on the VM's buses, keyed by bus and
base address, serialized by axdevice's own state serializer (devices never import it).

A virtio-mmio transport is saved with its device (``transport`` and ``device`` states); a UART
adapter with its UART. In-flight requests: the virtio devices here complete every chain while
handling the guest's notify, under the device lock, so at a pause nothing is in flight; what
the queues have consumed and published is the transport's queue state (next_avail, next_used,
signalled_used), and the rings themselves are guest RAM.
"""

from __future__ import annotations

from typing import Any

from axdevice import BaseDeviceOps, GicDistributorWindow, Uart16550Mmio, Uart16550Port
from axdevice.virtio import VirtioMmioTransport
from axdevice.virtio.serialize import from_dict, to_dict

from ..dispatch import DeviceBuses
from .errors import SnapshotError
from .protocols import RestorableDevice


def _devices(buses: DeviceBuses) -> dict[str, BaseDeviceOps]:
    found: dict[str, BaseDeviceOps] = {}
    for bus_name, bus in (("mmio", buses.mmio), ("port", buses.port), ("sysreg", buses.sysreg)):
        for device in bus.devices:
            found[f"{bus_name}@{device.address_range.start:#x}"] = device
    return found


def _inner(device: BaseDeviceOps) -> object:
    """What holds the state: the UART behind a bus adapter, the GIC behind its distributor's
    window (saved once: its CPU interface window is the same GIC), else the device itself."""
    if isinstance(device, Uart16550Mmio | Uart16550Port):
        return device.uart
    if isinstance(device, GicDistributorWindow):
        return device.gic
    return device


def capture_devices(buses: DeviceBuses) -> dict[str, dict[str, Any]]:
    """Every stateful device's state as plain data (call it with the device lock held)."""
    saved: dict[str, dict[str, Any]] = {}
    for key, device in _devices(buses).items():
        if isinstance(device, VirtioMmioTransport):
            saved[key] = {
                "type": type(device.device).__name__,
                "transport": to_dict(device.state()),
                "device": to_dict(device.device.state()),
            }
            continue
        inner = _inner(device)
        if isinstance(inner, RestorableDevice):
            saved[key] = {"type": type(inner).__name__, "state": to_dict(inner.state())}
    return saved


def restore_devices(buses: DeviceBuses, saved: dict[str, Any]) -> None:
    """Put every saved state back into the VM's devices; SnapshotError naming the device for a
    device missing on either side or a state it refuses."""
    live = _devices(buses)
    for key, device in live.items():
        inner = device.device if isinstance(device, VirtioMmioTransport) else _inner(device)
        stateful = isinstance(device, VirtioMmioTransport) or isinstance(inner, RestorableDevice)
        if not stateful:
            continue
        entry = saved.get(key)
        name = type(inner).__name__
        if not isinstance(entry, dict):
            raise SnapshotError(f"devices.json has no state for the {name} at {key}")
        if entry.get("type") != name:
            raise SnapshotError(f"devices.json: {key} holds a {entry.get('type')!r}, this VM has a {name} there")
        try:
            if isinstance(device, VirtioMmioTransport):
                target: Any = device.device
                target.restore(from_dict(type(target.state()), entry["device"]))
                device.restore(from_dict(type(device.state()), entry["transport"]))
            else:
                assert isinstance(inner, RestorableDevice)
                inner.restore(from_dict(type(inner.state()), entry["state"]))
        except (ValueError, TypeError, KeyError) as error:
            raise SnapshotError(f"devices.json: the {name} at {key}: {error}") from None
    extra = sorted(set(saved) - set(live))
    if extra:
        raise SnapshotError(f"devices.json has state for devices this VM does not have: {', '.join(extra)}")
