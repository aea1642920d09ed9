from __future__ import annotations

from pathlib import Path

import pytest

from axvm import (
    Arch,
    BackendKind,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_config,
)
from axvm.config import VMInterruptMode, VmMemMappingType, VMType

DATA = Path(__file__).parent / "data"

GOOD = """
[base]
id = 3
name = "tiny"
vm_type = 2
cpu_num = 2
arch = "riscv64"
backend = "soft"

[kernel]
entry_point = 0x8020_0000
kernel_path = "images/Image"
kernel_load_addr = 0x8020_0000
bios_path = "fw_jump.bin"
bios_load_addr = 0x8000_0000
cmdline = "console=ttyS0"
memory_regions = [[0x8000_0000, 0x800_0000, 0x7, 0]]

[devices]
emu_devices = [["uart", 0x1000_0000, 0x100, 10, 0x2, []]]
interrupt_mode = "emulated"
"""


def problems(text: str, tmp_path: Path) -> list[str]:
    file = tmp_path / "vm.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems)
    assert all(line.startswith(f"{file}: ") for line in lines)
    return lines


def test_good_config_loads_with_paths_resolved(tmp_path: Path) -> None:
    file = tmp_path / "vm.toml"
    file.write_text(GOOD)
    config = load_config(file)
    assert config.base.vm_type is VMType.LINUX and config.base.cpu_num == 2
    assert config.base.arch is Arch.RISCV64 and config.base.backend is BackendKind.SOFT
    assert config.kernel.kernel_path == tmp_path / "images" / "Image"
    assert config.kernel.bios_path == tmp_path / "fw_jump.bin"
    assert config.kernel.memory_regions[0].size == 0x800_0000
    assert config.devices.emu_devices[0].irq_id == 10
    assert config.devices.interrupt_mode is VMInterruptMode.EMULATED
    assert config.source == file and config.warnings == ()


def test_axvisor_x86_config_loads_unchanged_with_warnings() -> None:
    config = load_config(DATA / "axvisor-arceos-x86_64.toml")
    assert config.base.arch is Arch.X86_64 and config.arch_from == "from the file name"
    assert config.base.backend is BackendKind.AUTO
    assert config.base.phys_cpu_sets == (1,)
    assert len(config.devices.passthrough_devices) == 2
    assert any("IO APIC" in warning and "passthrough_devices[0]" in warning for warning in config.warnings)


def test_axvisor_riscv_template_with_three_field_regions_loads() -> None:
    config = load_config(DATA / "axvisor-riscv64-template.toml")
    region = config.kernel.memory_regions[0]
    assert region.map_type is VmMemMappingType.MAP_ALLOC and region.flags == 0x7
    assert any("interrupt_mode" in warning for warning in config.warnings)


def test_wrong_type_names_file_and_key(tmp_path: Path) -> None:
    lines = problems(GOOD.replace("cpu_num = 2", 'cpu_num = "two"'), tmp_path)
    assert lines == [f"{tmp_path / 'vm.toml'}: base.cpu_num: expected an integer, got string 'two'"]


def test_missing_section_is_named(tmp_path: Path) -> None:
    text = GOOD.split("[kernel]")[0]
    (line,) = problems(text, tmp_path)
    assert "[kernel]: missing section" in line


def test_overlapping_regions_are_merged_with_a_warning_naming_both(tmp_path: Path) -> None:
    """AxVisor maps overlapping regions one after the other (its x86 Linux config: an identity
    region over 0..128 MiB, then a scratch region over its first MiB); here they become one."""
    text = GOOD.replace("[[0x8000_0000, 0x800_0000, 0x7, 0]]",
                        "[[0x8000_0000, 0x800_0000, 0x3, 0], [0x9000_0000, 0x1000, 0x7, 0], "
                        "[0x87ff_0000, 0x2_0000, 0x4, 1], [0x8000_0000, 0x1000, 0x1, 0]]")
    file = tmp_path / "vm.toml"
    file.write_text(text)
    config = load_config(file)
    assert [(r.gpa, r.size, r.flags, r.map_type) for r in config.kernel.memory_regions] == [
        (0x8000_0000, 0x801_0000, 0x7, VmMemMappingType.MAP_ALLOC),
        (0x9000_0000, 0x1000, 0x7, VmMemMappingType.MAP_ALLOC),
    ]
    merged = [w for w in config.warnings if "merged into one region" in w]
    assert len(merged) == 2
    assert "kernel.memory_regions[2]: [0x87ff0000, 0x88010000) overlaps memory_regions[0] [0x80000000, 0x88000000)" \
        in merged[0] and "[0x80000000, 0x88010000) with flags 0x7" in merged[0]
    assert "kernel.memory_regions[3]: " in merged[1]


def test_every_problem_is_reported_once(tmp_path: Path) -> None:
    text = GOOD.replace("id = 3", "id = -1").replace('arch = "riscv64"', 'arch = "mips"')
    text = text.replace("0x8000_0000, 0x800_0000, 0x7, 0", "0x8000_0000, 0x800_0000, 0x400, 0")
    lines = problems(text, tmp_path)
    keys = sorted(line.split(": ")[1] for line in lines)
    assert keys == ["base.arch", "base.id", "kernel.memory_regions[0].flags"]


