"""QEMU riscv virt: memory map, device entries, the device tree and fw_dynamic info."""

from __future__ import annotations

import struct
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

from axdevice import EmuDeviceType
from axvm.machines import fdt
from axvm.machines.riscv import layout as rv

from .host_tools import needs

RAM = [(rv.DRAM_BASE, 0x800_0000)]


def build(**overrides) -> bytes:
    args = {"num_harts": 1, "memory": RAM, "bootargs": None, "initrd": None,
            "uart": (rv.UART0.base, 10), "virtio_mmio": [], "has_test_device": True}
    return rv.build_riscv_virt_dtb(**{**args, **overrides})


def prop(root, path: str) -> list[int]:
    return fdt.cells(fdt.find(root, path))


def text(root, path: str) -> list[str]:
    return fdt.strings_of(fdt.find(root, path))


def phandle_of(root, path: str) -> int:
    return prop(root, path + "/phandle")[0]


def test_memory_map_is_qemus() -> None:
    assert (rv.UART0.base, rv.UART0.size, rv.UART0.irq) == (0x1000_0000, 0x100, 10)
    assert (rv.CLINT.base, rv.CLINT.size) == (0x0200_0000, 0x10000)
    assert (rv.PLIC.base, rv.PLIC.size) == (0x0C00_0000, 0x60_0000)
    assert (rv.SIFIVE_TEST.base, rv.SIFIVE_TEST.size) == (0x10_0000, 0x1000)
    assert [(s.base, s.irq) for s in rv.VIRTIO_MMIO] == [(0x1000_1000 + n * 0x1000, n + 1) for n in range(8)]
    assert rv.virtio_mmio_slot(7).base == 0x1000_8000
    with pytest.raises(ValueError):
        rv.virtio_mmio_slot(8)
    assert rv.plic_context(3, supervisor=True) == 7


def test_device_entries_cover_the_fixed_devices_without_overlap() -> None:
    entries = rv.riscv_virt_device_entries()
    kinds = {EmuDeviceType(e.emu_type) for e in entries}
    assert kinds == {EmuDeviceType.Timer, EmuDeviceType.InterruptController, EmuDeviceType.Console,
                     EmuDeviceType.PowerControl}
    spans = sorted((e.base_gpa, e.base_gpa + e.length) for e in entries)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(spans))
    uart = next(e for e in entries if e.emu_type == EmuDeviceType.Console)
    assert uart.irq_id == 10
    assert len(rv.riscv_virt_device_entries(uart=False, test_device=False)) == 2


@pytest.mark.parametrize("num_harts", [1, 2, 5])
def test_cpus_and_interrupt_wiring_follow_the_hart_count(num_harts: int) -> None:
    root = fdt.parse_dtb(build(num_harts=num_harts))
    cpus = [n for n in fdt.subnodes(fdt.find(root, "/cpus")) if n.get_name().startswith("cpu@")]
    assert len(cpus) == num_harts
    assert prop(root, "/cpus/timebase-frequency") == [10_000_000]
    intcs = []
    for h in range(num_harts):
        cpu = f"/cpus/cpu@{h:x}"
        assert prop(root, cpu + "/reg") == [h]
        assert text(root, cpu + "/device_type") == ["cpu"] and text(root, cpu + "/status") == ["okay"]
        assert text(root, cpu + "/riscv,isa") == ["rv64imafdc"]
        assert text(root, cpu + "/mmu-type") == ["riscv,sv39"]
        assert text(root, cpu + "/interrupt-controller/compatible") == ["riscv,cpu-intc"]
        assert prop(root, cpu + "/interrupt-controller/#interrupt-cells") == [1]
        intcs.append(phandle_of(root, cpu + "/interrupt-controller"))
        assert prop(root, f"/cpus/cpu-map/cluster0/core{h}/cpu") == [phandle_of(root, cpu)]
    plic = prop(root, "/soc/plic@c000000/interrupts-extended")
    assert plic == [cell for i in intcs for cell in (i, 11, i, 9)]  # M context, then S context
    clint = prop(root, "/soc/clint@2000000/interrupts-extended")
    assert clint == [cell for i in intcs for cell in (i, 3, i, 7)]
    assert len(set(intcs)) == num_harts


