"""The arm virt machine: QEMU's memory map, the device tree it generates, its devices placed and
wired, the boot registers, and PSCI calls and CPU power states driven through ``run_vcpu``."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axdevice import Gicv2, Pl011, Pl031, RecordingIrqLine
from axvcpu import Halt, Hypercall, SystemDown
from axvm import AxVM, ConfigError, ScriptedBackend, parse_config
from axvm.machines import fdt
from axvm.machines.arm import layout, psci
from axvm.machines.arm.machine import DTB_RESERVE, ArmVirtMachine
from axvm.machines.arm.power import CpuPower
from axvm.machines.registry import machine_for

from .host_tools import needs

ARM = """
[base]
id = 7
name = "armvirt"
vm_type = 1
cpu_num = {cpus}
arch = "aarch64"

[kernel]
entry_point = 0x4020_0000
kernel_path = "Image"
kernel_load_addr = 0x4020_0000
cmdline = "console=ttyAMA0"
memory_regions = [[0x4000_0000, 0x800_0000, 0x7, 0]]

[devices]
emu_devices = [{devices}]
"""


def _config(cpus: int = 1, devices: str = "") -> object:
    return parse_config(ARM.format(cpus=cpus, devices=devices))


def _vm(cpus: int = 1, scripts: dict | None = None, devices: str = "") -> tuple[AxVM, ScriptedBackend]:
    backend = ScriptedBackend(scripts or {})
    return AxVM(_config(cpus, devices), backend), backend  # type: ignore[arg-type]


def test_memory_map_is_qemus() -> None:
    """hw/arm/virt.c's base_memmap and a15irqmap, as `qemu-system-aarch64 -M virt` dumps them."""
    assert (layout.GIC_DIST.base, layout.GIC_DIST.size) == (0x0800_0000, 0x1_0000)
    assert (layout.GIC_CPU.base, layout.GIC_CPU.size) == (0x0801_0000, 0x1_0000)
    assert (layout.UART.base, layout.UART.spi) == (0x0900_0000, 1)
    assert (layout.RTC.base, layout.RTC.spi) == (0x0901_0000, 2)
    assert layout.RAM_BASE == 0x4000_0000
    slots = [layout.virtio_mmio_slot(n) for n in (0, 1, 31)]
    assert [(s.base, s.size, s.spi) for s in slots] == [
        (0x0A00_0000, 0x200, 16),
        (0x0A00_0200, 0x200, 17),
        (0x0A00_3E00, 0x200, 47),
    ]
    with pytest.raises(ValueError, match="slots 0..31"):
        layout.virtio_mmio_slot(32)


def _dtb(**overrides: object) -> fdt.FdtNode:
    args: dict = dict(
        num_cpus=2,
        memory=[(0x4000_0000, 0x800_0000)],
        bootargs="console=ttyAMA0",
        initrd=(0x4800_0000, 0x4810_0000),
        virtio_mmio=[(0x0A00_0000, 16)],
    )
    args.update(overrides)
    return fdt.parse_dtb(layout.build_arm_virt_dtb(**args))


def test_root_psci_cpus_and_timer() -> None:
    root = _dtb()
    assert fdt.strings_of(fdt.find(root, "/compatible")) == ["linux,dummy-virt"]
    assert fdt.strings_of(fdt.find(root, "/psci/compatible")) == ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
    assert fdt.strings_of(fdt.find(root, "/psci/method")) == ["hvc"]
    assert fdt.cells(fdt.find(root, "/psci/cpu_on")) == [0xC400_0003]
    assert fdt.cells(fdt.find(root, "/psci/cpu_off")) == [0x8400_0002]
    for cpu in (0, 1):
        assert fdt.strings_of(fdt.find(root, f"/cpus/cpu@{cpu}/enable-method")) == ["psci"]
        assert fdt.cells(fdt.find(root, f"/cpus/cpu@{cpu}/reg")) == [cpu]
    with pytest.raises(KeyError):
        fdt.find(root, "/cpus/cpu@2")
    # secure phys 13, non-secure phys 14, virtual 11, hyp 10; level-high, both CPUs in the mask
    assert fdt.cells(fdt.find(root, "/timer/interrupts")) == [1, 13, 0x304, 1, 14, 0x304, 1, 11, 0x304, 1, 10, 0x304]