@pytest.mark.parametrize(
    "edit,key",
    [
        (("cpu_num = 2", "cpu_num = 0"), "base.cpu_num"),
        (("name = \"tiny\"", "name = \"  \""), "base.name"),
        (("backend = \"soft\"", "backend = \"hyperv\""), "base.backend"),
        (("kernel_load_addr = 0x8020_0000", "kernel_load_addr = 0x4000_0000"), "kernel.kernel_load_addr"),
        (("bios_load_addr = 0x8000_0000\n", ""), "kernel.bios_load_addr"),
        (("0x8000_0000, 0x800_0000, 0x7, 0]", "0x8000_0000, 0x800_0001, 0x7, 0]"), "kernel.memory_regions[0]"),
        (("0x8000_0000, 0x800_0000, 0x7, 0]", "0x8000_0000, 0x800_0000, 0x7, 5]"),
         "kernel.memory_regions[0].map_type"),
        (("0x8000_0000, 0x800_0000, 0x7, 0]", "0x8000_0000]"), "kernel.memory_regions[0]"),
        (("[[\"uart\", 0x1000_0000, 0x100, 10, 0x2, []]]", "[[\"uart\", 0x1000_0000]]"), "devices.emu_devices[0]"),
        (("0x100, 10, 0x2, []", "0x100, 10, 0x2, [\"x\"]"), "devices.emu_devices[0].cfg_list[0]"),
        (("interrupt_mode = \"emulated\"", "interrupt_mode = 3"), "devices.interrupt_mode"),
        (("kernel_path = \"images/Image\"", "kernel_path = \"\""), "kernel.kernel_path"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, edit: tuple[str, str], key: str) -> None:
    old, new = edit
    assert old in GOOD
    (line,) = problems(GOOD.replace(old, new), tmp_path)
    assert f": {key}: " in line


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("[[0x8000_0000, 0x800_0000, 0x7, 0]]", "[[0x8000_0000, 0x800_0000, 0x7, 0], [-4096, 0x2000, 0x7, 0]]",
         "kernel.memory_regions[1].gpa: expected a guest physical address >= 0, got -0x1000"),
        ("[[0x8000_0000, 0x800_0000, 0x7, 0]]", "[[0x8000_0000, 0x800_0000, 0x7, 0], [0xffff_f000, 0x1000, 0x7, 0], "
         "[0xffff_ffff_ffff_f000, 0x1000, 0x7, 0]]",
         "kernel.memory_regions[2]: [0xfffffffffffff000, 0x10000000000000000) ends past the guest physical window "
         "[0x0, 0x1000000000000) (48 bits); expected a region below 0x1000000000000"),
        ("0x1000_0000, 0x100, 10", "0x1000_0000, 0xffff_ffff_ffff_ffff, 10",
         "devices.emu_devices[0].length: [0x10000000, 0x1000000000fffffff) ends past the guest physical window "
         "[0x0, 0x1000000000000); expected a device range below it (length is the size of its registers, e.g. "
         "0x1000)"),
    ],
    ids=["negative gpa", "region past the window", "device length 2^64-1"],
)
def test_addresses_outside_the_guest_window_are_config_errors(tmp_path: Path, old: str, new: str,
                                                              expected: str) -> None:
    """Before, these loaded and the VM build failed with status 1 and no key (or AddrRange raised)."""
    assert old in GOOD
    assert problems(GOOD.replace(old, new), tmp_path) == [f"{tmp_path / 'vm.toml'}: {expected}"]


def test_phys_cpu_sets_must_match_cpu_num(tmp_path: Path) -> None:
    (line,) = problems(GOOD.replace('backend = "soft"', 'backend = "soft"\nphys_cpu_sets = [1]'), tmp_path)
    assert "base.phys_cpu_sets: expected 2 entries" in line


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    (line,) = problems("[base\nid = 1", tmp_path)
    assert "invalid TOML" in line
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_unknown_keys_warn_instead_of_failing(tmp_path: Path) -> None:
    file = tmp_path / "vm.toml"
    file.write_text(GOOD.replace("cpu_num = 2", "cpu_num = 2\ncpu_count = 4"))
    config = load_config(file)
    assert any("base.cpu_count: unknown key" in warning for warning in config.warnings)


def test_table_form_regions_are_accepted() -> None:
    text = GOOD.replace("memory_regions = [[0x8000_0000, 0x800_0000, 0x7, 0]]",
                        "memory_regions = [{gpa = 0x8000_0000, size = 0x800_0000, flags = 7}]")
    assert parse_config(text).kernel.memory_regions[0].gpa == 0x8000_0000


def test_dump_round_trips(tmp_path: Path) -> None:
    file = tmp_path / "vm.toml"
    file.write_text(GOOD)
    config = load_config(file)
    again = config_from_dict(config_to_dict(config, relative_to=tmp_path), file)
    assert again.base == config.base and again.kernel == config.kernel and again.devices == config.devices


def test_a_directory_or_binary_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory; expected a VM config file"):
        load_config(tmp_path)
    binary = tmp_path / "vm.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(binary)