def test_soc_devices_and_their_interrupt_parent() -> None:
    root = fdt.parse_dtb(build(virtio_mmio=[(0x1000_1000, 1), (0x1000_8000, 8)]))
    plic = "/soc/plic@c000000"
    assert text(root, "/soc/compatible") == ["simple-bus"]
    assert text(root, plic + "/compatible") == ["sifive,plic-1.0.0", "riscv,plic0"]
    assert prop(root, plic + "/riscv,ndev") == [95]
    assert prop(root, plic + "/reg") == [0, 0x0C00_0000, 0, 0x60_0000]
    assert prop(root, plic + "/interrupt-controller") == []
    plic_ph = phandle_of(root, plic)
    serial = "/soc/serial@10000000"
    assert text(root, serial + "/compatible") == ["ns16550a"]
    assert prop(root, serial + "/clock-frequency") == [3_686_400]
    assert prop(root, serial + "/interrupts") == [10] and prop(root, serial + "/interrupt-parent") == [plic_ph]
    for base, irq in ((0x1000_1000, 1), (0x1000_8000, 8)):
        path = f"/soc/virtio_mmio@{base:x}"
        assert text(root, path + "/compatible") == ["virtio,mmio"]
        assert prop(root, path + "/interrupts") == [irq]
        assert prop(root, path + "/interrupt-parent") == [plic_ph]
    assert text(root, "/soc/clint@2000000/compatible") == ["sifive,clint0", "riscv,clint0"]
    test_ph = phandle_of(root, "/soc/test@100000")
    assert text(root, "/soc/test@100000/compatible") == ["sifive,test1", "sifive,test0", "syscon"]
    for name, value in (("poweroff", 0x5555), ("reboot", 0x7777)):
        assert text(root, f"/{name}/compatible") == [f"syscon-{name}"]
        assert prop(root, f"/{name}/regmap") == [test_ph]
        assert prop(root, f"/{name}/offset") == [0] and prop(root, f"/{name}/value") == [value]


def test_root_chosen_and_memory() -> None:
    root = fdt.parse_dtb(build(
        memory=[(0x8000_0000, 0x4000_0000), (0x1_0000_0000, 0x1_0000_0000)],
        bootargs="console=ttyS0 earlycon=uart8250,mmio,0x10000000 rdinit=/init",
        initrd=(0x8800_0000, 0x8812_3456),
    ))
    assert prop(root, "/#address-cells") == [2] and prop(root, "/#size-cells") == [2]
    assert text(root, "/compatible") == ["riscv-virtio"]
    assert text(root, "/chosen/bootargs") == ["console=ttyS0 earlycon=uart8250,mmio,0x10000000 rdinit=/init"]
    assert text(root, "/chosen/stdout-path") == ["/soc/serial@10000000"]
    assert prop(root, "/chosen/linux,initrd-start") == [0, 0x8800_0000]
    assert prop(root, "/chosen/linux,initrd-end") == [0, 0x8812_3456]
    assert prop(root, "/memory@80000000/reg") == [0, 0x8000_0000, 0, 0x4000_0000]
    assert prop(root, "/memory@100000000/reg") == [1, 0, 1, 0]
    assert text(root, "/memory@80000000/device_type") == ["memory"]


def test_optional_parts_are_left_out() -> None:
    root = fdt.parse_dtb(build(uart=None, has_test_device=False))
    chosen = fdt.find(root, "/chosen")
    assert len(chosen) == 0  # no bootargs, no stdout-path, no initrd
    names = {n.get_name() for n in fdt.subnodes(fdt.find(root, "/soc"))}
    assert names == {"plic@c000000", "clint@2000000"}
    assert not any(n.get_name() in ("poweroff", "reboot") for n in fdt.subnodes(root))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_harts": 0}, "num_harts"),
        ({"num_harts": 513}, "num_harts"),
        ({"memory": []}, "memory"),
        ({"memory": [(0x8000_0000, 0)]}, "memory"),
        ({"memory": [(0x8000_0000, 0x2000), (0x8000_1000, 0x1000)]}, "overlap"),
        ({"initrd": (0x9000, 0x8000)}, "initrd"),
        ({"uart": (0x1000_0000, 0)}, "interrupt 0"),
        ({"virtio_mmio": [(0x1000_1000, 96)]}, "interrupt 96"),
        ({"bootargs": "a\nb"}, "bootargs"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(**overrides)


@needs("dtc", why="Debian package device-tree-compiler")
def test_dtc_decompiles_the_blob_without_warnings(tmp_path: Path) -> None:
    blob = tmp_path / "virt.dtb"
    blob.write_bytes(build(num_harts=4, bootargs="console=ttyS0", initrd=(0x8800_0000, 0x8900_0000),
                           virtio_mmio=[(s.base, s.irq or 0) for s in rv.VIRTIO_MMIO]))
    result = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(blob)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings from dtc's structure checks
    assert "virtio_mmio@10008000" in result.stdout and "cpu@3" in result.stdout


def test_fw_dynamic_info_layout() -> None:
    info = rv.fw_dynamic_info(0x8020_0000)
    assert len(info) == 48
    magic, version, next_addr, next_mode, options, boot_hart = struct.unpack("<6Q", info)
    assert (magic, version) == (0x4942534F, 2)
    assert info[:4] == b"OSBI"
    assert (next_addr, next_mode, options, boot_hart) == (0x8020_0000, 1, 0, (1 << 64) - 1)
    assert struct.unpack("<6Q", rv.fw_dynamic_info(0x8000_0000, 3, boot_hart=0))[3:] == (3, 0, 0)
    assert rv.fw_dynamic_info(0x1000, boot_hart=-1) == rv.fw_dynamic_info(0x1000)
    for bad in ({"next_mode": 2}, {"next_addr": 1 << 64}, {"options": -1}):
        with pytest.raises(ValueError):
            rv.fw_dynamic_info(**{"next_addr": 0x8020_0000, **bad})
