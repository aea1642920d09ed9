"""riscv firmware boot: time to the end of OpenSBI's banner and to U-Boot's "Hit any key", on
axvisor's software CPU and on qemu-system-riscv64 -M virt (TCG), same Debian images, same memory,
several runs each, medians and ratios. Targets (issue 11): OpenSBI <= 1.5, U-Boot <= 1.3.

    .venv/bin/python benches/riscv_firmware_boot.py [--runs N] [--smp N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from timing import CACHE, ROOT, axvisor_command, qemu_riscv_command, report, time_markers

OPENSBI_END = r"Boot HART MEDELEG"
UBOOT_PROMPT = r"Hit any key to stop autoboot"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smp", type=int, choices=(1, 4), default=1)
    args = parser.parse_args()
    subprocess.run([str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True)
    firmware = CACHE / "riscv64" / "opensbi" / "fw_jump.bin"
    uboot = CACHE / "riscv64" / "u-boot-qemu" / "qemu-riscv64_smode" / "u-boot.bin"
    config = ROOT / "configs" / "vms" / f"uboot-riscv64-virt-smp{args.smp}.toml"
    ours = [time_markers(axvisor_command(config), [OPENSBI_END, UBOOT_PROMPT])
            for _ in range(args.runs)]
    qemu = qemu_riscv_command("-bios", str(firmware), "-kernel", str(uboot), memory="128M", smp=args.smp)
    peer = [time_markers(qemu, [OPENSBI_END, UBOOT_PROMPT]) for _ in range(args.runs)]
    report(f"OpenSBI banner end (smp{args.smp})", [o[0] for o in ours], [p[0] for p in peer], target="<= 1.5")
    report(f"U-Boot 'Hit any key' (smp{args.smp})", [o[1] for o in ours], [p[1] for p in peer], target="<= 1.3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
