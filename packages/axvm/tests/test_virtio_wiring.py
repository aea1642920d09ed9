"""Virtio devices from emu_devices entries: transports on the MMIO bus, host resources asked
for their backends, and config mistakes named by entry."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axdevice import RxResult
from axvcpu import MmioRead
from axvm import AxVM, ConfigError, ScriptedBackend, parse_config
from axvm.host import LocalHost

BASE = """
[base]
id = 7
name = "virtio"
vm_type = 2
cpu_num = 1
arch = "riscv64"

[kernel]
entry_point = 0x8020_0000
kernel_path = "Image"
kernel_load_addr = 0x8020_0000
{disk}
memory_regions = [[0x8000_0000, 0x800_0000, 0x7, 0]]

[devices]
emu_devices = [
  ["virtio-blk", 0x1000_1000, 0x1000, 1, 0xE1, []],
  ["virtio-rng", 0x1000_2000, 0x1000, 2, 0xE4, []],
  ["virtio-console", 0x1000_3000, 0x1000, 3, 0xE3, []],
  ["net0", 0x1000_4000, 0x1000, 4, 0xE2, []],
]
netdevs = {{ net0 = "fake:link" }}
"""
MAGIC = 0x7472_6976


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.deliver: Callable[[bytes], RxResult] | None = None
        self.closed = False

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def start(self, deliver: Callable[[bytes], RxResult]) -> None:
        self.deliver = deliver

    def rx_ready(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeHost(LocalHost):
    def __init__(self) -> None:
        self.links: list[FakeLink] = []

    def open_netdev(self, spec: str) -> FakeLink:
        assert spec == "fake:link"
        self.links.append(FakeLink())
        return self.links[-1]


def config(tmp_path: Path, disk: bool = True):
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 0x10000)
    return parse_config(BASE.format(disk=f'disk_path = "{image}"' if disk else ""), tmp_path / "vm.toml")


def test_every_virtio_device_answers_with_the_magic_value(tmp_path: Path) -> None:
    reads = [MmioRead(GuestPhysAddr(base), AccessWidth.DWORD) for base in (0x1000_1000, 0x1000_2000, 0x1000_3000,
                                                                           0x1000_4000)]
    reads += [MmioRead(GuestPhysAddr(base + 8), AccessWidth.DWORD) for base in (0x1000_1000, 0x1000_2000,
                                                                                0x1000_3000, 0x1000_4000)]
    backend = ScriptedBackend({0: reads})
    host = FakeHost()
    vm = AxVM(config(tmp_path), backend, host=host)
    vm.mark_loaded()
    vm.boot()
    vm.run_vcpu(0)
    answers = backend.vcpus[0].completed_reads
    assert answers[:4] == [MAGIC] * 4
    assert answers[4:] == [2, 4, 3, 1]  # device ids: block, entropy, console, network
    assert len(vm.virtio_consoles) == 1 and host.links[0].deliver is not None
    vm.stop()
    assert host.links[0].closed


def test_a_disk_needs_disk_path_and_a_failed_build_releases_everything(tmp_path: Path) -> None:
    backend, host = ScriptedBackend(), FakeHost()
    with pytest.raises(ConfigError, match=r"emu_devices\[0\].*kernel.disk_path"):
        AxVM(config(tmp_path, disk=False), backend, host=host)
    assert backend.closed and backend.stage2.mappings == ()
    assert [link.closed for link in host.links] == [True]  # the network link opened before the error


def test_a_network_device_needs_its_netdev(tmp_path: Path) -> None:
    text = BASE.format(disk="").replace('netdevs = { net0 = "fake:link" }', "")
    text = text.replace('  ["virtio-blk", 0x1000_1000, 0x1000, 1, 0xE1, []],\n', "")
    with pytest.raises(ConfigError, match=r"devices.netdevs.net0"):
        AxVM(parse_config(text), ScriptedBackend(), host=FakeHost())


def test_without_a_vmm_there_is_no_host_network(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no host network backend"):
        AxVM(config(tmp_path), ScriptedBackend())


def test_the_device_tree_lists_each_virtio_transport(tmp_path: Path) -> None:
    from axvm.machines.fdt import find, parse_dtb

    vm = AxVM(config(tmp_path), ScriptedBackend(), host=FakeHost())
    vm.mark_loaded()
    vm.boot()
    dtb_addr = vm.backend.vcpus[0].registers["a1"]
    blob = vm.addrspace.memory.read(GuestPhysAddr(dtb_addr), 0x4000)
    tree = parse_dtb(blob)
    for base in (0x1000_1000, 0x1000_2000, 0x1000_3000, 0x1000_4000):
        assert find(tree, f"/soc/virtio_mmio@{base:x}") is not None
    vm.stop()


def test_a_disk_another_vm_holds_is_refused_naming_the_key(tmp_path: Path) -> None:
    first = AxVM(config(tmp_path), ScriptedBackend(), host=FakeHost())
    image = tmp_path / "disk.img"
    second_config = parse_config(BASE.format(disk=f'disk_path = "{image}"'), tmp_path / "vm.toml")
    with pytest.raises(ConfigError, match=r"emu_devices\[0\].*kernel.disk_path: disk image .* is in use by another VM"):
        AxVM(second_config, ScriptedBackend(), host=FakeHost())
    first.stop()  # releases the image
    AxVM(second_config, ScriptedBackend(), host=FakeHost()).stop()


@pytest.mark.parametrize("kind", ["directory", "fifo", "empty"])
def test_a_disk_path_that_is_not_a_disk_is_refused_naming_the_key(tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.touch()
    text = BASE.format(disk=f'disk_path = "{path}"')
    with pytest.raises(ConfigError, match=r"emu_devices\[0\].*kernel.disk_path: .* expected a raw disk image") as error:
        AxVM(parse_config(text, tmp_path / "vm.toml"), ScriptedBackend(), host=FakeHost())
    assert len(str(error.value).splitlines()) == 1
