"""AxVisor's own configs load unchanged, as the right architecture, and what its schema has had
(0.1 through the 2026 keys) is read: honoured, stood in for, or refused by a warning.

The configs are AxVisor's files (data/axvisor, sources in its README); ``expected-arch.toml``
says which architecture each is and why.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axdevice import EmuDeviceType
from axvcpu import MmioRead
from axvm import AxVM, ConfigError, ScriptedBackend, config_from_dict, config_to_dict, load_config, parse_config
from axvm.config import AddressSpacePolicy, Arch, BootProtocol, PassThroughPortConfig, VMType
from axvm.config.compat import QEMU_VIRT_VIRTIO_MMIO
from axvm.machines.riscv import layout as riscv_layout

DATA = Path(__file__).parent / "data" / "axvisor"
EXPECTED: dict[str, str] = tomllib.loads((DATA / "expected-arch.toml").read_text())
VIRTIO_MAGIC = 0x7472_6976  # "virt"


def test_every_axvisor_vm_config_here_has_an_expected_architecture() -> None:
    found = {str(path.relative_to(DATA)) for path in DATA.rglob("*.toml") if "vms" in path.parts}
    assert found == set(EXPECTED)
    assert {line.split()[0] for line in EXPECTED.values()} == {"x86_64", "aarch64", "riscv64", "loongarch64"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_axvisor_config_loads_as_its_architecture(name: str) -> None:
    config = load_config(DATA / name)
    assert f"{config.base.arch.value} {config.arch_from}" == EXPECTED[name]
    assert all(len(warning.splitlines()) == 1 for warning in config.warnings)


def test_the_x86_linux_config_with_an_identity_region_over_a_scratch_region_loads_merged() -> None:
    config = load_config(DATA / "tgoskits/os/axvisor/configs/vms/qemu/x86_64/linux-smp1.toml")
    assert [(r.gpa, r.size) for r in config.kernel.memory_regions] == [(0, 0x800_0000)]
    assert any(
        "memory_regions[1]: [0x0, 0x100000) overlaps memory_regions[0]" in w and "merged" in w for w in config.warnings
    )
    assert config.devices.passthrough_ports == (PassThroughPortConfig(0x6000, 0x80),)
    assert config.kernel.enable_bios is False and config.kernel.boot_protocol is None
    assert [d.emu_type for d in config.devices.emu_devices] == [0x2, EmuDeviceType.X86IoApic, EmuDeviceType.X86Pit]


def test_the_2026_boot_keys_are_read() -> None:
    uefi = load_config(DATA / "tgoskits/os/axvisor/configs/vms/qemu/x86_64/nimbos-uefi-smp1.toml")
    assert uefi.kernel.boot_protocol is BootProtocol.UEFI and uefi.kernel.enable_bios
    assert uefi.kernel.uefi_firmware_path == Path("/guest/nimbos/OVMF_CODE.fd")
    assert any("kernel.boot_protocol: 'uefi': UEFI firmware is not run here" in w for w in uefi.warnings)
    assert any("kernel.uefi_firmware_path: not loaded" in w for w in uefi.warnings)
    multiboot = load_config(DATA / "tgoskits/os/axvisor/configs/vms/qemu/x86_64/nimbos-smp1.toml")
    assert multiboot.kernel.boot_protocol is BootProtocol.MULTIBOOT


def test_the_newer_emu_types_are_known() -> None:
    for value, kind in (
        (0x3, EmuDeviceType.FwCfg),
        (0x23, EmuDeviceType.X86IoApic),
        (0x24, EmuDeviceType.X86Pit),
        (0x25, EmuDeviceType.LoongArchPchPic),
    ):
        assert EmuDeviceType.parse(value) is kind


def test_a_device_the_machine_provides_composes_with_a_warning_naming_its_stand_in() -> None:
    config = load_config(DATA / "tgoskits/os/axvisor/configs/vms/qemu/x86_64/linux-smp1.toml")
    vm = AxVM(config, ScriptedBackend(), allocate_ram=False)
    try:
        warnings = [w for w in vm.warnings if "emu_devices[" in w]
        assert len(warnings) == 2 and "X86IoApic (0x23)" in warnings[0] and "X86Pit (0x24)" in warnings[1]
        assert all("KVM's in-kernel" in w and "serves the guest instead" in w for w in warnings)
    finally:
        vm.stop()


NEWEST = """
[base]
id = 1
name = "linux"
guest_type = "{guest_type}"
cpu_num = 1
arch = "aarch64"

[kernel]
entry_point = 0x4008_0000
kernel_path = "Image"
kernel_load_addr = 0x4008_0000
memory_regions = [[0x4000_0000, 0x800_0000, 0x7, 0]]

