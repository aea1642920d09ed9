"""The JSON shapes of the management API, both ways: the server writes the manager's snapshots
with ``*_to_json``, the client reads them back into the same dataclasses with ``*_from_json``.

One module for both directions so that the server, ``axvisor.client`` and the OpenAPI document
(``openapi.json``, whose schemas a test compares with these) cannot drift apart. States are
AxVisor's names, capitalised: ``Ready``, ``Running``, ``Pausing``, ``Paused``, ``Stopping``,
``Stopped``, ``Failed``.
"""

from __future__ import annotations

from typing import Any

from axvm import VMState

from ..manager import BootTimes, DeviceCounters, Translation, VcpuMetrics, VmInfo, VmMetrics


def state_name(state: VMState) -> str:
    return state.name.title()


def state_from_name(name: str) -> VMState:
    try:
        return VMState[str(name).upper()]
    except KeyError:
        raise ValueError(f"unknown VM state {name!r}") from None


def info_to_json(info: VmInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "state": state_name(info.state),
        "arch": info.arch,
        "backend": info.backend,
        "cpus": info.cpus,
        "memory_bytes": info.memory_bytes,
        "config_path": info.config_path,
        "uptime_s": info.uptime_s,
        "resets": info.resets,
        "exit_code": info.exit_code,
        "reason": info.reason,
        "log_path": info.log_path,
    }


def info_from_json(data: dict[str, Any]) -> VmInfo:
    return VmInfo(
        id=int(data["id"]),
        name=str(data["name"]),
        state=state_from_name(data["state"]),
        arch=str(data["arch"]),
        backend=str(data["backend"]),
        cpus=int(data["cpus"]),
        memory_bytes=int(data["memory_bytes"]),
        config_path=data.get("config_path"),
        uptime_s=float(data["uptime_s"]),
        resets=int(data["resets"]),
        exit_code=data.get("exit_code"),
        reason=data.get("reason"),
        log_path=data.get("log_path"),
    )


def metrics_to_json(metrics: VmMetrics) -> dict[str, Any]:
    boot, devices = metrics.boot, metrics.devices
    return {
        "id": metrics.id,
        "name": metrics.name,
        "state": state_name(metrics.state),
        "uptime_s": metrics.uptime_s,
        "paused_s": metrics.paused_s,
        "host_cpu_s": metrics.host_cpu_s,
        "resets": metrics.resets,
        "boot": {
            "start_to_first_instruction_s": boot.start_to_first_instruction_s,
            "start_to_first_console_byte_s": boot.start_to_first_console_byte_s,
            "process_to_first_instruction_s": boot.process_to_first_instruction_s,
            "process_to_first_console_byte_s": boot.process_to_first_console_byte_s,
        },
        "vcpus": [{"vcpu": v.vcpu, "exits": dict(v.exits), "host_cpu_s": v.host_cpu_s} for v in metrics.vcpus],
        "devices": {
            "uart_tx_bytes": devices.uart_tx_bytes,
            "uart_rx_bytes": devices.uart_rx_bytes,
            "virtio_requests": devices.virtio_requests,
            "virtio_bytes": devices.virtio_bytes,
            "virtio_errors": devices.virtio_errors,
            "unmapped_accesses": devices.unmapped_accesses,
            "device_errors": devices.device_errors,
            "per_device": {name: dict(counters) for name, counters in devices.per_device.items()},
        },
    }


def metrics_from_json(data: dict[str, Any]) -> VmMetrics:
    boot, devices = data["boot"], data["devices"]
    return VmMetrics(
        id=int(data["id"]),
        name=str(data["name"]),
        state=state_from_name(data["state"]),
        uptime_s=float(data["uptime_s"]),
        paused_s=float(data["paused_s"]),
        boot=BootTimes(
            boot.get("start_to_first_instruction_s"),
            boot.get("start_to_first_console_byte_s"),
            boot.get("process_to_first_instruction_s"),
            boot.get("process_to_first_console_byte_s"),
        ),
        vcpus=tuple(
            VcpuMetrics(int(v["vcpu"]), {str(k): int(n) for k, n in v["exits"].items()}, float(v["host_cpu_s"]))
            for v in data["vcpus"]
        ),
        devices=DeviceCounters(
            uart_tx_bytes=int(devices["uart_tx_bytes"]),
            uart_rx_bytes=int(devices["uart_rx_bytes"]),
            virtio_requests=int(devices["virtio_requests"]),
            virtio_bytes=int(devices["virtio_bytes"]),
            virtio_errors=int(devices["virtio_errors"]),
            unmapped_accesses=int(devices["unmapped_accesses"]),
            device_errors=int(devices["device_errors"]),
            per_device={
                str(name): {str(k): int(n) for k, n in counters.items()}
                for name, counters in devices.get("per_device", {}).items()
            },
        ),
        host_cpu_s=float(data["host_cpu_s"]),
        resets=int(data["resets"]),
    )


def translation_to_json(translation: Translation) -> dict[str, Any]:
    return {
        "gva": translation.gva,
        "gpa": translation.gpa,
        "mode": translation.mode,
        "levels": [[address, value] for address, value in translation.levels],
        "page_size": translation.page_size,
        "writable": translation.writable,
        "user": translation.user,
        "executable": translation.executable,
        "fault": translation.fault,
    }


def translation_from_json(data: dict[str, Any]) -> Translation:
    return Translation(
        gva=int(data["gva"]),
        gpa=None if data.get("gpa") is None else int(data["gpa"]),
        mode=str(data["mode"]),
        levels=tuple((int(a), int(v)) for a, v in data["levels"]),
        page_size=int(data["page_size"]),
        writable=bool(data["writable"]),
        user=bool(data["user"]),
        executable=bool(data["executable"]),
        fault=data.get("fault"),
    )
