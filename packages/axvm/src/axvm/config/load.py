"""Reading and validating axvmconfig TOML into ``AxVMCrateConfig``.

Every problem is reported with the file and the dotted key (``kernel.memory_regions[1]``), and
all problems of a file are reported together. Features a user-space VMM cannot offer (host
passthrough, identity mapping of host memory) load with a warning instead of failing, so a
config written for AxVisor loads unchanged: every key AxVisor's schema has had (0.1 to its
2026 ``guest_type``, ``passthrough`` and ``disabled``) is read, the architecture AxVisor's
configs do not name is inferred (``arch.py``), and what AxVisor accepts that works differently
here (overlapping regions, passed-through virtio-mmio) is taken as ``compat.py`` says.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from axaddrspace import MappingFlags

from .arch import arch_of_image, arch_of_name, missing_arch_message
from .compat import merge_overlapping, virtio_stand_in
from .errors import ConfigError, ConfigProblem
from .fields import FieldReader, describe, key_part
from .schema import (
    ADDRESS_SPACE_POLICY_ALIASES,
    BOOT_PROTOCOL_ALIASES,
    BOOT_PROTOCOL_ARCHES,
    GUEST_PHYS_LIMIT,
    INTERRUPT_MODE_ALIASES,
    SECTIONS,
    AddressSpacePolicy,
    Arch,
    AxVMCrateConfig,
    BackendKind,
    BootProtocol,
    EmulatedDeviceConfig,
    ImageLocation,
    PassThroughAddressConfig,
    PassThroughDeviceConfig,
    PassThroughPortConfig,
    VMBaseConfig,
    VMDevicesConfig,
    VMInterruptMode,
    VMKernelConfig,
    VmMemConfig,
    VmMemMappingType,
    VMType,
    file_keys,
    ignored_keys,
    key_aliases,
)

PAGE_SIZE = 0x1000
MAX_VCPUS = 256
"""More vCPUs than any backend here can schedule; bounds thread creation from a config."""

KNOWN_KEYS = {section: set(file_keys(record)) | set(key_aliases(record)) for section, record in SECTIONS.items()}
"""Each section's keys (and their older spellings), from the schema's dataclasses."""
PORT_LIMIT = 0x1_0000
"""x86 I/O ports are 16 bits: a passthrough_ports range ends at or below this."""
MEM_FIELDS = file_keys(VmMemConfig)
EMU_FIELDS = file_keys(EmulatedDeviceConfig)
PASSTHROUGH_FIELDS = file_keys(PassThroughDeviceConfig)


def load_config(path: str | Path) -> AxVMCrateConfig:
    """Read one config file; raises ConfigError (one line per problem) on anything wrong."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(file, "", "no such file; expected a VM config (.toml)")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigProblem(file, "", "is a directory; expected a VM config file (.toml)")]) from None
    except OSError as error:
        raise ConfigError([ConfigProblem(file, "", f"cannot read: {error.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(file, "", "is not UTF-8 text; expected a VM config (.toml)")]) from None
    return parse_config(text, file)


def parse_config(text: str, file: Path | None = None) -> AxVMCrateConfig:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([ConfigProblem(file, "", f"invalid TOML: {error}")]) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError([ConfigProblem(file, "", "invalid TOML: values nested too deeply")]) from None
    return config_from_dict(document, file)


def config_from_dict(document: dict[str, Any], file: Path | None = None) -> AxVMCrateConfig:
    reader = FieldReader(file)
    base_dir = file.resolve().parent if file is not None else Path.cwd()
    for unknown in sorted(set(document) - set(KNOWN_KEYS)):
        reader.warn(key_part(unknown), "unknown section or key, ignored")
    tables = {name: _section(reader, document, name) for name in KNOWN_KEYS}
    for name, table in tables.items():
        for unknown in sorted(set(table or {}) - KNOWN_KEYS[name]):
            reader.warn(f"{name}.{key_part(unknown)}", "unknown key, ignored")
        for key, why in ignored_keys(SECTIONS[name]).items():
            if key in (table or {}):
                reader.warn(f"{name}.{key}", why)
    # A missing section is one problem, not one per key it should have held.
    base = _read_base(reader, tables["base"]) if tables["base"] is not None else None
    kernel = _read_kernel(reader, tables["kernel"], base_dir) if tables["kernel"] is not None else None
    devices = _read_devices(reader, tables["devices"] or {})
    if reader.problems or base is None or kernel is None or tables["base"] is None:
        raise ConfigError(reader.problems)
    arch, arch_from = _decide_arch(reader, tables["base"], base.arch, kernel, file)
    if arch is None:
        raise ConfigError(reader.problems)
    base = dataclasses.replace(base, arch=arch)
    _check_boot_protocol(reader, tables["kernel"] or {}, kernel, arch)
    devices = _with_stand_ins(reader, devices, kernel, arch)
    _check_layout(reader, kernel)
    if reader.problems:
        raise ConfigError(reader.problems)
    return AxVMCrateConfig(base, kernel, devices, file, tuple(reader.warnings), arch_from)


def _decide_arch(reader: FieldReader, table: dict[str, Any], given: Arch, kernel: VMKernelConfig,
                 file: Path | None) -> tuple[Arch | None, str]:
    """``[base] arch``, else what the kernel image or AxVisor's naming says (``arch.py``); a
    problem when nothing does. A kernel image of another architecture than the key's is a warning."""
    image, image_note = arch_of_image(kernel.kernel_path)
    if "arch" in table:
        if image is not None and image.arch is not given:
            reader.warn("base.arch", f"{given.value}, but the kernel image is {image.arch.value} "
                        f"({image.reason.removeprefix('from the kernel image (').rstrip(')')})")
        return given, "from [base] arch"
    choice = image or arch_of_name(file)
    if choice is None:
        reader.problem("base.arch", missing_arch_message(image_note, file))
        return None, ""
    return choice.arch, choice.reason


def _section(reader: FieldReader, document: dict[str, Any], name: str) -> dict[str, Any] | None:
    table = document.get(name)
    if table is None:
        if name != "devices":
            reader.problem(f"[{name}]", "missing section")
        return None
    if not isinstance(table, dict):
        reader.problem(name, f"expected a [{name}] table, got {describe(table)}")
        return None
    return table


def _read_base(reader: FieldReader, table: dict[str, Any]) -> VMBaseConfig | None:
    vm_id = reader.uint(table, "id", "base.id")
    name = reader.typed(table, "name", "base.name", str)
    vm_type_value = reader.uint(table, "vm_type", "base.vm_type", required=False)
    cpu_num = reader.uint(table, "cpu_num", "base.cpu_num", minimum=1, maximum=MAX_VCPUS)
    phys_cpu_ids = reader.int_list(table, "phys_cpu_ids", "base.phys_cpu_ids")
    phys_cpu_sets = reader.int_list(table, "phys_cpu_sets", "base.phys_cpu_sets")
    arch = reader.choice(table, "arch", "base.arch", {a.value: a for a in Arch}, Arch.X86_64)  # else inferred
    backend = reader.choice(table, "backend", "base.backend", {b.value: b for b in BackendKind}, BackendKind.AUTO)
    vm_type = VMType.RTOS  # AxVisor's VMType default
    if "vm_type" not in table and "guest_type" not in table:
        reader.warn("base.vm_type", "missing (AxVisor's configs before guest_type give it); using 1 (RTOS)")
    if vm_type_value is not None:
        if vm_type_value in VMType._value2member_map_:
            vm_type = VMType(vm_type_value)
        else:
            reader.warn("base.vm_type", f"unknown VM type {vm_type_value} (0 host, 1 RTOS, 2 Linux); using 1")
    if cpu_num is not None:
        for key, values in (("phys_cpu_ids", phys_cpu_ids), ("phys_cpu_sets", phys_cpu_sets)):
            if values is not None and len(values) != cpu_num:
                reader.problem(f"base.{key}", f"expected {cpu_num} entries (one per vCPU, cpu_num = {cpu_num}), "
                               f"got {len(values)}")
    if phys_cpu_sets is not None:
        for index, mask in enumerate(phys_cpu_sets):
            if mask <= 0:
                reader.problem(f"base.phys_cpu_sets[{index}]", f"expected a non-zero host CPU mask, got {mask}")
    if name is not None and not name.strip():
        reader.problem("base.name", "expected a non-empty name")
    if None in (vm_id, name, cpu_num):
        return None
    return VMBaseConfig(vm_id, name, vm_type, cpu_num, phys_cpu_ids, phys_cpu_sets, arch, backend)  # type: ignore[arg-type]


def _read_kernel(reader: FieldReader, table: dict[str, Any], base_dir: Path) -> VMKernelConfig | None:
    entry_point = reader.uint(table, "entry_point", "kernel.entry_point")
    kernel_path = reader.path(table, "kernel_path", "kernel.kernel_path", base_dir, required=True)
    kernel_load_addr = reader.uint(table, "kernel_load_addr", "kernel.kernel_load_addr")
    images: dict[str, Any] = {}
    for image in ("bios", "dtb", "ramdisk"):
        path = reader.path(table, f"{image}_path", f"kernel.{image}_path", base_dir)
        addr = reader.uint(table, f"{image}_load_addr", f"kernel.{image}_load_addr", required=False)
        images[f"{image}_path"], images[f"{image}_load_addr"] = path, addr
    if images["bios_path"] is not None and images["bios_load_addr"] is None:
        reader.problem("kernel.bios_load_addr", "missing; expected the guest address to load bios_path at")
    boot_protocol = _read_boot_protocol(reader, table)
    enable_bios = reader.typed(table, "enable_bios", "kernel.enable_bios", bool, required=False) or False
    uefi_firmware_path = reader.path(table, "uefi_firmware_path", "kernel.uefi_firmware_path", base_dir)
    location = reader.choice(table, "image_location", "kernel.image_location",
                             {loc.value: loc for loc in ImageLocation}, ImageLocation.FS)
    if location is ImageLocation.MEMORY:
        reader.warn("kernel.image_location", "'memory' (images linked into the hypervisor) is read from files here")
    cmdline = reader.typed(table, "cmdline", "kernel.cmdline", str, required=False)
    disk_path = reader.path(table, "disk_path", "kernel.disk_path", base_dir)
    regions = _read_memory_regions(reader, table)
    if None in (entry_point, kernel_path, kernel_load_addr, regions):
        return None
    return VMKernelConfig(entry_point, kernel_path, kernel_load_addr, regions,  # type: ignore[arg-type]
                          image_location=location, cmdline=cmdline, disk_path=disk_path,
                          boot_protocol=boot_protocol, enable_bios=enable_bios,
                          uefi_firmware_path=uefi_firmware_path, **images)


def _protocol_key(table: dict[str, Any]) -> str:
    """Which spelling of boot_protocol the file uses (``bios_protocol`` is our older one)."""
    return "bios_protocol" if "bios_protocol" in table and "boot_protocol" not in table else "boot_protocol"


def _read_boot_protocol(reader: FieldReader, table: dict[str, Any]) -> BootProtocol | None:
    if "bios_protocol" in table and "boot_protocol" in table:
        reader.problem("kernel.bios_protocol", "the older name of boot_protocol, which is also given; keep "
                       "only boot_protocol")
        return None
    key = _protocol_key(table)
    value = reader.typed(table, key, f"kernel.{key}", str, required=False)
    if value is None:
        return None
    if value not in BOOT_PROTOCOL_ALIASES:
        choices = ", ".join(repr(protocol.value) for protocol in BootProtocol)
        reader.problem(f"kernel.{key}", f"expected one of {choices}, got {value!r}")
        return None
    return BOOT_PROTOCOL_ALIASES[value]


def _check_boot_protocol(reader: FieldReader, table: dict[str, Any], kernel: VMKernelConfig, arch: Arch) -> None:
    """What boot_protocol cannot mean on ``arch`` is a problem; what it asks of firmware this VMM
    does not run is a warning. The riscv handoff never comes from the firmware's file name; a
    name that looks like OpenSBI's FW_DYNAMIC build only earns a hint."""
    key = f"kernel.{_protocol_key(table)}"
    protocol = kernel.boot_protocol
    if protocol is not None and arch not in BOOT_PROTOCOL_ARCHES[protocol]:
        valid = ", ".join(repr(p.value) for p in BootProtocol if arch in BOOT_PROTOCOL_ARCHES[p])
        reader.problem(key, f"{protocol.value!r} is not a boot protocol of {arch.value}; expected one of {valid}")
    elif protocol in (BootProtocol.FW_JUMP, BootProtocol.FW_DYNAMIC) and kernel.bios_path is None:
        reader.warn(key, "ignored: there is no bios_path (firmware) to hand over to")
    elif protocol is BootProtocol.UEFI:
        reader.warn(key, "'uefi': UEFI firmware is not run here; the kernel is entered as its image format says")
    if kernel.uefi_firmware_path is not None:
        reader.warn("kernel.uefi_firmware_path", "not loaded: UEFI firmware is not run here")
    bios = kernel.bios_path
    if protocol is None and arch is Arch.RISCV64 and bios is not None and "fw_dynamic" in bios.name:
        reader.warn(key, f"not set, so {bios.name} is entered as fw_jump (a0 = hart id, a1 = device tree); if it "
                    'is OpenSBI\'s FW_DYNAMIC build, set boot_protocol = "fw_dynamic"')


def _read_memory_regions(reader: FieldReader, table: dict[str, Any]) -> tuple[VmMemConfig, ...] | None:
    raw = reader.typed(table, "memory_regions", "kernel.memory_regions", list)
    if raw is None:
        return None
    if not raw:
        reader.problem("kernel.memory_regions", "expected at least one [gpa, size, flags, map_type] region")
        return None
    regions = []
    for index, item in enumerate(raw):
        key = f"kernel.memory_regions[{index}]"
        region = reader.record(item, key, MEM_FIELDS, 3, lambda **f: f)
        if region is not None:
            regions.append(_memory_region(reader, key, region))
    if len(regions) != len(raw) or None in regions:
        return None
    return merge_overlapping(reader, regions)  # type: ignore[arg-type]


def _memory_region(reader: FieldReader, key: str, fields: dict[str, Any]) -> VmMemConfig | None:
    values = {name: reader.check_type(fields.get(name, 0), f"{key}.{name}", int) for name in MEM_FIELDS}
    ints = [value for value in values.values() if value is not None]  # in MEM_FIELDS order
    if len(ints) != len(MEM_FIELDS):
        return None
    gpa, size, flags, map_type = ints
    ok = True
    if gpa < 0:
        reader.problem(f"{key}.gpa", f"expected a guest physical address >= 0, got {gpa:#x}")
        ok = False
    elif size <= 0 or gpa % PAGE_SIZE or size % PAGE_SIZE:
        reader.problem(key, f"expected a non-empty, 4 KiB aligned region, got gpa {gpa:#x} size {size:#x}")
        ok = False
    elif gpa + size > GUEST_PHYS_LIMIT:
        reader.problem(key, f"[{gpa:#x}, {gpa + size:#x}) ends past the guest physical window "
                       f"[0x0, {GUEST_PHYS_LIMIT:#x}) (48 bits); expected a region below {GUEST_PHYS_LIMIT:#x}")
        ok = False
    try:
        MappingFlags.parse(flags)
    except ValueError as error:
        reader.problem(f"{key}.flags", f"{error}; expected READ 0x1 | WRITE 0x2 | EXECUTE 0x4 | USER 0x8 "
                       "| DEVICE 0x10 | UNCACHED 0x20")
        ok = False
    if map_type not in VmMemMappingType._value2member_map_:
        reader.problem(f"{key}.map_type", f"expected 0 (alloc), 1 (identical) or 2 (reserved), got {map_type}")
        ok = False
    elif map_type == VmMemMappingType.MAP_IDENTICAL:
        reader.warn(f"{key}.map_type", "identity mapping of host memory needs a type-1 hypervisor; "
                    "allocated memory is used instead")
    return VmMemConfig(gpa, size, flags, VmMemMappingType(map_type)) if ok else None


def _read_devices(reader: FieldReader, table: dict[str, Any]) -> VMDevicesConfig:
    emu = _read_list(reader, table, "emu_devices", EMU_FIELDS, 6, _emu_device)
    passthrough = _read_list(reader, table, "passthrough_devices", PASSTHROUGH_FIELDS, 1, _passthrough_device)
    addresses = _read_list(reader, table, "passthrough_addresses", file_keys(PassThroughAddressConfig), 0,
                           _passthrough_address)
    if addresses:
        reader.warn("devices.passthrough_addresses", "ignored: host addresses cannot be passed through here")
    ports = _read_list(reader, table, "passthrough_ports", file_keys(PassThroughPortConfig), 0, _passthrough_ports)
    if ports:
        reader.warn("devices.passthrough_ports", "ignored: host I/O ports cannot be passed through here (ports "
                    "no device of the VM serves read all-ones)")
    policy = reader.choice(table, "address_space_policy", "devices.address_space_policy",
                           ADDRESS_SPACE_POLICY_ALIASES, AddressSpacePolicy.VIRTUALIZED)
    if policy is AddressSpacePolicy.PASSTHROUGH:
        reader.warn("devices.address_space_policy", "'passthrough' (the host's physical address map) is not "
                    "possible here; the VM sees only what its config maps")
    mode = reader.choice(table, "interrupt_mode", "devices.interrupt_mode", INTERRUPT_MODE_ALIASES,
                         VMInterruptMode.NO_IRQ)
    if mode is VMInterruptMode.PASSTHROUGH:
        reader.warn("devices.interrupt_mode", "'passthrough' is not possible here; interrupts are emulated")
    excluded_raw = reader.typed(table, "excluded_devices", "devices.excluded_devices", list, required=False) or []
    excluded = []
    for index, entry in enumerate(excluded_raw):
        path = f"devices.excluded_devices[{index}]"
        if not isinstance(entry, list) or not all(isinstance(item, str) for item in entry):
            reader.problem(path, f"expected an array of strings, got {describe(entry)}")
        else:
            excluded.append(tuple(entry))
    netdevs = reader.typed(table, "netdevs", "devices.netdevs", dict, required=False) or {}
    for name, spec in netdevs.items():
        if not isinstance(spec, str) or not spec:
            reader.problem(f"devices.netdevs.{key_part(name)}", f"expected a string such as \"tap:axtap0\" or "
                           f"\"udp:127.0.0.1:5000:127.0.0.1:5001\", got {describe(spec)}")
    netdev_pairs = tuple((name, spec) for name, spec in netdevs.items() if isinstance(spec, str) and spec)
    return VMDevicesConfig(tuple(emu), tuple(passthrough), mode, tuple(excluded), tuple(addresses),
                           netdevs=netdev_pairs, address_space_policy=policy, passthrough_ports=tuple(ports))


def _read_list(reader: FieldReader, table: dict[str, Any], key: str, names: tuple[str, ...], required: int,
               convert: Any) -> list[Any]:
    raw = reader.typed(table, key, f"devices.{key}", list, required=False) or []
    result = []
    for index, item in enumerate(raw):
        path = f"devices.{key}[{index}]"
        fields = reader.record(item, path, names, required, lambda **f: f)
        if fields is not None:
            value = convert(reader, path, fields)
            if value is not None:
                result.append(value)
    return result


def _checked_fields(reader: FieldReader, path: str, fields: dict[str, Any], kinds: dict[str, type]) -> dict | None:
    checked = {name: reader.check_type(fields[name], f"{path}.{name}", kind)
               for name, kind in kinds.items() if name in fields}
    return None if None in checked.values() else checked


def _emu_device(reader: FieldReader, path: str, fields: dict[str, Any]) -> EmulatedDeviceConfig | None:
    kinds = {"name": str, "base_gpa": int, "length": int, "irq_id": int, "emu_type": int, "cfg_list": list}
    checked = _checked_fields(reader, path, fields, kinds)
    if checked is None:
        return None
    cfg = [reader.check_type(item, f"{path}.cfg_list[{i}]", int) for i, item in enumerate(checked["cfg_list"])]
    if None in cfg:
        return None
    if checked["length"] <= 0 or checked["base_gpa"] < 0 or checked["irq_id"] < 0:
        reader.problem(path, "expected base_gpa >= 0, length > 0 and irq_id >= 0")
        return None
    if checked["base_gpa"] + checked["length"] > GUEST_PHYS_LIMIT:
        reader.problem(f"{path}.length", f"[{checked['base_gpa']:#x}, {checked['base_gpa'] + checked['length']:#x}) "
                       f"ends past the guest physical window [0x0, {GUEST_PHYS_LIMIT:#x}); expected a device "
                       "range below it (length is the size of its registers, e.g. 0x1000)")
        return None
    return EmulatedDeviceConfig(**{**checked, "cfg_list": tuple(cfg)})


def _passthrough_device(reader: FieldReader, path: str, fields: dict[str, Any]) -> PassThroughDeviceConfig | None:
    kinds = {"name": str, "base_gpa": int, "base_hpa": int, "length": int, "irq_id": int}
    checked = _checked_fields(reader, path, fields, kinds)
    return None if checked is None else PassThroughDeviceConfig(**checked)


def _passthrough_address(reader: FieldReader, path: str, fields: dict[str, Any]) -> PassThroughAddressConfig | None:
    checked = _checked_fields(reader, path, fields, {"base_gpa": int, "length": int})
    return None if checked is None else PassThroughAddressConfig(**checked)


def _passthrough_ports(reader: FieldReader, path: str, fields: dict[str, Any]) -> PassThroughPortConfig | None:
    """AxVisor refuses an empty range and one past port 0xffff; so does this."""
    checked = _checked_fields(reader, path, fields, {"base": int, "length": int})
    if checked is None:
        return None
    base, length = checked.get("base", 0), checked.get("length", 0)
    if not (0 <= base and 0 < length and base + length <= PORT_LIMIT):
        reader.problem(path, f"expected a non-empty range of I/O ports within 0x0..0xffff, got base {base:#x} "
                       f"length {length:#x}")
        return None
    return PassThroughPortConfig(base, length)


def _with_stand_ins(
    reader: FieldReader, devices: VMDevicesConfig, kernel: VMKernelConfig, arch: Arch
) -> VMDevicesConfig:
    """A passed-through virtio-mmio transport becomes an emulated virtio-blk when there is a disk
    (``compat.py``); every other passed-through device is ignored, with a warning each."""
    stand_in = (virtio_stand_in(reader, arch, devices.passthrough_devices, devices.emu_devices)
                if kernel.disk_path is not None else None)
    for index, device in enumerate(devices.passthrough_devices):
        if stand_in is None or index != stand_in[0]:
            reader.warn(f"devices.passthrough_devices[{index}]", f"{device.name!r} ignored: a user-space VMM cannot "
                        "pass host devices through (the VM gets emulated devices only)")
    if stand_in is None:
        return devices
    return dataclasses.replace(devices, emu_devices=(*devices.emu_devices, stand_in[1]))


def _check_layout(reader: FieldReader, kernel: VMKernelConfig) -> None:
    """Cross-field rules: images land in RAM (regions no longer overlap: merged when read)."""

    def in_ram(addr: int) -> bool:
        return any(region.gpa <= addr < region.end for region in kernel.memory_regions)

    for key in ("kernel_load_addr", "bios_load_addr", "dtb_load_addr", "ramdisk_load_addr"):
        addr = getattr(kernel, key)
        if addr is not None and not in_ram(addr):
            reader.problem(f"kernel.{key}", f"{addr:#x} is outside every memory region; expected an address in RAM")
    if not in_ram(kernel.entry_point) and kernel.bios_path is None:
        reader.warn("kernel.entry_point", f"{kernel.entry_point:#x} is outside every memory region")
