"""Virtio queue notifications served beside the vCPUs, not through their exits.

A virtio-mmio driver kicks a queue by writing the queue's index to QueueNotify (virtio 1.2,
4.2.2). Where the backend can finish such a write itself and tell a host thread of its own
(``WriteEvents``: KVM's ioeventfd), each queue's (address, index) pair is registered with it,
and the callback makes the very write the exit path would have made (``DeviceManager.write``:
the device lock, then the MMIO bus, so the transport's own checks and the bus's handling of a
failing device apply as before). The vCPU never leaves KVM for a notify; the device serves the
queue on the backend's thread and raises its interrupt from there. A write of another value
(a queue the device does not have) still exits and is handled, and dropped, by the transport.
"""

from __future__ import annotations

from functools import partial

from axaddrspace import AccessWidth

from ...capabilities import WriteEvents
from ...device_manager import BusKind, DeviceManager


def notify_through_backend(devices: DeviceManager, events: WriteEvents) -> int:
    """Register every queue of every virtio-mmio device on the MMIO bus; returns how many."""
    registered = 0
    for device in devices.bus(BusKind.MMIO).devices:
        if not device.emu_type.is_virtio:
            continue
        from axdevice.virtio.mmio import QUEUE_NOTIFY, VirtioMmioTransport  # only VMs with virtio load it

        if not isinstance(device, VirtioMmioTransport):
            continue
        addr = device.base + QUEUE_NOTIFY
        for index in range(len(device.queues)):
            kick = partial(devices.write, addr, AccessWidth.DWORD, index)
            events.notify_on_write(addr, AccessWidth.DWORD, index, kick)
            registered += 1
    return registered
