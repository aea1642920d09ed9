"""Idle memory: an idle riscv64 Linux VM at its shell, resident memory outside the guest's RAM, on
axvisor's software CPU and on qemu-system-riscv64 -M virt (TCG), same OpenSBI, kernel, initramfs,
disk and RAM size, same run. Target (issue 11): ours/QEMU <= 0.5.

Resident memory is the process's Rss (/proc/PID/smaps_rollup); the guest RAM it holds is the Rss
of the mapping of the guest RAM's size (/proc/PID/smaps; QEMU's may be a little larger, for
alignment), i.e. the guest pages actually touched. What is left is the VMM's own cost: the
interpreter or binary, libraries, the translation cache, device state. Both sides are one process
(threads only), read the same way. Each side boots to the shell prompt, then idles for
``--settle`` seconds before it is read (long enough for a soft hart that releases its
translated code when idle, code_buffer.IdleRelease, to have done so). What is left is split into the
translation buffer (anonymous writable+executable mappings: unicorn's per engine, QEMU's TCG
buffer), other anonymous memory (heaps, malloc arenas, the Python objects, stacks) and file pages
(the binary and libraries as far as they were read).

    .venv/bin/python benches/idle_memory.py [--runs N] [--settle SECONDS]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect
from riscv_linux import SHELL, our_config, qemu_command
from timing import ROOT, axvisor_command

GUEST_RAM = 512 << 20
"""Both sides' guest RAM: the shipped config's region and riscv_linux's QEMU -m 512M."""
ALIGN_SLACK = 4 << 20
"""How much larger than the guest RAM its mapping may be (QEMU aligns its RAM block)."""


def smaps_rss_kib(pid: int) -> tuple[int, int]:
    """(total Rss, Rss of the guest RAM mapping), KiB."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            total = int(line.split()[1])
    guest = sum(kib for kind, kib in mapping_rss_kib(pid) if kind == "guest RAM")
    if guest == 0:
        raise SystemExit(f"pid {pid}: no mapping of the guest RAM's size ({GUEST_RAM >> 20} MiB) is resident")
    return total, guest


def mapping_rss_kib(pid: int) -> list[tuple[str, int]]:
    """(kind, Rss KiB) of each mapping: guest RAM, translation buffer, anonymous or file."""
    found: list[tuple[str, int]] = []
    kind = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        field, _, rest = line.partition(":")
        head = line.split()
        if len(head) >= 5 and "-" in head[0]:  # a mapping's first line: address range, perms, offset, dev, inode
            start, _, end = head[0].partition("-")
            size = int(end, 16) - int(start, 16)
            path = head[5] if len(head) > 5 else ""
            if GUEST_RAM <= size <= GUEST_RAM + ALIGN_SLACK:
                kind = "guest RAM"
            elif path.startswith("/") and head[4] != "0":
                kind = "files"
            elif head[1] == "rwxp":
                kind = "translation buffer"
            else:
                kind = "other anonymous"
        elif field == "Rss":
            found.append((kind, int(rest.split()[0])))
    return found


def breakdown(pid: int) -> str:
    """What the memory outside guest RAM is, MiB."""
    kinds = ("translation buffer", "other anonymous", "files")
    mib = {kind: sum(kib for k, kib in mapping_rss_kib(pid) if k == kind) / 1024 for kind in kinds}
    return ", ".join(f"{kind} {mib[kind]:.1f}" for kind in kinds)


def idle_reading(command: list[str], settle: float) -> tuple[float, float, float, str]:
    """Boot ``command`` to the shell, idle, read it: (total, guest RAM, outside) in MiB and what
    the outside is."""
    child = pexpect.spawn(command[0], command[1:], cwd=str(ROOT), timeout=900, encoding="utf-8", codec_errors="replace")
    try:
        child.expect_exact(SHELL)
        deadline = time.monotonic() + settle
        while (left := deadline - time.monotonic()) > 0:  # keep reading the console while it idles
            try:
                child.read_nonblocking(65536, timeout=left)
            except pexpect.TIMEOUT:
                pass
        total, guest = smaps_rss_kib(child.pid)
        return total / 1024, guest / 1024, (total - guest) / 1024, breakdown(child.pid)
    finally:
        child.close(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle at the prompt before reading")
    args = parser.parse_args()
    out = subprocess.run(
        [str(ROOT / "scripts" / "prepare-riscv-linux.sh")], check=True, capture_output=True, text=True
    ).stdout
    pristine = Path(next(line.split()[1] for line in out.splitlines() if line.startswith("disk ")))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        disk = folder / "disk.ext4"
        shutil.copy(pristine, disk)
        sides = {"axvisor": axvisor_command(our_config(folder, disk, "shell")), "QEMU": qemu_command(disk, "shell")}
        outside: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.runs):
            for name, command in sides.items():
                total, guest, rest, parts = idle_reading(command, args.settle)
                outside[name].append(rest)
                print(
                    f"{name}: Rss {total:.1f} MiB, guest RAM touched {guest:.1f} MiB, outside guest RAM {rest:.1f} MiB"
                    f" ({parts})",
                    flush=True,
                )
    ours, peer = statistics.median(outside["axvisor"]), statistics.median(outside["QEMU"])
    print(
        f"idle riscv Linux VM, resident memory outside guest RAM: axvisor {ours:.1f} MiB, QEMU {peer:.1f} MiB, "
        f"ratio {ours / peer:.2f} (axvisor/QEMU), target <= 0.5  [runs: {args.runs}]",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
