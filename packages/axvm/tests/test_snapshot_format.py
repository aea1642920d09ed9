"""The snapshot format without a CPU: sparse RAM files mapped back copy-on-write, the device
states of one composed riscv VM put into another, the manifest's checks and its one-line
refusals, and the config difference finder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from axaddrspace import AccessWidth, AddrSpace, GuestMemoryRegion, InMemoryStage2, MappingFlags
from axdevice import Uart16550
from axvm import AxVM, ScriptedBackend, parse_config
from axvm.snapshot import SnapshotError, map_from_file, write_sparse
from axvm.snapshot.devices import capture_devices, restore_devices
from axvm.snapshot.manifest import check_manifest, first_difference

RISCV = """
[base]
id = 6
name = "snap"
vm_type = 1
cpu_num = 2
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "u-boot.bin"
kernel_load_addr = 0x8020_0000
memory_regions = [[0x8000_0000, 0x400_0000, 0x7, 0]]

[devices]
emu_devices = [
    ["virtio-rng", 0x1000_2000, 0x1000, 2, 0xE4, []],
    ["virtio-console", 0x1000_3000, 0x1000, 3, 0xE3, []],
]
"""
PAGE = 4096


def test_ram_written_sparse_maps_back_copy_on_write(tmp_path: Path) -> None:
    region = GuestMemoryRegion.anonymous(0x8000_0000, 8 << 20)
    region.view[3 * PAGE : 3 * PAGE + 5] = b"hello"
    region.view[(6 << 20) + 7] = 0x42
    path = tmp_path / "ram-0.bin"
    written = write_sparse(region, path)
    assert written == 2 * PAGE  # two pages with data, the rest holes
    assert path.stat().st_size == 8 << 20 and path.stat().st_blocks * 512 < 1 << 20
    space = AddrSpace(0, 1 << 40, InMemoryStage2())
    restored = map_from_file(space, 0x8000_0000, 8 << 20, MappingFlags.READ | MappingFlags.WRITE, path)
    assert bytes(restored.view) == bytes(region.view)
    restored.view[0] = 1  # the guest writes: its own copy, not the file
    assert path.read_bytes()[0] == 0
    with pytest.raises(FileExistsError):
        write_sparse(region, path)  # never over another snapshot's file
    space.close()
    region.close()


def _vm(tmp_path: Path) -> AxVM:
    vm = AxVM(parse_config(RISCV, tmp_path / "vm.toml"), ScriptedBackend())
    vm.mark_loaded()
    return vm


def test_device_states_of_one_vm_go_into_another(tmp_path: Path) -> None:
    first, second = _vm(tmp_path), _vm(tmp_path)
    try:
        uart: Uart16550 = first.consoles[0]
        uart.write(1, 0x01)
        uart.push_input(b"typed")
        first.buses.mmio.write(0xC00_0000 + 4 * 2, AccessWidth.DWORD, 3)  # PLIC: source 2's priority
        saved = json.loads(json.dumps(capture_devices(first.buses)))
        assert {"mmio@0x10000000", "mmio@0x2000000", "mmio@0xc000000", "mmio@0x10002000", "mmio@0x10003000"} <= set(
            saved
        )
        assert saved["mmio@0x10002000"]["type"] == "VirtioRng" and "transport" in saved["mmio@0x10002000"]
        restore_devices(second.buses, saved)
        assert capture_devices(second.buses) == saved
        assert second.consoles[0].state().rx_fifo == b"typed"
        assert second.buses.mmio.read(0xC00_0000 + 4 * 2, AccessWidth.DWORD) == 3
        broken = dict(saved, **{"mmio@0x10000000": {"type": "Clint", "state": {}}})
        with pytest.raises(SnapshotError, match="mmio@0x10000000 holds a 'Clint', this VM has a Uart16550 there"):
            restore_devices(second.buses, broken)
        with pytest.raises(SnapshotError, match="devices this VM does not have: mmio@0x9999"):
            restore_devices(second.buses, dict(saved, **{"mmio@0x9999": {}}))
        missing = {key: value for key, value in saved.items() if key != "mmio@0x2000000"}
        with pytest.raises(SnapshotError, match="no state for the Clint at mmio@0x2000000"):
            restore_devices(second.buses, missing)
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"format": "other"}, "not an axvisor snapshot manifest"),
        ({"format": "axvisor-snapshot", "format_version": 2, "project_version": "9.9"}, "format version 2 is newer"),
        ({"format": "axvisor-snapshot", "format_version": 1}, "config is missing"),
    ],
)
def test_manifests_this_version_cannot_read_are_refused(manifest: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=message):
        check_manifest(manifest, tmp_path)


def test_first_difference_names_the_dotted_key() -> None:
    saved = {"base": {"cpu_num": 1, "name": "a"}, "kernel": {"memory_regions": [[1, 2], [3, 4]]}}
    assert first_difference(saved, json.loads(json.dumps(saved))) is None
    assert first_difference(saved, {**saved, "base": {"cpu_num": 4, "name": "a"}}) == "base.cpu_num"
    other = {**saved, "kernel": {"memory_regions": [[1, 2], [3, 5]]}}
    assert first_difference(saved, other) == "kernel.memory_regions[1][1]"
