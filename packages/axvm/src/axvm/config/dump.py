"""``AxVMCrateConfig`` back to the plain TOML document axvmconfig reads.

Regions and devices are written in serde's array form, the form AxVisor's own configs use.
Paths are written relative to ``relative_to`` (the output file's folder) when they lie below it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .schema import AxVMCrateConfig, VMInterruptMode


def config_to_dict(config: AxVMCrateConfig, relative_to: Path | None = None) -> dict[str, Any]:
    def path(value: Path | None) -> str | None:
        if value is None:
            return None
        if relative_to is None:
            return str(value)
        return os.path.relpath(value, relative_to)

    base, kernel, devices = config.base, config.kernel, config.devices
    base_table: dict[str, Any] = {
        "id": base.id,
        "name": base.name,
        "vm_type": int(base.vm_type),
        "cpu_num": base.cpu_num,
        "arch": base.arch.value,
        "backend": base.backend.value,
    }
    if base.phys_cpu_ids is not None:
        base_table["phys_cpu_ids"] = list(base.phys_cpu_ids)
    if base.phys_cpu_sets is not None:
        base_table["phys_cpu_sets"] = list(base.phys_cpu_sets)
    kernel_table: dict[str, Any] = {
        "entry_point": kernel.entry_point,
        "image_location": kernel.image_location.value,
        "kernel_path": path(kernel.kernel_path),
        "kernel_load_addr": kernel.kernel_load_addr,
    }
    for image in ("bios", "dtb", "ramdisk"):
        image_path = getattr(kernel, f"{image}_path")
        if image_path is not None:
            kernel_table[f"{image}_path"] = path(image_path)
        load_addr = getattr(kernel, f"{image}_load_addr")
        if load_addr is not None:
            kernel_table[f"{image}_load_addr"] = load_addr
    if kernel.cmdline is not None:
        kernel_table["cmdline"] = kernel.cmdline
    if kernel.disk_path is not None:
        kernel_table["disk_path"] = path(kernel.disk_path)
    kernel_table["memory_regions"] = [
        [region.gpa, region.size, region.flags, int(region.map_type)] for region in kernel.memory_regions
    ]
    devices_table: dict[str, Any] = {
        "emu_devices": [
            [d.name, d.base_gpa, d.length, d.irq_id, d.emu_type, list(d.cfg_list)] for d in devices.emu_devices
        ],
        "passthrough_devices": [
            [d.name, d.base_gpa, d.base_hpa, d.length, d.irq_id] for d in devices.passthrough_devices
        ],
    }
    if devices.netdevs:
        devices_table["netdevs"] = dict(devices.netdevs)
    if devices.interrupt_mode is not VMInterruptMode.NO_IRQ:
        devices_table["interrupt_mode"] = devices.interrupt_mode.value
    return {"base": base_table, "kernel": kernel_table, "devices": devices_table}
