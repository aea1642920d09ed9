"""riscv64 Linux: boot to the first line /init prints on 1 hart and on 4 harts, and a 64 MiB
sequential read of the virtio disk inside the guest (busybox dd), on axvisor's software CPU and on
qemu-system-riscv64 -M virt (TCG, -smp 1 or 4) with the same OpenSBI, kernel, initramfs, disk and
memory, in the same run. Medians and ratios; targets (issue 11): boot on 1 hart <= 1.25 and on 4
harts <= 1.5 (axvisor/QEMU), disk read >= 1.2 (axvisor/QEMU speed).

    .venv/bin/python benches/riscv_linux.py [--boot-runs N] [--smp4-runs N] [--read-runs N]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pexpect
from timing import CACHE, ROOT, axvisor_command, qemu_riscv_command, report, stop, time_markers

MARKER = "axvisor-init: starting"
SHELL = "axvisor# "
DD = "time dd if=/dev/vda of=/dev/null bs=1M count=64"
"""Debian's busybox dd reports no timing, so the shell's `time` measures it (inside the guest)."""
CMDLINE = "console=ttyS0 earlycon=uart8250,mmio,0x10000000 init.script={script}"


def our_config(folder: Path, disk: Path, script: str, harts: int = 1) -> Path:
    text = (ROOT / "configs" / "vms" / f"linux-riscv64-virt-smp{harts}.toml").read_text()
    text = re.sub(r'^cmdline = "[^"]*"', f'cmdline = "{CMDLINE.format(script=script)}"', text, flags=re.M)
    text = re.sub(r'^disk_path = "[^"]*"', f'disk_path = "{disk}"', text, flags=re.M)
    text = text.replace('"~/', f'"{Path.home()}/')
    path = folder / f"linux-{script}-smp{harts}.toml"
    path.write_text(text)
    return path


def qemu_command(disk: Path, script: str, harts: int = 1) -> list[str]:
    images = CACHE / "riscv64"
    return qemu_riscv_command(
        "-bios", str(images / "opensbi" / "fw_jump.bin"), "-kernel", str(images / "linux" / "Image"),
        "-initrd", str(images / "initramfs.cpio.gz"), "-append", CMDLINE.format(script=script),
        "-drive", f"file={disk},if=none,format=raw,id=d0", "-device", "virtio-blk-device,drive=d0",
        "-device", "virtio-rng-device", memory="512M", smp=harts)


def dd_seconds(command: list[str]) -> float:
    """Boot to the shell, run dd, return the seconds `time` reports for it."""
    child = pexpect.spawn(command[0], command[1:], cwd=str(ROOT), timeout=900, encoding="utf-8",
                          codec_errors="replace")
    try:
        child.expect_exact(SHELL)
        child.sendline(DD)
        child.expect(r"real\s+(\d+)m\s*([0-9.]+)s")
        return int(child.match.group(1)) * 60 + float(child.match.group(2))
    finally:
        stop(child)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boot-runs", type=int, default=3, help="1-hart boots on each side (0: none)")
    parser.add_argument("--smp4-runs", type=int, default=3, help="4-hart boots on each side (0: none)")
    parser.add_argument("--read-runs", type=int, default=3, help="disk reads on each side (0: none)")
    args = parser.parse_args()
    out = subprocess.run([str(ROOT / "scripts" / "prepare-riscv-linux.sh")], check=True, capture_output=True,
                         text=True).stdout
    pristine = Path(next(line.split()[1] for line in out.splitlines() if line.startswith("disk ")))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        disk = folder / "disk.ext4"
        shutil.copy(pristine, disk)
        if args.boot_runs:
            ours = our_config(folder, disk, "poweroff")
            boot_ours = [time_markers(axvisor_command(ours), [MARKER])[0] for _ in range(args.boot_runs)]
            boot_qemu = [time_markers(qemu_command(disk, "poweroff"), [MARKER])[0] for _ in range(args.boot_runs)]
            report("Linux boot to the first /init line, 1 hart", boot_ours, boot_qemu, target="<= 1.25")
        if args.smp4_runs:
            ours4 = our_config(folder, disk, "poweroff", harts=4)
            smp4_ours = [time_markers(axvisor_command(ours4), [MARKER])[0] for _ in range(args.smp4_runs)]
            smp4_qemu = [time_markers(qemu_command(disk, "poweroff", harts=4), [MARKER])[0]
                         for _ in range(args.smp4_runs)]
            report("Linux boot to the first /init line, 4 harts (QEMU -smp 4)", smp4_ours, smp4_qemu,
                   target="<= 1.5")
        if args.read_runs:
            shell = our_config(folder, disk, "shell")
            read_ours = [64 / dd_seconds(axvisor_command(shell)) for _ in range(args.read_runs)]
            read_qemu = [64 / dd_seconds(qemu_command(disk, "shell")) for _ in range(args.read_runs)]
            report("virtio disk sequential read, 64 MiB (MiB/s)", read_ours, read_qemu, unit="MiB/s",
                   higher_is_better=True, target=">= 1.2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