def test_chosen_memory_gic_and_devices() -> None:
    root = _dtb(memory=[(0, 0x400_0000), (0x4000_0000, 0x800_0000)])
    assert fdt.strings_of(fdt.find(root, "/chosen/bootargs")) == ["console=ttyAMA0"]
    assert fdt.strings_of(fdt.find(root, "/chosen/stdout-path")) == ["/pl011@9000000"]
    assert fdt.cells(fdt.find(root, "/chosen/linux,initrd-start")) == [0, 0x4800_0000]
    assert fdt.cells(fdt.find(root, "/chosen/linux,initrd-end")) == [0, 0x4810_0000]
    assert fdt.cells(fdt.find(root, "/memory@40000000/reg")) == [0, 0x4000_0000, 0, 0x800_0000]
    with pytest.raises(KeyError):
        fdt.find(root, "/memory@0")  # the flash stand-in below RAM_BASE is not memory
    gic = fdt.find(root, "/intc@8000000")
    assert fdt.cells(gic[gic.index("#interrupt-cells")]) == [3]
    assert fdt.cells(gic[gic.index("reg")]) == [0, 0x0800_0000, 0, 0x1_0000, 0, 0x0801_0000, 0, 0x1_0000]
    gic_ph = fdt.cells(gic[gic.index("phandle")])[0]
    assert fdt.cells(fdt.find(root, "/interrupt-parent")) == [gic_ph]
    clock_ph = fdt.cells(fdt.find(root, "/apb-pclk/phandle"))[0]
    assert fdt.cells(fdt.find(root, "/pl011@9000000/interrupts")) == [0, 1, 4]
    assert fdt.cells(fdt.find(root, "/pl011@9000000/clocks")) == [clock_ph, clock_ph]
    assert fdt.strings_of(fdt.find(root, "/pl011@9000000/clock-names")) == ["uartclk", "apb_pclk"]
    assert fdt.cells(fdt.find(root, "/pl031@9010000/interrupts")) == [0, 2, 4]
    assert fdt.strings_of(fdt.find(root, "/pl031@9010000/clock-names")) == ["apb_pclk"]
    assert fdt.cells(fdt.find(root, "/virtio_mmio@a000000/interrupts")) == [0, 16, 4]
    assert fdt.cells(fdt.find(root, "/virtio_mmio@a000000/reg")) == [0, 0x0A00_0000, 0, 0x200]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_cpus": 9}, "num_cpus 9"),
        ({"num_cpus": 0}, "num_cpus 0"),
        ({"memory": [(0, 0x400_0000)]}, "at least one RAM region"),
        ({"memory": [(0x4000_0000, 0x800_0000), (0x4400_0000, 0x100_0000)]}, "overlap"),
        ({"virtio_mmio": [(0x0A00_0000, 300)]}, "interrupt 300"),
        ({"conduit": "svc"}, "conduit"),
        ({"initrd": (5, 4)}, "initrd"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _dtb(**overrides)


@needs("dtc", why="Debian package device-tree-compiler")
def test_dtc_decompiles_the_blob_without_warnings(tmp_path: Path) -> None:
    blob = tmp_path / "virt.dtb"
    blob.write_bytes(
        layout.build_arm_virt_dtb(
            num_cpus=4,
            memory=[(0x4000_0000, 0x1000_0000)],
            bootargs="x",
            virtio_mmio=[(0x0A00_0000, 16), (0x0A00_0200, 17)],
        )
    )
    result = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(blob)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings from dtc's structure checks
    assert 'enable-method = "psci";' in result.stdout
    assert "virtio_mmio@a000200" in result.stdout


def test_cpu_power_follows_psci_calls() -> None:
    power = CpuPower(3)
    assert [power.state(c) for c in range(3)] == [psci.AffinityState.ON, psci.AffinityState.OFF, psci.AffinityState.OFF]
    assert power.take_start(1) is None
    result = power.call(0, psci.Fn.CPU_ON | psci.SMC64, 1, 0x4008_0000, 0x1234)
    assert result.value == psci.Ret.SUCCESS
    assert power.state(1) is psci.AffinityState.ON_PENDING
    assert power.call(0, psci.Fn.CPU_ON | psci.SMC64, 1, 0x4008_0000, 0).value == psci.Ret.ON_PENDING
    start = power.take_start(1)
    assert start is not None and (start.entry, start.context_id) == (0x4008_0000, 0x1234)
    assert power.is_on(1)
    assert power.call(1, psci.Fn.CPU_OFF, 0, 0, 0).value is None
    assert power.state(1) is psci.AffinityState.OFF
    assert power.call(0, psci.Fn.AFFINITY_INFO | psci.SMC64, 1, 0, 0).value == psci.AffinityState.OFF


def test_registry_gives_aarch64_the_arm_virt_machine() -> None:
    assert isinstance(machine_for(_config().base.arch), ArmVirtMachine)  # type: ignore[attr-defined]


def test_platform_devices_sit_at_qemus_addresses_and_the_uart_is_the_console() -> None:
    vm, _ = _vm()
    try:
        mmio = vm.buses.mmio
        assert isinstance(vm.machine, ArmVirtMachine)
        assert isinstance(vm.machine.gic, Gicv2)
        assert isinstance(mmio.find(0x0900_0000), Pl011)
        assert isinstance(mmio.find(0x0901_0000), Pl031)
        assert vm.consoles == [vm.machine.uart]
        # the distributor's TYPER: ITLinesNumber = 288 / 32 - 1 = 8, one CPU
        assert vm.devices.read(0x0800_0004, AccessWidth.DWORD) == 8
        assert vm.devices.read(0x0801_00FC, AccessWidth.DWORD) == 0x0202_143B  # GICC_IIDR
    finally:
        vm.stop()


def test_device_irqs_are_gic_spis() -> None:
    vm, _ = _vm(devices='["rng", 0x0A00_0000, 0x200, 16, 0xE4, []]')
    try:
        assert vm.machine.irq_line(vm._target, 16).intid == 48  # type: ignore[attr-defined]
    finally:
        vm.stop()
    with pytest.raises(ConfigError, match=r"emu_devices\[0\].irq_id.*GIC SPI 0..255"):
        _vm(devices='["rng", 0x0A00_0000, 0x200, 300, 0xE4, []]')


def _boot(vm: AxVM) -> None:
    vm.mark_loaded()
    vm.boot()


def test_boot_writes_the_device_tree_at_ram_base_and_points_x0_at_it() -> None:
    vm, backend = _vm(cpus=2)
    try:
        _boot(vm)
        blob = vm.addrspace.memory.read(GuestPhysAddr(0x4000_0000), 0x40)
        assert blob[:4] == b"\xd0\x0d\xfe\xed"
        boot = backend.vcpus[0]
        assert [boot.get_register(r) for r in ("x0", "x1", "x2", "x3", "pc")] == [0x4000_0000, 0, 0, 0, 0x4020_0000]
        assert vm.machine.boot_areas(vm.config) == [  # type: ignore[attr-defined]
            type(vm.machine.boot_areas(vm.config)[0])("the generated device tree", 0x4000_0000, DTB_RESERVE)
        ]
    finally:
        vm.stop()


def _hvc(function: int, *args: int) -> Hypercall:
    return Hypercall(function, args)  # the soft vCPU's report: nr = w0, args = x1...


def test_psci_calls_answered_inline_and_system_off_ends_with_status_0() -> None:
    vm, backend = _vm(scripts={0: [_hvc(psci.Fn.PSCI_VERSION), _hvc(0x8400_0012), _hvc(psci.Fn.SYSTEM_OFF)]})
    try:
        _boot(vm)
        seen = []
        vm.exit_observers.append(lambda vcpu, exit_reason: seen.append(backend.vcpus[0].get_register("x0")))
        assert vm.run_vcpu(0) == SystemDown(0)
        # x0 before each exit was handled: the DTB address, then VERSION's answer, then NOT_SUPPORTED
        assert seen == [0x4000_0000, psci.PSCI_VERSION_1_0, (1 << 64) - 1]
    finally:
        vm.stop()


def test_system_reset_asks_for_a_reset() -> None:
    vm, _ = _vm(scripts={0: [_hvc(psci.Fn.SYSTEM_RESET)]})
    try:
        _boot(vm)
        assert vm.run_vcpu(0) == SystemDown(0, reset=True)
    finally:
        vm.stop()


def test_secondary_waits_off_until_cpu_on_then_enters_with_context_id() -> None:
    vm, backend = _vm(
        cpus=2,
        scripts={0: [_hvc(psci.Fn.CPU_ON | psci.SMC64, 1, 0x4030_0000, 0xABC), Halt()], 1: [_hvc(psci.Fn.CPU_OFF)]},
    )
    try:
        _boot(vm)
        assert vm.run_vcpu(1) == Halt()  # off: nothing ran
        assert backend.vcpus[1].exits_left == 1  # type: ignore[attr-defined]
        assert vm.run_vcpu(0) == Halt()
        assert backend.vcpus[0].get_register("x0") == psci.Ret.SUCCESS
        assert vm.run_vcpu(1) == Halt()  # started, ran, then CPU_OFF: off again
        assert backend.vcpus[1].exits_left == 0  # type: ignore[attr-defined]
        assert (backend.vcpus[1].get_register("pc"), backend.vcpus[1].get_register("x0")) == (0x4030_0000, 0xABC)
        assert vm.machine.power.state(1) is psci.AffinityState.OFF  # type: ignore[attr-defined]
    finally:
        vm.stop()


def test_cpu_on_outside_memory_is_invalid_address() -> None:
    vm, backend = _vm(cpus=2, scripts={0: [_hvc(psci.Fn.CPU_ON, 1, 0x1000, 0), Halt()]})
    try:
        _boot(vm)
        assert vm.run_vcpu(0) == Halt()
        assert backend.vcpus[0].get_register("x0") == psci.PsciResult(int(psci.Ret.INVALID_ADDRESS)).x0
    finally:
        vm.stop()


def test_gic_output_and_timer_lines_reach_the_cpu_side() -> None:
    class ArmScripted(ScriptedBackend):
        def __init__(self) -> None:
            super().__init__({})
            self.cpu_lines = [RecordingIrqLine(), RecordingIrqLine()]
            self.sink: Any = None

        def irq_input(self, cpu: int) -> RecordingIrqLine:
            return self.cpu_lines[cpu]

        def set_timer_sink(self, sink: object) -> None:
            self.sink = sink

    backend = ArmScripted()
    vm = AxVM(_config(2), backend)  # type: ignore[arg-type]
    try:
        gic = vm.machine.gic  # type: ignore[attr-defined]
        # enable the distributor, CPU 1's interface, and PPI 27 (banked: as CPU 1)
        gic.distributor_write(1, 0x000, AccessWidth.DWORD, 1)
        gic.distributor_write(1, 0x100, AccessWidth.DWORD, 1 << 27)
        gic.cpu_write(1, 0x04, AccessWidth.DWORD, 0xFF)
        gic.cpu_write(1, 0x00, AccessWidth.DWORD, 1)
        backend.sink(1, 27, True)  # CPU 1's virtual timer fires
        assert backend.cpu_lines[1].level and not backend.cpu_lines[0].level
        backend.sink(1, 27, False)
        assert not backend.cpu_lines[1].level
        backend.sink(1, 99, True)  # not a timer PPI: ignored
        backend.sink(5, 27, True)  # no such vCPU: ignored
        assert not backend.cpu_lines[0].level and not backend.cpu_lines[1].level
    finally:
        vm.stop()


def test_gic_registers_are_banked_by_the_vcpu_whose_thread_accesses_them() -> None:
    vm, _ = _vm(cpus=2)
    try:
        machine = vm.machine
        assert isinstance(machine, ArmVirtMachine) and machine.gic is not None

        def as_vcpu_1() -> None:
            machine.vcpu_enter(vm._target, 1)  # off: answers Halt, but the thread is vCPU 1's now
            vm.devices.write(0x0800_0100, AccessWidth.DWORD, 1 << 27)  # GICD_ISENABLER0: PPI 27

        worker = threading.Thread(target=as_vcpu_1)
        worker.start()
        worker.join()
        assert machine.gic.distributor_read(1, 0x100, AccessWidth.DWORD) & (1 << 27)
        assert not machine.gic.distributor_read(0, 0x100, AccessWidth.DWORD) & (1 << 27)
        assert not vm.devices.read(0x0800_0100, AccessWidth.DWORD) & (1 << 27)  # this thread: vCPU 0
    finally:
        vm.stop()


def test_calls_outside_psci_go_to_axvisors_hypercalls() -> None:
    """hvc #0 with an AxVisor hypercall code in x0 is not PSCI's: the VM's table serves it."""
    vm, backend = _vm(scripts={0: [_hvc(2, 0x11, 0x22), _hvc(psci.Fn.SYSTEM_OFF)]})  # 2: HyperVisorDebug
    try:
        _boot(vm)
        assert vm.run_vcpu(0) == SystemDown(0)
        assert vm.hypercalls.debug_calls == [(0x11, 0x22)]
        assert psci.Fn.SYSTEM_OFF not in vm.hypercalls.counts
    finally:
        vm.stop()


@pytest.mark.parametrize(
    ("function_id", "expected"),
    [
        (0x8400_0000, True),
        (0xC400_0003, True),
        (0x8400_001F, True),
        (0x8400_0020, False),
        (0x0, False),
        (0x8600_0000, False),
        (0xFFFF_FFFF_8400_0008, True),
    ],
)
def test_psci_owns_its_function_id_range(function_id: int, expected: bool) -> None:
    assert psci.is_psci_call(function_id) is expected
