"""Debian's riscv64 kernel on the software CPU: a busybox shell, the configured harts, the virtio
disk (reads, and writes that reach the host's image), entropy, hvc0, and two VMs on one link.

Images come from scripts/prepare-riscv-linux.sh (cached); each boot takes tens of seconds."""

from __future__ import annotations

import os
import re
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
BOOT_TIMEOUT = 600
"""Seconds to the shell: about 50 on one hart here, about 200 on four (idle harts still take turns)."""
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def images() -> dict[str, Path]:
    out = subprocess.run([str(ROOT / "scripts" / "prepare-riscv-linux.sh")], check=True, capture_output=True,
                         text=True, timeout=1800).stdout
    return {line.split()[0]: Path(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2}


def private_config(tmp_path: Path, name: str, disk: Path | None = None, cmdline: str | None = None) -> Path:
    """A copy of a shipped config with its own disk (tests never write the shared image)."""
    text = (CONFIGS / name).read_text()
    if disk is not None:
        text = text.replace('disk_path = "~/.cache/axvisor/riscv64/disk-vm.ext4"', f'disk_path = "{disk}"')
    if cmdline is not None:
        text = text.replace('cmdline = "console=ttyS0 earlycon=uart8250,mmio,0x10000000 init.script=shell"',
                            f'cmdline = "{cmdline}"')
    path = tmp_path / name
    path.write_text(text.replace('"~/', f'"{Path.home()}/'))
    return path


def spawn(*configs: Path, log_dir: Path | None = None) -> pexpect.spawn:
    env = dict(os.environ, AXVISOR_LOG_DIR=str(log_dir)) if log_dir is not None else None
    return watch(pexpect.spawn(sys.executable, ["-m", "axvisor", "run", *map(str, configs)], cwd=str(ROOT), env=env,
                               timeout=BOOT_TIMEOUT, encoding="utf-8", codec_errors="replace"))


def shell(child: pexpect.spawn, command: str, timeout: float = 120) -> str:
    child.sendline(command)
    child.expect_exact(SHELL, timeout=timeout)
    return child.before


def test_shell_disk_entropy_and_hvc0(images: dict[str, Path], tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    shutil.copy(images["disk"], disk)
    child = spawn(private_config(tmp_path, "linux-riscv64-virt-smp1.toml", disk))
    try:
        child.expect("axvisor-init: starting")
        child.expect_exact(SHELL)
        assert shell(child, "grep -c ^processor /proc/cpuinfo").split()[-1] == "1"
        assert "hello from the axvisor disk image" in shell(child, "mount /dev/vda /mnt && cat /mnt/hello.txt")
        assert shell(child, "head -c 32 /dev/hwrng | wc -c").split()[-1] == "32"
        assert "through hvc0" in shell(child, "echo through hvc0 > /dev/hvc0; sleep 1")
        shell(child, "echo written by the guest > /mnt/guest.txt && sync && umount /mnt")
        child.sendline("poweroff -f")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    dump = subprocess.run(["debugfs", "-R", "cat /guest.txt", str(disk)], capture_output=True, text=True)
    assert dump.stdout.strip() == "written by the guest", dump.stderr


@pytest.fixture(scope="module")
def bookworm_opensbi() -> Path:
    """Debian bookworm's OpenSBI 1.1 fw_jump, fetched into the cache beside trixie's (opensbi@bookworm/)."""
    script = ROOT / "scripts" / "fetch-debian-images.sh"
    out = subprocess.run(
        [str(script), "--arch", "riscv64", "opensbi@bookworm"], check=True, capture_output=True, text=True, timeout=600
    ).stdout
    found = re.search(r"^\s+(\S+/fw_jump\.bin) \(", out, re.MULTILINE)  # the report lists the laid-out files
    assert found is not None, out
    return Path(found.group(1))


@pytest.mark.parametrize("harts", [2, 4])
@pytest.mark.parametrize(("suite", "version"), [("trixie", "1.6"), ("bookworm", "1.1")])
def test_every_hart_comes_online_with_each_debian_opensbi(
    images: dict[str, Path], bookworm_opensbi: Path, tmp_path: Path, suite: str, version: str, harts: int
) -> None:
    """Linux starts the secondary harts through the firmware's SBI HSM hart_start. OpenSBI 1.1
    first parks them in a wfi loop that reads mip for the cold-boot hart's IPI; 1.6 does not."""
    firmware = bookworm_opensbi if suite == "bookworm" else images["firmware"]
    disk = tmp_path / "disk.ext4"
    shutil.copy(images["disk"], disk)
    config = private_config(tmp_path, "linux-riscv64-virt-smp4.toml", disk)
    shipped = f'bios_path = "{Path.home()}/.cache/axvisor/riscv64/opensbi/fw_jump.bin"'
    text = config.read_text()
    assert shipped in text and "cpu_num = 4" in text
    config.write_text(text.replace(shipped, f'bios_path = "{firmware}"').replace("cpu_num = 4", f"cpu_num = {harts}"))
    child = spawn(config)
    try:
        child.expect_exact(f"OpenSBI v{version}")
        child.expect(r"smp: Brought up 1 node, (\d+) CPUs?")
        assert child.match.group(1) == str(harts)
        child.expect_exact(SHELL)
        assert shell(child, "grep -c ^processor /proc/cpuinfo").split()[-1] == str(harts)
        assert shell(child, "cat /sys/devices/system/cpu/online").split()[-1] == f"0-{harts - 1}"
        child.send("\x01x")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_two_vms_ping_each_other_over_the_socket_backend(images: dict[str, Path], tmp_path: Path) -> None:
    a = (CONFIGS / "linuxnet-riscv64-virt-smp1.toml")
    b = (CONFIGS / "linuxnet2-riscv64-virt-smp1.toml")
    child = spawn(a, b, log_dir=tmp_path / "logs")
    try:
        child.expect(r"\[axvisor\] console: ")  # the status line naming the focused VM and the logs
        child.expect("axvisor-init: net: eth0 10.0.2.1/24")
        child.expect_exact(SHELL)
        log_b = tmp_path / "logs" / "linuxnet2-riscv64.log"
        deadline = 60
        shell(child, f"i=0; while [ $i -lt {deadline} ] && ! ping -c 1 -W 1 10.0.2.2 >/dev/null; do i=$((i+1)); "
                     "done; echo waited $i", timeout=deadline * 3 + 120)
        out = shell(child, "ping -c 3 10.0.2.2", timeout=120)
        assert "3 packets received" in out, out
        assert "axvisor-init: net: eth0 10.0.2.2/24" in log_b.read_text()
        child.send("\x01x")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


CUSTOM_INIT = """#!/bin/sh
# An /init written here, not the project's: load the modules the builder listed, use the disk.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
dir=/lib/modules/$(uname -r)
for module in $(cat $dir/modules.load); do insmod $dir/$module; done
i=0; while [ ! -e /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 /dev/vda /mnt
echo "custom: $(cat /mnt/hello.txt)"
echo "from a custom init" > /mnt/custom.txt
sync
umount /mnt
echo custom-done
poweroff -f
"""


def test_a_config_and_initramfs_written_elsewhere_boot_and_use_the_disk(images: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    init = tmp_path / "init.sh"
    init.write_text(CUSTOM_INIT)
    initramfs = tmp_path / "custom.cpio.gz"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build-initramfs.py"), "--init", str(init),
                    "--modules", "virtio_mmio,virtio_blk,ext4", "--output", str(initramfs)], check=True, timeout=600)
    disk = tmp_path / "disk.ext4"
    shutil.copy(images["disk"], disk)
    cache = Path.home() / ".cache" / "axvisor" / "riscv64"
    config = tmp_path / "custom.toml"
    subprocess.run([sys.executable, "-m", "axvisor", "generate", "-a", "riscv64", "-n", "custom", "-i", "42",
                    "-t", "2", "-k", str(cache / "linux" / "Image"), "-l", "0x80200000",
                    "--bios-path", str(cache / "opensbi" / "fw_jump.bin"), "--bios-load-addr", "0x80000000",
                    "--ramdisk-path", str(initramfs), "--ramdisk-load-addr", "0x84000000",
                    "-m", "0x80000000:0x10000000", "--cmdline", "console=ttyS0", "--disk-path", str(disk),
                    "--emu-device", "vblk,0x10008000,0x1000,8,0xe1", "--backend", "soft", "-O", str(config)],
                   check=True, cwd=ROOT)
    child = spawn(config)
    try:
        child.expect("custom: hello from the axvisor disk image")
        child.expect("custom-done")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    dump = subprocess.run(["debugfs", "-R", "cat /custom.txt", str(disk)], capture_output=True, text=True)
    assert dump.stdout.strip() == "from a custom init", dump.stderr


def test_a_vm_and_the_host_ping_over_tap_in_a_namespace(images: dict[str, Path], tmp_path: Path) -> None:
    """The TAP backend end to end: the test makes a network namespace with a TAP interface at
    10.0.3.1, runs the VM inside it, and the guest (10.0.3.2) and the host ping each other."""
    if os.geteuid() != 0 or shutil.which("ip") is None or not Path("/dev/net/tun").exists():
        pytest.skip("needs root, iproute2 and /dev/net/tun to make a namespace with a TAP interface")
    namespace, tap = f"axv-vm-{os.getpid()}", "axvtap0"
    text = (CONFIGS / "linuxnet-riscv64-virt-smp1.toml").read_text()
    udp = 'netdevs = { net0 = "udp:127.0.0.1:5001:127.0.0.1:5002" }'
    text = text.replace(udp, f'netdevs = {{ net0 = "tap:{tap}" }}')
    text = text.replace("axvisor.ip=10.0.2.1/24", "axvisor.ip=10.0.3.2/24").replace('"~/', f'"{Path.home()}/')
    config = tmp_path / "tap.toml"
    config.write_text(text)

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    ip("netns", "add", namespace)
    try:
        ip("-n", namespace, "tuntap", "add", "dev", tap, "mode", "tap")
        ip("-n", namespace, "addr", "add", "10.0.3.1/24", "dev", tap)
        ip("-n", namespace, "link", "set", tap, "up")
        command = ["netns", "exec", namespace, sys.executable, "-m", "axvisor", "run", str(config)]
        child = watch(pexpect.spawn("ip", command, cwd=str(ROOT), timeout=BOOT_TIMEOUT, encoding="utf-8",
                                    codec_errors="replace"))
        try:
            child.expect("axvisor-init: net: eth0 10.0.3.2/24")
            child.expect_exact(SHELL)
            out = shell(child, "ping -c 3 -W 5 10.0.3.1", timeout=120)
            assert "3 packets received" in out, out
            host = subprocess.run(["ip", "netns", "exec", namespace, "ping", "-c", "2", "-W", "5", "10.0.3.2"],
                                  capture_output=True, text=True, timeout=60)
            assert host.returncode == 0, host.stdout + host.stderr
            child.send("\x01x")
            child.expect(pexpect.EOF, timeout=120)
        finally:
            child.close(force=True)
        assert child.exitstatus == 0
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
