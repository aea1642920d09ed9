"""aarch64 boot: time to U-Boot qemu_arm64's "Hit any key" and Linux (Debian's arm64 kernel) to
the first line /init prints, on axvisor's software CPU (the arm virt machine) and on
qemu-system-aarch64 -M virt (TCG, Cortex-A57, GICv2) with the same images and memory, in the
same run. Medians and ratios (axvisor/QEMU).

    .venv/bin/python benches/aarch64_boot.py [--uboot-runs N] [--linux-runs N]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import CACHE, ROOT, axvisor_command, report, time_markers

UBOOT_PROMPT = r"Hit any key to stop autoboot"
MARKER = "axvisor-init: starting"
CMDLINE = "console=ttyAMA0 earlycon=pl011,0x9000000 init.script=poweroff"


def qemu_arm_command(*args: str, memory: str, smp: int = 1) -> list[str]:
    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        raise SystemExit("qemu-system-aarch64 is missing: apt-get install qemu-system-arm")
    return [qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", memory, "-smp", str(smp), "-nographic", *args]


def linux_config(folder: Path, disk: Path) -> Path:
    text = (ROOT / "configs" / "vms" / "linux-aarch64-virt-smp1.toml").read_text()
    text = re.sub(r'^cmdline = "[^"]*"', f'cmdline = "{CMDLINE}"', text, flags=re.M)
    text = re.sub(r'^disk_path = "[^"]*"', f'disk_path = "{disk}"', text, flags=re.M)
    path = folder / "linux-poweroff.toml"
    path.write_text(text.replace('"~/', f'"{Path.home()}/'))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uboot-runs", type=int, default=3)
    parser.add_argument("--linux-runs", type=int, default=3, help="Linux boots on each side (0: none)")
    args = parser.parse_args()
    out = subprocess.run(
        [str(ROOT / "scripts" / "prepare-arm64-linux.sh")], check=True, capture_output=True, text=True
    ).stdout
    paths = {line.split()[0]: Path(line.split()[1]) for line in out.splitlines() if len(line.split()) >= 2}
    images = CACHE / "arm64"
    uboot = ROOT / "configs" / "vms" / "uboot-aarch64-virt-smp1.toml"
    ours = [time_markers(axvisor_command(uboot), [UBOOT_PROMPT])[0] for _ in range(args.uboot_runs)]
    qemu = qemu_arm_command("-bios", str(paths["firmware"]), memory="128M")
    peer = [time_markers(qemu, [UBOOT_PROMPT])[0] for _ in range(args.uboot_runs)]
    report("U-Boot qemu_arm64 'Hit any key', 1 vCPU", ours, peer)
    if not args.linux_runs:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        disk = Path(tmp) / "disk.ext4"
        shutil.copy(paths["disk"], disk)
        config = linux_config(Path(tmp), disk)
        ours = [time_markers(axvisor_command(config), [MARKER])[0] for _ in range(args.linux_runs)]
        qemu = qemu_arm_command(
            "-kernel",
            str(images / "linux" / "Image"),
            "-initrd",
            str(images / "initramfs.cpio.gz"),
            "-append",
            CMDLINE,
            "-drive",
            f"file={disk},if=none,format=raw,id=d0,readonly=on",
            "-device",
            "virtio-blk-device,drive=d0",
            "-device",
            "virtio-rng-device",
            memory="512M",
        )
        peer = [time_markers(qemu, [MARKER])[0] for _ in range(args.linux_runs)]
        report("Linux boot to the first /init line, 1 vCPU", ours, peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
