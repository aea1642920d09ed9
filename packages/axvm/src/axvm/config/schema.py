"""The VM config, field for field AxVisor's axvmconfig (``AxVMCrateConfig``), as dataclasses.

Values here are already validated and normalised (paths absolute, enums parsed); ``load.py``
turns TOML into them and ``dump.py`` turns them back. Our extensions are marked: they are
optional, so a config written for AxVisor loads unchanged.

These dataclasses are the one list of the file's keys: a section is a field of
``AxVMCrateConfig`` (``SECTIONS``), its keys are the section's fields, and a record written as
an array (a memory region, a device) lists its items in field order. Field metadata says how
the dump writes a key (``OMIT_DEFAULT``, ``AS_TABLE``) and which fields are not in the file
(``NOT_IN_FILE``). The loader's known keys and the dump are derived from them.
"""

from __future__ import annotations

import enum
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

GUEST_PHYS_LIMIT = 1 << 48
"""The guest physical window a VM's address space manages (48 bits, as x86-64 and sv48): memory
regions and devices must lie below it."""

OMIT_DEFAULT: Mapping[str, Any] = MappingProxyType({"omit_default": True})
"""Field metadata: the dump leaves the key out while it holds its default (AxVisor's
``serde(default)`` keys, our extensions). Without it a key is written whenever it is not None."""
AS_TABLE: Mapping[str, Any] = MappingProxyType({"omit_default": True, "as_table": True})
"""Field metadata: ``(key, value)`` pairs written as a TOML table, left out while empty."""
NOT_IN_FILE: Mapping[str, Any] = MappingProxyType({"in_file": False})
"""Field metadata: held by the config object, never a key of its file."""


def accepted_only(why: str) -> Mapping[str, Any]:
    """Field metadata: a key of AxVisor's newest schema whose value this VMM does not interpret (a
    user-space VMM has no host devices to hand out). The loader accepts it with the warning
    ``why`` and keeps None, so the dump never writes it."""
    return MappingProxyType({"omit_default": True, "ignored_because": why})


def aliases(*names: str) -> Mapping[str, Any]:
    """Field metadata: other names the file may use for the key (an older spelling)."""
    return MappingProxyType({"aliases": names})


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
    LOONGARCH64 = "loongarch64"

    @classmethod
    def host(cls) -> Arch:
        machine = os.uname().machine.lower()  # not platform: its import compiles 9 regexes at start-up
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


class BootProtocol(enum.Enum):
    """``[kernel] boot_protocol``: how the guest enters its boot image. AxVisor's key and values
    (axvmconfig ``VMBootProtocol``: ``direct``, ``multiboot``, ``uefi``; unset means
    ``multiboot`` with ``enable_bios = true``, else ``direct``), plus ours for riscv64 firmware
    at ``bios_path``, which AxVisor does not run: OpenSBI's builds cannot be told apart from
    their bytes, so the config says which handoff the firmware expects.

    ``fw_jump`` (the default for riscv64 firmware): a0 = hart id, a1 = device tree, the next
    stage where the firmware was built to jump (OpenSBI fw_jump and fw_payload, which ignore
    a2). ``fw_dynamic``: OpenSBI fw_dynamic, which needs a2 pointing at a struct
    fw_dynamic_info naming ``kernel_load_addr`` in S mode. Our older key ``bios_protocol`` is
    read as this one."""

    DIRECT = "direct"
    MULTIBOOT = "multiboot"
    UEFI = "uefi"
    FW_JUMP = "fw_jump"
    FW_DYNAMIC = "fw_dynamic"


BiosProtocol = BootProtocol
"""The enum's name before it joined AxVisor's ``boot_protocol`` (the same class)."""

BOOT_PROTOCOL_ALIASES = {
    **{protocol.value: protocol for protocol in BootProtocol},
    "kernel": BootProtocol.DIRECT,  # AxVisor's serde aliases
    "bios": BootProtocol.MULTIBOOT,
    "axvm-bios": BootProtocol.MULTIBOOT,
    "efi": BootProtocol.UEFI,
}

BOOT_PROTOCOL_ARCHES = {
    BootProtocol.DIRECT: frozenset(Arch),
    BootProtocol.MULTIBOOT: frozenset({Arch.X86_64}),
    BootProtocol.UEFI: frozenset({Arch.X86_64, Arch.LOONGARCH64}),
    BootProtocol.FW_JUMP: frozenset({Arch.RISCV64}),
    BootProtocol.FW_DYNAMIC: frozenset({Arch.RISCV64}),
}
"""Where each protocol means something: AxVisor's boot-protocol matrix, and ours riscv64 only."""


class AddressSpacePolicy(enum.Enum):
    """AxVisor's ``[devices] address_space_policy``: ``virtualized`` (only what the config maps)
    or ``passthrough`` (the host's physical map, holes punched for the VM), which a user-space
    VMM cannot offer."""

    VIRTUALIZED = "virtualized"
    PASSTHROUGH = "passthrough"


