"""The VM config, field for field AxVisor's axvmconfig (``AxVMCrateConfig``), as dataclasses.

Values here are already validated and normalised (paths absolute, enums parsed); ``load.py``
turns TOML into them and ``dump.py`` turns them back. Our extensions are marked: they are
optional, so a config written for AxVisor loads unchanged.
"""

from __future__ import annotations

import enum
import platform
from dataclasses import dataclass, field
from pathlib import Path

GUEST_PHYS_LIMIT = 1 << 48
"""The guest physical window a VM's address space manages (48 bits, as x86-64 and sv48): memory
regions and devices must lie below it."""


class VMType(enum.IntEnum):
    HOST_VM = 0
    RTOS = 1
    LINUX = 2


class VmMemMappingType(enum.IntEnum):
    MAP_ALLOC = 0
    MAP_IDENTICAL = 1
    MAP_RESERVED = 2


class VMInterruptMode(enum.Enum):
    NO_IRQ = "no_irq"
    EMULATED = "emu"
    PASSTHROUGH = "passthrough"


INTERRUPT_MODE_ALIASES = {
    "no_irq": VMInterruptMode.NO_IRQ,
    "no": VMInterruptMode.NO_IRQ,
    "none": VMInterruptMode.NO_IRQ,
    "emu": VMInterruptMode.EMULATED,
    "emulated": VMInterruptMode.EMULATED,
    "passthrough": VMInterruptMode.PASSTHROUGH,
    "pt": VMInterruptMode.PASSTHROUGH,
}


class Arch(enum.Enum):
    """Our extension ``[base] arch``: the guest's instruction set."""

    X86_64 = "x86_64"
    RISCV64 = "riscv64"
    AARCH64 = "aarch64"

    @classmethod
    def host(cls) -> Arch:
        machine = platform.machine().lower()
        aliases = {"amd64": "x86_64", "arm64": "aarch64"}
        return cls(aliases.get(machine, machine))


class BackendKind(enum.Enum):
    """Our extension ``[base] backend``: which execution backend runs the vCPUs."""

    AUTO = "auto"
    KVM = "kvm"
    SOFT = "soft"


class ImageLocation(enum.Enum):
    FS = "fs"
    MEMORY = "memory"


@dataclass(frozen=True)
class VMBaseConfig:
    id: int
    name: str
    vm_type: VMType
    cpu_num: int
    phys_cpu_ids: tuple[int, ...] | None = None
    phys_cpu_sets: tuple[int, ...] | None = None
    arch: Arch = field(default_factory=Arch.host)
    backend: BackendKind = BackendKind.AUTO


@dataclass(frozen=True)
class VmMemConfig:
    gpa: int
    size: int
    flags: int
    map_type: VmMemMappingType = VmMemMappingType.MAP_ALLOC

    @property
    def end(self) -> int:
        return self.gpa + self.size


@dataclass(frozen=True)
class VMKernelConfig:
    entry_point: int
    kernel_path: Path
    kernel_load_addr: int
    memory_regions: tuple[VmMemConfig, ...]
    bios_path: Path | None = None
    bios_load_addr: int | None = None
    dtb_path: Path | None = None
    dtb_load_addr: int | None = None
    ramdisk_path: Path | None = None
    ramdisk_load_addr: int | None = None
    image_location: ImageLocation = ImageLocation.FS
    cmdline: str | None = None
    disk_path: Path | None = None


@dataclass(frozen=True)
class EmulatedDeviceConfig:
    name: str
    base_gpa: int
    length: int
    irq_id: int
    emu_type: int
    cfg_list: tuple[int, ...] = ()


@dataclass(frozen=True)
class PassThroughDeviceConfig:
    name: str
    base_gpa: int = 0
    base_hpa: int = 0
    length: int = 0
    irq_id: int = 0


@dataclass(frozen=True)
class PassThroughAddressConfig:
    base_gpa: int = 0
    length: int = 0


@dataclass(frozen=True)
class VMDevicesConfig:
    emu_devices: tuple[EmulatedDeviceConfig, ...] = ()
    passthrough_devices: tuple[PassThroughDeviceConfig, ...] = ()
    interrupt_mode: VMInterruptMode = VMInterruptMode.NO_IRQ
    excluded_devices: tuple[tuple[str, ...], ...] = ()
    passthrough_addresses: tuple[PassThroughAddressConfig, ...] = ()
    netdevs: tuple[tuple[str, str], ...] = ()
    """Our extension ``[devices] netdevs = { net0 = "udp:..." }``: the host side of each
    virtio-net device, by its emu_devices name."""


@dataclass(frozen=True)
class AxVMCrateConfig:
    """One VM's whole config; ``source`` is the file it came from (None when built in code)."""

    base: VMBaseConfig
    kernel: VMKernelConfig
    devices: VMDevicesConfig = field(default_factory=VMDevicesConfig)
    source: Path | None = None
    warnings: tuple[str, ...] = ()

    @property
    def origin(self) -> str:
        """How messages name this config: its file, or <config> when it was built in code."""
        return str(self.source) if self.source is not None else "<config>"