[devices]
emu_devices = []
passthrough = [{{ path = "/soc/serial@9000000" }}]
disabled = ["/gic-v3"]
"""


def test_the_newest_form_without_vm_type_loads_with_its_device_keys_warned_about(tmp_path: Path) -> None:
    """AxVisor's newest schema (axvmconfig's GuestConfig): no vm_type, [base] guest_type, [devices]
    passthrough and disabled. Their value forms are not interpreted: a user-space VMM has no host
    devices to hand out, so any value is accepted with a warning and nothing is kept."""
    config = parse_config(NEWEST.format(guest_type="passthrough"), tmp_path / "vm.toml")
    assert config.base.vm_type is VMType.RTOS
    keys = {warning.split(": ")[1] for warning in config.warnings}
    assert {"base.guest_type", "devices.passthrough", "devices.disabled"} <= keys
    assert "base.vm_type" not in keys and not any("unknown key" in w for w in config.warnings)
    assert config.base.guest_type is None and config.devices.passthrough is None
    document = config_to_dict(config)
    assert "guest_type" not in document["base"] and "disabled" not in document["devices"]
    assert config_from_dict(document, tmp_path / "vm.toml").base == config.base


def test_a_config_without_vm_type_or_guest_type_gets_rtos_and_a_warning(tmp_path: Path) -> None:
    text = NEWEST.format(guest_type="x").replace('guest_type = "x"\n', "")
    config = parse_config(text, tmp_path / "vm.toml")
    assert config.base.vm_type is VMType.RTOS
    assert any("base.vm_type: missing" in w for w in config.warnings)


KERNEL = """
[base]
id = 1
name = "vm"
vm_type = 1
cpu_num = 1
arch = "{arch}"

[kernel]
entry_point = 0x8000_0000
kernel_path = "k.bin"
kernel_load_addr = 0x8000_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]
{kernel}

