"""Device counters of one VM, gathered for metrics from the counters each device already keeps.

Nothing here is on a hot path: the buses count unmapped accesses and device failures, each
virtqueue counts the chains it served and their bytes, the devices count their own events;
this module only reads them (from any thread, without the device lock: a counter read a moment
early is fine for metrics).
"""

from __future__ import annotations

from axdevice import BaseDeviceOps
from axdevice.virtio.mmio import VirtioMmioTransport
from axvm import DeviceBuses

from .vmtypes import DeviceCounters

DEVICE_COUNTERS = (
    "requests", "io_errors", "unsupported",  # virtio-blk
    "tx_frames", "tx_dropped", "tx_errors", "rx_frames", "rx_dropped",  # virtio-net
    "bytes_served", "source_failures",  # virtio-rng
    "bytes_sent", "lost_output_bytes", "bytes_received",  # virtio-console
)  # fmt: skip
"""Integer counters devices keep, reported per device where a device has them."""

VIRTIO_ERROR_COUNTERS = ("io_errors", "tx_errors", "source_failures")
"""Of those, the ones that count requests answered with an error."""


def _label(device: BaseDeviceOps) -> str:
    """A stable name for a device in metrics: its model and where it sits."""
    inner = device.device if isinstance(device, VirtioMmioTransport) else device
    prefix = "virtio-" if isinstance(device, VirtioMmioTransport) else ""
    return f"{prefix}{type(inner).__name__}@{device.address_range.start:#x}"


def device_counters(buses: DeviceBuses, console_tx: int, console_rx: int) -> DeviceCounters:
    """Counters summed over the VM's devices; ``console_tx/rx`` are the console hub's counts."""
    requests = nbytes = errors = 0
    per_device: dict[str, dict[str, int]] = {}
    for bus in (buses.mmio, buses.port, buses.sysreg):
        for device in bus.devices:
            if not isinstance(device, VirtioMmioTransport):
                continue
            inner = device.device
            counters = {
                "requests_served": sum(queue.chains_used for queue in device.queues),
                "bytes_in": sum(queue.bytes_in for queue in device.queues),
                "bytes_out": sum(queue.bytes_out for queue in device.queues),
                "queue_errors": device.queue_errors,
            }
            for name in DEVICE_COUNTERS:
                value = getattr(inner, name, None)
                if isinstance(value, int):
                    counters[name] = value
            requests += counters["requests_served"]
            nbytes += counters["bytes_in"] + counters["bytes_out"]
            errors += counters["queue_errors"] + sum(counters.get(name, 0) for name in VIRTIO_ERROR_COUNTERS)
            per_device[_label(device)] = counters
    unmapped = sum(bus.unhandled_reads + bus.unhandled_writes for bus in (buses.mmio, buses.port, buses.sysreg))
    failures = buses.device_errors()
    for name, count in failures.items():
        per_device.setdefault(name, {})["device_errors"] = count
    return DeviceCounters(
        uart_tx_bytes=console_tx,
        uart_rx_bytes=console_rx,
        virtio_requests=requests,
        virtio_bytes=nbytes,
        virtio_errors=errors,
        unmapped_accesses=unmapped,
        device_errors=sum(failures.values()),
        per_device=per_device,
    )