ADDRESS_SPACE_POLICY_ALIASES = {
    "virtualized": AddressSpacePolicy.VIRTUALIZED,
    "virtual": AddressSpacePolicy.VIRTUALIZED,
    "passthrough": AddressSpacePolicy.PASSTHROUGH,
    "pt": AddressSpacePolicy.PASSTHROUGH,
}


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
    guest_type: None = field(
        default=None,
        metadata=accepted_only(
            "ignored: it says how the guest receives host devices, and a user-space VMM gives it emulated ones only"
        ),
    )
    """AxVisor's newest ``[base] guest_type`` (how the guest receives physical devices)."""


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
    boot_protocol: BootProtocol | None = field(default=None, metadata=aliases("bios_protocol"))
    enable_bios: bool = field(default=False, metadata=OMIT_DEFAULT)
    uefi_firmware_path: Path | None = None
    dtb_path: Path | None = None
    dtb_load_addr: int | None = None
    ramdisk_path: Path | None = None
    ramdisk_load_addr: int | None = None
    image_location: ImageLocation = ImageLocation.FS
    cmdline: str | None = None
    disk_path: Path | None = None

    @property
    def cmdline_bytes(self) -> bytes:
        """The command line as the guest reads it (UTF-8; empty when unset), the one encoding
        every loader and machine uses."""
        return (self.cmdline or "").encode()


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
class PassThroughPortConfig:
    """AxVisor's ``[devices] passthrough_ports`` entry: host I/O ports [base, base + length)."""

    base: int = 0
    length: int = 0


@dataclass(frozen=True)
class VMDevicesConfig:
    emu_devices: tuple[EmulatedDeviceConfig, ...] = ()
    passthrough_devices: tuple[PassThroughDeviceConfig, ...] = ()
    interrupt_mode: VMInterruptMode = field(default=VMInterruptMode.NO_IRQ, metadata=OMIT_DEFAULT)
    excluded_devices: tuple[tuple[str, ...], ...] = field(default=(), metadata=OMIT_DEFAULT)
    passthrough_addresses: tuple[PassThroughAddressConfig, ...] = field(default=(), metadata=OMIT_DEFAULT)
    netdevs: tuple[tuple[str, str], ...] = field(default=(), metadata=AS_TABLE)
    """Our extension ``[devices] netdevs = { net0 = "udp:..." }``: the host side of each
    virtio-net device, by its emu_devices name."""
    address_space_policy: AddressSpacePolicy = field(default=AddressSpacePolicy.VIRTUALIZED, metadata=OMIT_DEFAULT)
    passthrough_ports: tuple[PassThroughPortConfig, ...] = field(default=(), metadata=OMIT_DEFAULT)
    passthrough: None = field(
        default=None,
        metadata=accepted_only(
            "ignored: a user-space VMM cannot pass host devices through (the VM gets emulated devices only)"
        ),
    )
    """AxVisor's newest ``[devices] passthrough`` (physical devices handed to the guest)."""
    disabled: None = field(
        default=None,
        metadata=accepted_only("ignored: no host device is passed through here, so none needs keeping from the guest"),
    )
    """AxVisor's newest ``[devices] disabled`` (physical devices kept from the guest)."""


@dataclass(frozen=True)
class AxVMCrateConfig:
    """One VM's whole config; ``source`` is the file it came from (None when built in code)."""

    base: VMBaseConfig
    kernel: VMKernelConfig
    devices: VMDevicesConfig = field(default_factory=VMDevicesConfig)
    source: Path | None = field(default=None, metadata=NOT_IN_FILE)
    warnings: tuple[str, ...] = field(default=(), metadata=NOT_IN_FILE)
    arch_from: str = field(default="[base] arch", metadata=NOT_IN_FILE)
    """How ``base.arch`` was decided (``check`` prints it): the key, the kernel image's header,
    or AxVisor's naming of the file, its folders or its board."""

    @property
    def origin(self) -> str:
        """How messages name this config: its file, or <config> when it was built in code."""
        return str(self.source) if self.source is not None else "<config>"


def file_keys(record: type) -> tuple[str, ...]:
    """The keys of a config dataclass as its file spells them, in field order (the order of
    serde's array form)."""
    return tuple(f.name for f in fields(record) if f.metadata.get("in_file", True))


def key_aliases(record: type) -> dict[str, str]:
    """Each older spelling of a key of ``record``, mapped to the key."""
    return {alias: f.name for f in fields(record) for alias in f.metadata.get("aliases", ())}


def ignored_keys(record: type) -> dict[str, str]:
    """The keys of ``record`` read but not kept (``accepted_only``), each with its warning."""
    return {f.name: f.metadata["ignored_because"] for f in fields(record) if "ignored_because" in f.metadata}


SECTIONS: Mapping[str, type] = MappingProxyType(
    {name: typing.get_type_hints(AxVMCrateConfig)[name] for name in file_keys(AxVMCrateConfig)}
)
"""The file's sections, ``[base]``, ``[kernel]`` and ``[devices]``, and the dataclass each holds."""
