"""Debian's arm64 kernel on the software CPU (the arm virt machine): a busybox shell on 1 and 2
vCPUs (the second started by PSCI CPU_ON), the virtio disk (reads, and a synced write that
reaches the host's image), entropy, and power-off with status 0.

Images come from scripts/prepare-arm64-linux.sh (cached); each boot takes a minute or more."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from .vmm_watch import watch

ROOT = Path(__file__).parent.parent
CONFIGS = ROOT / "configs" / "vms"
SHELL = "axvisor# "
BOOT_TIMEOUT = 900
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def images() -> dict[str, Path]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "prepare-arm64-linux.sh")], check=True, capture_output=True, text=True, timeout=1800
    ).stdout
    return {line.split()[0]: Path(line.split()[1]) for line in out.splitlines() if len(line.split()) >= 2}


def private_config(tmp_path: Path, name: str, disk: Path) -> Path:
    """A copy of a shipped config with its own disk (tests never write the shared image)."""
    text = (CONFIGS / name).read_text()
    shipped = 'disk_path = "~/.cache/axvisor/arm64/disk-vm.ext4"'
    assert shipped in text
    path = tmp_path / name
    path.write_text(text.replace(shipped, f'disk_path = "{disk}"').replace('"~/', f'"{Path.home()}/'))
    return path


def spawn(config: Path) -> pexpect.spawn:
    return watch(
        pexpect.spawn(
            sys.executable,
            ["-m", "axvisor", "run", str(config)],
            cwd=str(ROOT),
            timeout=BOOT_TIMEOUT,
            encoding="utf-8",
            codec_errors="replace",
        )
    )


def shell(child: pexpect.spawn, command: str, timeout: float = 180) -> str:
    child.sendline(command)
    child.expect_exact(SHELL, timeout=timeout)
    return child.before


def test_shell_disk_entropy_and_poweroff(images: dict[str, Path], tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    shutil.copy(images["disk"], disk)
    child = spawn(private_config(tmp_path, "linux-aarch64-virt-smp1.toml", disk))
    try:
        child.expect("psci: PSCIv1.0 detected in firmware")
        child.expect("axvisor-init: starting")
        child.expect_exact(SHELL)
        assert shell(child, "grep -c ^processor /proc/cpuinfo").split()[-1] == "1"
        assert "hello from the axvisor disk image" in shell(child, "mount /dev/vda /mnt && cat /mnt/hello.txt")
        assert shell(child, "head -c 32 /dev/hwrng | wc -c").split()[-1] == "32"
        shell(child, "echo written by the arm64 guest > /mnt/guest.txt && sync && umount /mnt")
        child.sendline("poweroff -f")
        child.expect(pexpect.EOF, timeout=180)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    dump = subprocess.run(["debugfs", "-R", "cat /guest.txt", str(disk)], capture_output=True, text=True)
    assert dump.stdout.strip() == "written by the arm64 guest", dump.stderr


def test_second_vcpu_comes_online_through_psci(images: dict[str, Path], tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    shutil.copy(images["disk"], disk)
    child = spawn(private_config(tmp_path, "linux-aarch64-virt-smp2.toml", disk))
    try:
        child.expect(r"smp: Brought up 1 node, (\d+) CPUs?")
        assert child.match.group(1) == "2"
        child.expect_exact(SHELL)
        assert shell(child, "cat /sys/devices/system/cpu/online").split()[-1] == "0-1"
        child.sendline("poweroff -f")
        child.expect(pexpect.EOF, timeout=180)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