[devices]
emu_devices = []
passthrough_devices = []
{devices}
"""


def load(tmp_path: Path, arch: str = "x86_64", kernel: str = "", devices: str = ""):
    return parse_config(KERNEL.format(arch=arch, kernel=kernel, devices=devices), tmp_path / "vm.toml")


def problem_keys(tmp_path: Path, **parts: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **parts)
    return [problem.key for problem in info.value.problems]


@pytest.mark.parametrize(
    "value,protocol",
    [
        ("direct", BootProtocol.DIRECT),
        ("kernel", BootProtocol.DIRECT),
        ("multiboot", BootProtocol.MULTIBOOT),
        ("bios", BootProtocol.MULTIBOOT),
        ("axvm-bios", BootProtocol.MULTIBOOT),
        ("efi", BootProtocol.UEFI),
    ],
)
def test_boot_protocol_takes_axvisor_values_and_aliases(tmp_path: Path, value: str, protocol: BootProtocol) -> None:
    assert load(tmp_path, kernel=f'boot_protocol = "{value}"').kernel.boot_protocol is protocol


def test_boot_protocol_is_the_one_key_for_riscv_firmware_handoff_too(tmp_path: Path) -> None:
    """Our riscv handoffs are boot_protocol values; ``bios_protocol`` is read as its older name."""
    firmware = 'bios_path = "fw.bin"\nbios_load_addr = 0x8000_0000\n'
    old = load(tmp_path, "riscv64", firmware + 'bios_protocol = "fw_dynamic"')
    new = load(tmp_path, "riscv64", firmware + 'boot_protocol = "fw_dynamic"')
    assert old.kernel == new.kernel and new.kernel.boot_protocol is BootProtocol.FW_DYNAMIC
    assert "bios_protocol" not in config_to_dict(old)["kernel"]
    assert problem_keys(
        tmp_path, arch="riscv64", kernel=firmware + 'bios_protocol = "fw_jump"\n' 'boot_protocol = "fw_jump"'
    ) == ["kernel.bios_protocol"]


@pytest.mark.parametrize(
    "arch,value", [("riscv64", "multiboot"), ("aarch64", "uefi"), ("x86_64", "fw_dynamic"), ("aarch64", "fw_jump")]
)
def test_a_boot_protocol_of_another_architecture_is_a_problem(tmp_path: Path, arch: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"kernel.boot_protocol: '{value}' is not a boot protocol of {arch}"):
        load(tmp_path, arch, f'boot_protocol = "{value}"')


def test_address_space_policy_and_passthrough_ports(tmp_path: Path) -> None:
    config = load(tmp_path, devices='address_space_policy = "pt"\npassthrough_ports = [[0x3f8, 8], [0xfff0, 0x10]]')
    assert config.devices.address_space_policy is AddressSpacePolicy.PASSTHROUGH
    assert config.devices.passthrough_ports == (PassThroughPortConfig(0x3F8, 8), PassThroughPortConfig(0xFFF0, 0x10))
    keys = {warning.split(": ")[1] for warning in config.warnings}
    assert {"devices.address_space_policy", "devices.passthrough_ports"} <= keys
    assert (
        load(tmp_path, devices='address_space_policy = "virtual"').devices.address_space_policy
        is AddressSpacePolicy.VIRTUALIZED
    )


@pytest.mark.parametrize("ports", ["[[0x3f8, 0]]", "[[0xfff0, 0x11]]", '[["0x3f8", 8]]', "[[0x3f8, 8, 1]]"])
def test_passthrough_ports_axvisor_refuses_are_refused(tmp_path: Path, ports: str) -> None:
    keys = problem_keys(tmp_path, devices=f"passthrough_ports = {ports}")
    assert len(keys) == 1 and keys[0].startswith("devices.passthrough_ports[0]")


def test_enable_bios_must_be_a_boolean(tmp_path: Path) -> None:
    assert problem_keys(tmp_path, kernel="enable_bios = 1") == ["kernel.enable_bios"]


V01_AARCH64 = DATA / "axvisor-v0.1.0/configs/vms/linux-qemu-aarch64.toml"
RISCV_LINUX = DATA / "tgoskits/os/axvisor/configs/vms/qemu/riscv64/linux-smp1.toml"


def with_disk(tmp_path: Path, source: Path, folder: str) -> Path:
    """``source`` copied under ``folder`` (AxVisor's naming kept) with a disk image named."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 0x10000)
    file = tmp_path / folder / source.name
    file.parent.mkdir(parents=True)
    file.write_text(source.read_text().replace("[kernel]\n", f'[kernel]\ndisk_path = "{disk}"\n', 1))
    return file


def test_qemu_virtio_mmio_passed_through_becomes_an_emulated_disk_at_the_same_address(tmp_path: Path) -> None:
    arm = load_config(with_disk(tmp_path, V01_AARCH64, "arm"))
    (blk,) = (d for d in arm.devices.emu_devices if d.emu_type == EmuDeviceType.VirtioBlk)
    assert (blk.name, blk.base_gpa, blk.length, blk.irq_id) == ("virtio_mmio", 0x0A00_0000, 0x200, 16)
    assert any("passthrough_devices[4]: 'virtio_mmio' (QEMU's virtio-mmio slot 0" in w for w in arm.warnings)
    riscv = load_config(with_disk(tmp_path, RISCV_LINUX, "qemu/riscv64"))
    (blk,) = (d for d in riscv.devices.emu_devices if d.emu_type == EmuDeviceType.VirtioBlk)
    assert (blk.name, blk.base_gpa, blk.length, blk.irq_id) == ("/soc/virtio_mmio@10001000", 0x1000_1000, 0x1000, 1)
    assert sum("ignored" in w for w in riscv.warnings if "passthrough_devices[" in w) == 8  # the others
    # Without a disk nothing stands in; a dump of the config read back is the same config.
    assert not [d for d in load_config(RISCV_LINUX).devices.emu_devices if d.emu_type == EmuDeviceType.VirtioBlk]
    again = config_from_dict(config_to_dict(riscv), riscv.source)
    assert again.devices == riscv.devices


def test_the_stand_in_disk_answers_the_guest_where_qemu_had_it(tmp_path: Path) -> None:
    config = load_config(with_disk(tmp_path, RISCV_LINUX, "qemu/riscv64"))
    reads = [
        MmioRead(GuestPhysAddr(0x1000_1000), AccessWidth.DWORD),
        MmioRead(GuestPhysAddr(0x1000_1008), AccessWidth.DWORD),
    ]
    backend = ScriptedBackend({0: reads})
    vm = AxVM(config, backend)
    try:
        vm.mark_loaded()
        vm.boot()
        vm.run_vcpu(0)
        assert backend.vcpus[0].completed_reads == [VIRTIO_MAGIC, 2]  # a virtio block device
    finally:
        vm.stop()


def test_the_qemu_virt_virtio_slots_are_the_riscv_machines() -> None:
    base, stride, count, first_irq = QEMU_VIRT_VIRTIO_MMIO[Arch.RISCV64]
    assert [(s.base, s.size, s.irq) for s in riscv_layout.VIRTIO_MMIO] == [
        (base + n * stride, stride, first_irq + n) for n in range(count)
    ]


def test_the_data_configs_keep_their_arch_through_a_dump(tmp_path: Path) -> None:
    """A config whose arch was inferred dumps it as [base] arch, so the dump loads anywhere."""
    config = load_config(DATA / "tgoskits/os/axvisor/configs/vms/phytiumpi/linux-smp1.toml")
    again = config_from_dict(config_to_dict(config), tmp_path / "vm.toml")
    assert again.base == config.base and again.arch_from == "from [base] arch"
    assert (
        dataclasses.replace(again, source=config.source, warnings=config.warnings, arch_from=config.arch_from) == config
    )
