"""Reading and validating axvmconfig TOML into ``AxVMCrateConfig``.

Every problem is reported with the file and the dotted key (``kernel.memory_regions[1]``), and
all problems of a file are reported together. Features a user-space VMM cannot offer (host
passthrough, identity mapping of host memory) load with a warning instead of failing, so a
config written for AxVisor loads unchanged.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any

from axaddrspace import MappingFlags

from .errors import ConfigError, ConfigProblem
from .fields import FieldReader, describe, key_part
from .schema import (
    GUEST_PHYS_LIMIT,
    INTERRUPT_MODE_ALIASES,
    SECTIONS,
    Arch,
    AxVMCrateConfig,
    BackendKind,
    BiosProtocol,
    EmulatedDeviceConfig,
    ImageLocation,
    PassThroughAddressConfig,
    PassThroughDeviceConfig,
    VMBaseConfig,
    VMDevicesConfig,
    VMInterruptMode,
    VMKernelConfig,
    VmMemConfig,
    VmMemMappingType,
    VMType,
    file_keys,
)

PAGE_SIZE = 0x1000
MAX_VCPUS = 256
"""More vCPUs than any backend here can schedule; bounds thread creation from a config."""

KNOWN_KEYS = {section: set(file_keys(record)) for section, record in SECTIONS.items()}
"""Each section's keys, from the schema's dataclasses."""
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
    # A missing section is one problem, not one per key it should have held.
    base = _read_base(reader, tables["base"]) if tables["base"] is not None else None
    kernel = _read_kernel(reader, tables["kernel"], base_dir) if tables["kernel"] is not None else None
    devices = _read_devices(reader, tables["devices"] or {})
    if reader.problems or base is None or kernel is None:
        raise ConfigError(reader.problems)
    _check_layout(reader, kernel)
    if reader.problems:
        raise ConfigError(reader.problems)
    return AxVMCrateConfig(base, kernel, devices, file, tuple(reader.warnings))


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
    vm_type_value = reader.uint(table, "vm_type", "base.vm_type")
    cpu_num = reader.uint(table, "cpu_num", "base.cpu_num", minimum=1, maximum=MAX_VCPUS)
    phys_cpu_ids = reader.int_list(table, "phys_cpu_ids", "base.phys_cpu_ids")
    phys_cpu_sets = reader.int_list(table, "phys_cpu_sets", "base.phys_cpu_sets")
    arch = reader.choice(table, "arch", "base.arch", {a.value: a for a in Arch}, Arch.host())
    backend = reader.choice(table, "backend", "base.backend", {b.value: b for b in BackendKind}, BackendKind.AUTO)
    vm_type = VMType.RTOS
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
    bios_protocol = reader.choice(table, "bios_protocol", "kernel.bios_protocol",
                                  {p.value: p for p in BiosProtocol}, BiosProtocol.FW_JUMP)
    _check_bios_protocol(reader, table, images["bios_path"])
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
                          bios_protocol=bios_protocol, **images)


def _check_bios_protocol(reader: FieldReader, table: dict[str, Any], bios_path: Path | None) -> None:
    """Warn where bios_protocol cannot mean what the config may intend. The choice itself never
    comes from the file name; a name that looks like OpenSBI's FW_DYNAMIC build only earns a hint."""
    if "bios_protocol" in table:
        if bios_path is None:
            reader.warn("kernel.bios_protocol", "ignored: there is no bios_path (firmware) to hand over to")
    elif bios_path is not None and "fw_dynamic" in bios_path.name:
        reader.warn("kernel.bios_protocol", f"not set, so {bios_path.name} is entered as fw_jump (a0 = hart id, "
                    'a1 = device tree); if it is OpenSBI\'s FW_DYNAMIC build, set bios_protocol = "fw_dynamic"')


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
    return tuple(regions)  # type: ignore[arg-type]


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
    for index, device in enumerate(passthrough):
        reader.warn(f"devices.passthrough_devices[{index}]", f"{device.name!r} ignored: a user-space VMM cannot "
                    "pass host devices through (the VM gets emulated devices only)")
    if addresses:
        reader.warn("devices.passthrough_addresses", "ignored: host addresses cannot be passed through here")
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
                           netdevs=netdev_pairs)


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


def _check_layout(reader: FieldReader, kernel: VMKernelConfig) -> None:
    """Cross-field rules: regions do not overlap, images land in RAM."""
    ordered = sorted(enumerate(kernel.memory_regions), key=lambda item: item[1].gpa)
    for (i, first), (j, second) in itertools.pairwise(ordered):
        if second.gpa < first.end:
            later, earlier = max(i, j), min(i, j)
            reader.problem(f"kernel.memory_regions[{later}]",
                           f"[{second.gpa:#x}, {second.end:#x}) overlaps memory_regions[{earlier}] "
                           f"[{first.gpa:#x}, {first.end:#x}); expected non-overlapping regions")

    def in_ram(addr: int) -> bool:
        return any(region.gpa <= addr < region.end for region in kernel.memory_regions)

    for key in ("kernel_load_addr", "bios_load_addr", "dtb_load_addr", "ramdisk_load_addr"):
        addr = getattr(kernel, key)
        if addr is not None and not in_ram(addr):
            reader.problem(f"kernel.{key}", f"{addr:#x} is outside every memory region; expected an address in RAM")
    if not in_ram(kernel.entry_point) and kernel.bios_path is None:
        reader.warn("kernel.entry_point", f"{kernel.entry_point:#x} is outside every memory region")
