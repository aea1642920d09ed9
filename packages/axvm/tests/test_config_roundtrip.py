"""The config schema is one list of keys: what the loader knows and the dump writes come from the
dataclasses, and a dump loads back to the config it came from, whatever valid config it was."""

from __future__ import annotations

import dataclasses
import enum
import string
import typing
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import MappingFlags
from axvm import config_from_dict, config_to_dict
from axvm.config import (
    GUEST_PHYS_LIMIT,
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
)
from axvm.config.load import KNOWN_KEYS, MAX_VCPUS, PAGE_SIZE
from axvm.config.schema import BOOT_PROTOCOL_ARCHES, SECTIONS, key_aliases

FOLDER = Path("/axvm-roundtrip-test/vms")
"""Where the drawn config file lives; nothing is read there (paths are only resolved)."""
U64 = (1 << 64) - 1

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
names = texts.filter(lambda name: name.strip() != "")
uints = st.integers(0, U64)
small_uints = st.integers(0, 1 << 32)
file_names = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=10).filter(
    lambda name: name.strip(".") != ""
)
paths = st.lists(file_names, min_size=1, max_size=3).map(lambda parts: FOLDER.joinpath(*parts))
R = TypeVar("R")


def complete(draw: st.DrawFn, record: type[R], drawn: dict[str, Any]) -> R:
    """``record`` from ``drawn``, any enum field not drawn yet drawn from its members: a key the
    schema gains is drawn too, or this names it (so the round trip never skips a field)."""
    hints = typing.get_type_hints(record)
    for spec in dataclasses.fields(record):
        kind = hints[spec.name]
        if spec.name in drawn:
            continue
        if not (isinstance(kind, type) and issubclass(kind, enum.Enum)):
            raise AssertionError(f"{record.__name__}.{spec.name}: no strategy draws it; add one here")
        drawn[spec.name] = draw(st.sampled_from(kind))
    return record(**drawn)


@st.composite
def memory_regions(draw: st.DrawFn) -> tuple[VmMemConfig, ...]:
    """1 to 4 page-aligned regions in increasing order with gaps, all below the 48-bit window."""
    regions, page = [], draw(st.integers(0, 1 << 20))
    for _ in range(draw(st.integers(1, 4))):
        pages = draw(st.integers(1, 1 << 16))
        flags = draw(st.integers(0, MappingFlags.all_bits()))
        regions.append(VmMemConfig(page * PAGE_SIZE, pages * PAGE_SIZE, flags, draw(st.sampled_from(VmMemMappingType))))
        page += pages + draw(st.integers(0, 1 << 16))
    assert regions[-1].end <= GUEST_PHYS_LIMIT
    return tuple(draw(st.permutations(regions)))


@st.composite
def kernels(draw: st.DrawFn, arch: Arch) -> VMKernelConfig:
    regions = draw(memory_regions())
    in_ram = st.sampled_from(regions).flatmap(lambda r: st.integers(r.gpa, r.end - 1))
    optional_addr = st.none() | in_ram
    bios_path = draw(st.none() | paths)
    drawn = dict(
        entry_point=draw(uints),  # outside RAM it is only a warning
        kernel_path=draw(paths),
        kernel_load_addr=draw(in_ram),
        memory_regions=regions,
        bios_path=bios_path,
        bios_load_addr=draw(in_ram if bios_path is not None else optional_addr),
        dtb_path=draw(st.none() | paths),
        dtb_load_addr=draw(optional_addr),
        ramdisk_path=draw(st.none() | paths),
        ramdisk_load_addr=draw(optional_addr),
        image_location=draw(st.sampled_from(ImageLocation)),
        cmdline=draw(st.none() | texts),
        disk_path=draw(st.none() | paths),
        boot_protocol=draw(st.none() | st.sampled_from([p for p in BootProtocol if arch in BOOT_PROTOCOL_ARCHES[p]])),
        enable_bios=draw(st.booleans()),
        uefi_firmware_path=draw(st.none() | paths),
    )
    return complete(draw, VMKernelConfig, drawn)


@st.composite
def bases(draw: st.DrawFn) -> VMBaseConfig:
    cpus = draw(st.integers(1, 8) | st.just(MAX_VCPUS))
    few = cpus <= 8  # host CPU lists, one entry per vCPU, only for a few vCPUs: drawing 256 is slow
    per_cpu = st.lists(small_uints, min_size=cpus, max_size=cpus).map(tuple) if few else st.none()
    masks = st.lists(st.integers(1, U64), min_size=cpus, max_size=cpus).map(tuple) if few else st.none()
    drawn = dict(
        id=draw(uints),
        name=draw(names),
        vm_type=draw(st.sampled_from(VMType)),
        cpu_num=cpus,
        phys_cpu_ids=draw(st.none() | per_cpu),
        phys_cpu_sets=draw(st.none() | masks),
        arch=draw(st.sampled_from(Arch)),
        backend=draw(st.sampled_from(BackendKind)),
        guest_type=None,  # read, never kept
    )
    return complete(draw, VMBaseConfig, drawn)


