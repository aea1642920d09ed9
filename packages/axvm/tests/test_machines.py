"""Machines built on what a backend declares it can do, and booted as the config says: the
fallbacks and errors for a missing capability, and the riscv firmware handoff chosen by
``[kernel] boot_protocol``, never by the firmware's file name."""

from __future__ import annotations

from pathlib import Path

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr, InMemoryStage2
from axvcpu import ArchVCpu, MmioRead, ScriptedVCpu
from axvcpu.backends.soft import SoftRiscvBackend
from axvm import AxVM, BackendCapabilities, ConfigError, ScriptedBackend, VmBuildError, parse_config
from axvm.machines.registry import machine_for
from axvm.machines.riscv import layout as rv

X86 = """
[base]
id = 5
name = "caps86"
vm_type = 1
cpu_num = 1
arch = "x86_64"

[kernel]
entry_point = 0x10_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x10_0000
memory_regions = [[0x0, 0x100_0000, 0x7, 0]]
"""
RISCV = """
[base]
id = 6
name = "caps"
vm_type = 1
cpu_num = 1
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "u-boot.bin"
kernel_load_addr = 0x8020_0000
memory_regions = [[0x8000_0000, 0x400_0000, 0x7, 0]]
{bios}
"""
CLINT_MTIME = rv.CLINT.base + 0xBFF8


class BareBackend:
    """Runs vCPUs and maps memory, and declares no capability at all."""

    name = "bare"

    def __init__(self, scripts: dict[int, list] | None = None) -> None:
        self._stage2 = InMemoryStage2()
        self._scripts = scripts or {}
        self.vcpus: dict[int, ScriptedVCpu] = {}

    @property
    def stage2(self) -> InMemoryStage2:
        return self._stage2

    def create_vcpu(self, vcpu_id: int) -> ArchVCpu:
        self.vcpus[vcpu_id] = ScriptedVCpu(self._scripts.get(vcpu_id, []))
        return self.vcpus[vcpu_id]

    def close(self) -> None:
        pass


def test_each_backend_declares_what_it_has() -> None:
    bare = BackendCapabilities.of(BareBackend())
    assert (bare.irq_lines, bare.hart_lines, bare.clock, bare.inline_mmio) == (None, None, None, None)
    assert bare.mtimecmp_writes is None
    scripted = ScriptedBackend()
    assert BackendCapabilities.of(scripted).irq_lines is scripted
    soft = SoftRiscvBackend(1)
    try:
        caps = BackendCapabilities.of(soft)
        assert caps.irq_lines is None  # no numbered lines: the PLIC is a device, driven by hart lines
        assert caps.hart_lines is soft and caps.clock is soft and caps.inline_mmio is soft
        assert caps.mtimecmp_writes is soft
    finally:
        soft.close()


def test_x86_on_a_backend_without_irq_lines_is_a_clear_error() -> None:
    with pytest.raises(
        VmBuildError,
        match=r"attach devices: the x86_64 machine \(its IOAPIC pins\) needs "
        r"numbered interrupt lines \(irq_line\), which the 'bare' backend does not have",
    ):
        AxVM(parse_config(X86), BareBackend())


def test_riscv_on_a_backend_without_capabilities_gets_the_fallbacks() -> None:
    """No hart lines: interrupt outputs go nowhere; no clock: mtime reads 0; no inline MMIO: the
    guest's device accesses come back as exits and reach the same device manager."""
    backend = BareBackend({0: [MmioRead(GuestPhysAddr(CLINT_MTIME), AccessWidth.QWORD)]})
    vm = AxVM(parse_config(RISCV.format(bios="")), backend)
    vm.mark_loaded()
    vm.boot()
    vm.run_vcpu(0)
    assert backend.vcpus[0].completed_reads == [0]
    vm.stop()


def riscv(tmp_path: Path, bios: str) -> tuple[AxVM, ScriptedBackend]:
    text = RISCV.format(bios=bios)
    backend = ScriptedBackend()
    vm = AxVM(parse_config(text, tmp_path / "vm.toml"), backend)
    vm.mark_loaded()
    vm.boot()
    return vm, backend


def areas(text: str) -> list[str]:
    return [area.what for area in machine_for(parse_config(text).base.arch).boot_areas(parse_config(text))]


def test_fw_dynamic_follows_the_config_key_whatever_the_file_is_called(tmp_path: Path) -> None:
    vm, backend = riscv(
        tmp_path, 'bios_path = "firmware.bin"\nbios_load_addr = 0x8000_0000\n' 'bios_protocol = "fw_dynamic"'
    )
    registers = backend.vcpus[0].registers
    info = vm.addrspace.memory.read(GuestPhysAddr(registers["a2"]), rv.FW_DYNAMIC_INFO_SIZE)
    assert info == rv.fw_dynamic_info(0x8020_0000)  # the next stage: kernel_load_addr, in S mode
    assert registers["a2"] == registers["a1"] - 0x1000
    vm.stop()
    assert "OpenSBI's fw_dynamic_info" in areas(
        RISCV.format(
            bios='bios_path = "firmware.bin"\n' "bios_load_addr = 0x8000_0000\n" 'bios_protocol = "fw_dynamic"'
        )
    )


def test_a_file_named_fw_dynamic_is_entered_as_fw_jump_unless_the_config_says_otherwise(tmp_path: Path) -> None:
    bios = 'bios_path = "fw_dynamic.bin"\nbios_load_addr = 0x8000_0000'
    vm, backend = riscv(tmp_path, bios)
    assert "a2" not in backend.vcpus[0].registers and "a1" in backend.vcpus[0].registers
    vm.stop()
    assert "OpenSBI's fw_dynamic_info" not in areas(RISCV.format(bios=bios))
    warnings = parse_config(RISCV.format(bios=bios)).warnings
    assert any("kernel.boot_protocol: not set, so fw_dynamic.bin is entered as fw_jump" in w for w in warnings)


def test_a_bad_bios_protocol_names_the_key() -> None:
    with pytest.raises(
        ConfigError, match=r"kernel.bios_protocol: expected one of .*'fw_jump', 'fw_dynamic', got 'dynamic'"
    ):
        parse_config(
            RISCV.format(bios='bios_path = "f.bin"\nbios_load_addr = 0x8000_0000\n' 'bios_protocol = "dynamic"')
        )
