"""riscv firmware boot: time to the end of OpenSBI's banner and to U-Boot's "Hit any key", on
axvisor's software CPU and on qemu-system-riscv64 -M virt (TCG), same Debian images, same memory,
several runs each, medians and ratios. Targets (issue 11): OpenSBI <= 1.5, U-Boot <= 1.3.

Each marker also gets the CPU seconds the process (all its threads) had used when the marker was
seen, from /proc/PID/task/*/schedstat: on a machine others load, the wall clock swings with them
(QEMU's own banner time varied 2x between two runs of this benchmark) and the CPU figure less.

    .venv/bin/python benches/riscv_firmware_boot.py [--runs N] [--smp N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pexpect
from timing import CACHE, ROOT, axvisor_command, qemu_riscv_command, report, stop

OPENSBI_END = r"Boot HART MEDELEG"
UBOOT_PROMPT = r"Hit any key to stop autoboot"


def cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of ``pid`` (schedstat's first field: nanoseconds on a CPU)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e9


def markers_with_cpu(command: Sequence[str], markers: Sequence[str]) -> list[tuple[float, float]]:
    """For each marker: seconds from the spawn to its appearance, and the CPU seconds used by then."""
    start = time.perf_counter()
    child = pexpect.spawn(command[0], list(command[1:]), cwd=str(ROOT), timeout=600, encoding="utf-8",
                          codec_errors="replace")
    try:
        seen = []
        for marker in markers:
            child.expect(marker)
            seen.append((time.perf_counter() - start, cpu_seconds(child.pid)))
        return seen
    finally:
        stop(child)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smp", type=int, choices=(1, 4), default=1)
    args = parser.parse_args()
    subprocess.run([str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True)
    firmware = CACHE / "riscv64" / "opensbi" / "fw_jump.bin"
    uboot = CACHE / "riscv64" / "u-boot-qemu" / "qemu-riscv64_smode" / "u-boot.bin"
    config = ROOT / "configs" / "vms" / f"uboot-riscv64-virt-smp{args.smp}.toml"
    ours = [markers_with_cpu(axvisor_command(config), [OPENSBI_END, UBOOT_PROMPT]) for _ in range(args.runs)]
    qemu = qemu_riscv_command("-bios", str(firmware), "-kernel", str(uboot), memory="128M", smp=args.smp)
    peer = [markers_with_cpu(qemu, [OPENSBI_END, UBOOT_PROMPT]) for _ in range(args.runs)]
    for index, (label, target) in enumerate(((f"OpenSBI banner end (smp{args.smp})", "<= 1.5"),
                                             (f"U-Boot 'Hit any key' (smp{args.smp})", "<= 1.3"))):
        report(label, [o[index][0] for o in ours], [p[index][0] for p in peer], target=target)
        report(f"{label}, CPU time", [o[index][1] for o in ours], [p[index][1] for p in peer], unit="CPU s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
