"""Disk images as `axvisor run` opens them: one read-write VM per image, whether the other VM
runs in this VMM or in another process, and a disk_path that cannot be a disk is one line.

One VM boots (U-Boot, held at its prompt while a second VMM tries the same image); the other
runs fail while their VMs are built, before any guest code runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from .vmm_watch import watch, watch_result

ROOT = Path(__file__).parent.parent
PROMPT = "=> "
CONFIG = """
[base]
id = {id}
name = "disk-{id}"
vm_type = 1
cpu_num = 1
arch = "riscv64"
backend = "soft"

[kernel]
entry_point = 0x8000_0000
image_location = "fs"
bios_path = "{firmware}"
bios_load_addr = 0x8000_0000
kernel_path = "{uboot}"
kernel_load_addr = 0x8020_0000
disk_path = "{disk}"
memory_regions = [[0x8000_0000, 0x800_0000, 0x7, 0]]

[devices]
emu_devices = [
    ["uart0", 0x1000_0000, 0x100, 10, 0x2, []],
    ["test", 0x10_0000, 0x1000, 0, 0x82, []],
    ["virtio-blk", 0x1000_1000, 0x1000, 1, 0xE1, [{read_only}]],
]
passthrough_devices = []
interrupt_mode = "emulated"
"""


@pytest.fixture(scope="module")
def images() -> dict[str, Path]:
    """OpenSBI, U-Boot and the ext4 disk image from the image cache (fetched or built if missing)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "prepare-riscv-linux.sh")], check=True, capture_output=True, text=True, timeout=1800
    ).stdout
    found = {line.split()[0]: Path(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2}
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "u-boot-qemu"], check=True, timeout=1200, capture_output=True
    )
    found["uboot"] = found["firmware"].parent.parent / "u-boot-qemu" / "qemu-riscv64_smode" / "u-boot.bin"
    return found


def config(tmp_path: Path, images: dict[str, Path], vm_id: int, disk: Path, read_only: bool = False) -> Path:
    path = tmp_path / f"disk-{vm_id}.toml"
    path.write_text(
        CONFIG.format(id=vm_id, firmware=images["firmware"], uboot=images["uboot"], disk=disk, read_only=int(read_only))
    )
    return path


def run_vmm(*configs: Path) -> subprocess.CompletedProcess[str]:
    """`axvisor run` without a terminal, for runs that must end while their VMs are built."""
    return watch_result(
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "axvisor"), "run", *map(str, configs)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run ended with status 2 and exactly one line on stderr (no traceback); that line."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_second_vmm_process_cannot_open_a_disk_a_running_vm_writes(images: dict[str, Path], tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    shutil.copy(images["disk"], disk)
    first = watch(
        pexpect.spawn(
            sys.executable,
            ["-m", "axvisor", "run", str(config(tmp_path, images, 51, disk))],
            cwd=str(ROOT),
            timeout=300,
            encoding="utf-8",
            codec_errors="replace",
        )
    )
    try:
        first.expect("Hit any key to stop autoboot")  # built: the VMM holds the image
        first.send(" ")
        first.expect_exact(PROMPT)
        for read_only in (False, True):
            line = one_line(run_vmm(config(tmp_path, images, 52, disk, read_only)))
            assert "kernel.disk_path" in line and str(disk) in line, line
            assert "is in use by another VM (opened read-write there)" in line, line
        first.sendline("poweroff")
        first.expect(pexpect.EOF)
    finally:
        first.close(force=True)
    assert first.exitstatus == 0


def test_two_vms_of_one_vmm_cannot_share_a_read_write_disk(images: dict[str, Path], tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    shutil.copy(images["disk"], disk)
    line = one_line(run_vmm(config(tmp_path, images, 53, disk), config(tmp_path, images, 54, disk)))
    assert "disk-54.toml" in line and "kernel.disk_path" in line, line
    assert f"disk image {disk} is in use by another VM" in line, line


@pytest.mark.parametrize("kind", ["directory", "fifo", "empty"])
def test_a_disk_path_that_is_not_a_disk_is_one_line(images: dict[str, Path], tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.touch()
    line = one_line(run_vmm(config(tmp_path, images, 55, path)))
    assert "kernel.disk_path" in line and str(path) in line, line
    assert "expected a raw disk image file or a block device" in line, line