@st.composite
def emu_devices(draw: st.DrawFn) -> EmulatedDeviceConfig:
    base = draw(st.integers(0, GUEST_PHYS_LIMIT - 1))
    length = draw(st.integers(1, GUEST_PHYS_LIMIT - base))
    cfg = tuple(draw(st.lists(small_uints, max_size=3)))
    return EmulatedDeviceConfig(draw(texts), base, length, draw(small_uints), draw(st.integers(0, 0xFF)), cfg)


@st.composite
def devices(draw: st.DrawFn) -> VMDevicesConfig:
    # A virtio-mmio transport passed through becomes an emulated virtio-blk when read (compat.py):
    # a config the loader gives back never still has one beside a disk, so none is drawn.
    unlike_virtio = texts.filter(lambda name: "virtio" not in name.lower())
    passthrough = st.builds(PassThroughDeviceConfig, unlike_virtio, uints, uints, uints, small_uints)
    ports = st.integers(0, 0xFFFF).flatmap(
        lambda base: st.builds(PassThroughPortConfig, st.just(base), st.integers(1, 0x1_0000 - base))
    )
    drawn = dict(
        emu_devices=tuple(draw(st.lists(emu_devices(), max_size=3))),
        passthrough_devices=tuple(draw(st.lists(passthrough, max_size=2))),
        interrupt_mode=draw(st.sampled_from(VMInterruptMode)),
        excluded_devices=tuple(draw(st.lists(st.lists(texts, max_size=3).map(tuple), max_size=3))),
        passthrough_addresses=tuple(draw(st.lists(st.builds(PassThroughAddressConfig, uints, uints), max_size=2))),
        netdevs=tuple(draw(st.dictionaries(texts, texts.filter(bool), max_size=3)).items()),
        passthrough_ports=tuple(draw(st.lists(ports, max_size=2))),
        passthrough=None,  # read, never kept
        disabled=None,
    )
    return complete(draw, VMDevicesConfig, drawn)


@st.composite
def configs(draw: st.DrawFn) -> AxVMCrateConfig:
    """A config whose boot protocol is one of its architecture's (another is a config error)."""
    base = draw(bases())
    return AxVMCrateConfig(base, draw(kernels(base.arch)), draw(devices()))


def sections(config: AxVMCrateConfig) -> tuple[object, ...]:
    return config.base, config.kernel, config.devices


@settings(max_examples=100)
@given(configs(), st.booleans())
def test_a_dump_loads_back_to_the_same_config(config: AxVMCrateConfig, relative: bool) -> None:
    document = config_to_dict(config, relative_to=FOLDER if relative else None)
    again = config_from_dict(document, FOLDER / "vm.toml")
    assert sections(again) == sections(config)


def test_excluded_devices_and_passthrough_addresses_survive_a_dump() -> None:
    """The two keys the hand-written dump left out."""
    regions = (VmMemConfig(0, 0x10_0000, 7),)
    devices = VMDevicesConfig(
        excluded_devices=(("/soc/uart",),), passthrough_addresses=(PassThroughAddressConfig(0x9000_0000, 0x1000),)
    )
    config = AxVMCrateConfig(
        VMBaseConfig(1, "vm", VMType.LINUX, 1), VMKernelConfig(0, FOLDER / "k", 0, regions), devices
    )
    document = config_to_dict(config)
    assert document["devices"]["excluded_devices"] == [["/soc/uart"]]
    assert document["devices"]["passthrough_addresses"] == [[0x9000_0000, 0x1000]]
    assert config_from_dict(document, FOLDER / "vm.toml").devices == devices


def test_the_known_keys_and_the_dump_come_from_the_dataclasses() -> None:
    assert set(SECTIONS) == {"base", "kernel", "devices"}
    for section, record in SECTIONS.items():
        assert KNOWN_KEYS[section] == {spec.name for spec in dataclasses.fields(record)} | set(key_aliases(record))
    regions = (VmMemConfig(0, 0x10_0000, 7),)
    config = AxVMCrateConfig(VMBaseConfig(1, "vm", VMType.LINUX, 1), VMKernelConfig(0, FOLDER / "k", 0, regions))
    document = config_to_dict(config)
    assert set(document) == set(SECTIONS)
    assert "source" not in document and "warnings" not in document
    # Keys at their serde default are left out, as before; AxVisor's required ones are written.
    assert set(document["devices"]) == {"emu_devices", "passthrough_devices"}
    assert document["base"]["arch"] == config.base.arch.value and document["kernel"]["image_location"] == "fs"
