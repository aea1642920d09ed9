"""What AxVisor's configs say that a user-space VMM takes differently, each with a warning.

- Memory regions that overlap (AxVisor maps them one after the other: its x86 Linux config maps
  an identity region over 0..128 MiB and then a scratch region over its first MiB; a board
  config lists one region three times) become one region here, since guest RAM is one
  allocation per region.
- QEMU's virtio-mmio transports, which AxVisor's Linux configs pass through from the QEMU it
  runs in, become an emulated virtio-blk on ``kernel.disk_path`` at the first such address, at
  the interrupt QEMU's ``virt`` board gives that slot.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from axdevice import EmuDeviceType

from .fields import FieldReader
from .schema import Arch, EmulatedDeviceConfig, PassThroughDeviceConfig, VmMemConfig

QEMU_VIRT_VIRTIO_MMIO = {
    Arch.RISCV64: (0x1000_1000, 0x1000, 8, 1),  # hw/riscv/virt.c: VIRT_VIRTIO, VIRTIO_IRQ 1..8
    Arch.AARCH64: (0x0A00_0000, 0x200, 32, 16),  # hw/arm/virt.c: VIRT_MMIO, SPIs from IRQ 16
}
"""QEMU virt's virtio-mmio slots per architecture: base, stride, count, first interrupt (riscv: a
PLIC source; arm: an SPI number, as the device tree writes it)."""
_UNIT_ADDRESS = re.compile(r"@([0-9a-fA-F]+)$")


def merge_overlapping(reader: FieldReader, regions: Sequence[VmMemConfig]) -> tuple[VmMemConfig, ...]:
    """``regions`` with each group of overlapping ones made one region spanning them all (flags
    joined, the first-listed one's map_type), in the order of each group's first region."""
    ordered = sorted(range(len(regions)), key=lambda i: (regions[i].gpa, i))
    groups: list[list[int]] = []
    group_end = 0
    for index in ordered:
        region = regions[index]
        if groups and region.gpa < group_end:
            groups[-1].append(index)
            group_end = max(group_end, region.end)
        else:
            groups.append([index])
            group_end = region.end
    merged = []
    for group in sorted(groups, key=min):
        first = regions[min(group)]
        gpa, end = min(regions[i].gpa for i in group), max(regions[i].end for i in group)
        flags = 0
        for i in group:
            flags |= regions[i].flags
        for i in sorted(group)[1:]:
            region = regions[i]
            reader.warn(
                f"kernel.memory_regions[{i}]",
                f"[{region.gpa:#x}, {region.end:#x}) overlaps memory_regions[{min(group)}] "
                f"[{first.gpa:#x}, {first.end:#x}); merged into one region [{gpa:#x}, {end:#x}) "
                f"with flags {flags:#x} (AxVisor maps overlapping regions in turn)",
            )
        merged.append(VmMemConfig(gpa, end - gpa, flags, first.map_type))
    return tuple(merged)


def virtio_stand_in(
    reader: FieldReader, arch: Arch, passthrough: Sequence[PassThroughDeviceConfig], emu: Sequence[EmulatedDeviceConfig]
) -> tuple[int, EmulatedDeviceConfig] | None:
    """The emulated virtio-blk standing in for the first passed-through virtio-mmio transport
    (with that entry's index), or None when there is none, the arch has no virtio-mmio slots here, or the config already
    has a virtio-blk. Only called when ``kernel.disk_path`` names a disk."""
    if any(device.emu_type == EmuDeviceType.VirtioBlk for device in emu) or arch not in QEMU_VIRT_VIRTIO_MMIO:
        return None
    base, stride, count, first_irq = QEMU_VIRT_VIRTIO_MMIO[arch]
    for index, device in enumerate(passthrough):
        address = _address(device)
        if "virtio" not in device.name.lower() or address is None:
            continue
        slot, offset = divmod(address - base, stride)
        if not 0 <= slot < count or offset:
            continue
        reader.warn(
            f"devices.passthrough_devices[{index}]",
            f"{device.name!r} (QEMU's virtio-mmio slot {slot} at {address:#x}) is emulated here: a "
            f"virtio-blk on kernel.disk_path at {address:#x}, irq {first_irq + slot}",
        )
        return index, EmulatedDeviceConfig(device.name, address, stride, first_irq + slot, int(EmuDeviceType.VirtioBlk))
    return None


def _address(device: PassThroughDeviceConfig) -> int | None:
    """Where the device sits in the guest: its base_gpa, or for AxVisor's device-tree discovery
    entries (``["/soc/virtio_mmio@10001000"]``) the node's unit address."""
    if device.base_gpa:
        return device.base_gpa
    match = _UNIT_ADDRESS.search(device.name)
    return int(match.group(1), 16) if match else None
