#!/usr/bin/env python3
"""qemu-riscv-linux.py: boot the riscv64 Linux guest images under QEMU, the reference peer.

Boots what scripts/prepare-riscv-linux.sh leaves in the cache (OpenSBI fw_jump, Debian's kernel,
the busybox initramfs, the ext4 disk) on QEMU's virt machine with the virtio-mmio devices the
initramfs loads drivers for: virtio-blk (the disk, read-only), virtio-rng, a virtconsole (hvc0,
written to a file) and virtio-net (user networking). init.script= on the kernel command line
picks what /init does (scripts/initramfs-init.sh); except for `shell`, the run is timed:

  qemu: marker 2.612 s, check ok 6.105 s, exit 6.190 s (status 0)

is the last line, on stderr: seconds from starting QEMU to the init's marker line, to its
result line (check mode), and to QEMU's exit (the guest powered off). Exit status: 0 when the
guest powered off (and, for check, said "check ok"), 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

PROG = "qemu-riscv-linux"
MARKER = "axvisor-init: starting"
CHECK_OK = "axvisor-init: check ok"
CHECK_FAILED = "axvisor-init: check failed"


def qemu_command(args: argparse.Namespace, images: Path) -> list[str]:
    append = f"console=ttyS0 init.script={args.script} {args.append}".strip()
    command = [
        args.qemu,
        "-M",
        "virt",
        "-m",
        args.memory,
        "-smp",
        str(args.smp),
        "-nographic",
        "-no-reboot",
        "-bios",
        str(images / "opensbi" / "fw_jump.bin"),
        "-kernel",
        str(images / "linux" / "Image"),
        "-initrd",
        str(images / "initramfs.cpio.gz"),
        "-append",
        append,
        "-device",
        "virtio-rng-device",
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-device,netdev=n0",
        "-device",
        "virtio-serial-device",
        "-chardev",
        f"file,id=hvc0,path={args.hvc0}",
        "-device",
        "virtconsole,chardev=hvc0",
    ]
    if not args.no_disk:
        command += [
            "-drive",
            f"file={images / 'disk.ext4'},if=none,format=raw,id=d0,readonly=on",
            "-device",
            "virtio-blk-device,drive=d0",
        ]
    return command


def timed_run(command: list[str], timeout: float, echo: bool) -> tuple[int | None, dict[str, float]]:
    """Run QEMU, echoing its console; the times (s) of the marker, result and exit, and its status."""
    times: dict[str, float] = {}
    start = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            now = time.monotonic() - start
            if echo:
                print(line, flush=True)
            if line.startswith(MARKER):
                times.setdefault("marker", now)
            elif line.startswith((CHECK_OK, CHECK_FAILED)):
                times.setdefault("check ok" if line.startswith(CHECK_OK) else "check failed", now)
        status = process.wait()
    finally:
        timer.cancel()
    times["exit"] = time.monotonic() - start
    return (None if times["exit"] >= timeout else status), times


def main(argv: list[str] | None = None) -> int:
    cache = Path(os.environ.get("AXVISOR_CACHE") or Path.home() / ".cache" / "axvisor")
    parser = argparse.ArgumentParser(prog="qemu-riscv-linux.py", description=__doc__.splitlines()[0].partition(": ")[2])
    parser.add_argument(
        "--script",
        default="check",
        help="init.script= for /init: check (default), poweroff, shell, or a /PATH in the initramfs",
    )
    parser.add_argument("--append", default="", help="more kernel command line (e.g. quiet)")
    parser.add_argument("--smp", type=int, default=1, help="harts (default 1)")
    parser.add_argument("--memory", default="512M", help="guest RAM (default 512M)")
    parser.add_argument("--no-disk", action="store_true", help="attach no virtio-blk disk")
    parser.add_argument("--hvc0", default=os.devnull, help="file that receives the virtconsole's output")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before QEMU is killed (default 120)")
    parser.add_argument("--quiet", action="store_true", help="print only the timing line")
    parser.add_argument("--qemu", default="qemu-system-riscv64", help="QEMU binary (default %(default)s)")
    parser.add_argument("--print-command", action="store_true", help="print the QEMU command line and exit")
    args = parser.parse_args(argv)

    images = cache / "riscv64"
    needed = [images / "opensbi" / "fw_jump.bin", images / "linux" / "Image", images / "initramfs.cpio.gz"]
    needed += [] if args.no_disk else [images / "disk.ext4"]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        print(f"{PROG}: missing {', '.join(missing)} (run scripts/prepare-riscv-linux.sh)", file=sys.stderr)
        return 2
    if shutil.which(args.qemu) is None:
        print(f"{PROG}: {args.qemu} is missing (Debian package qemu-system-misc)", file=sys.stderr)
        return 2
    command = qemu_command(args, images)
    if args.print_command:
        print(shlex.join(command))
        return 0
    if args.script == "shell":
        os.execvp(command[0], command)  # interactive: QEMU's own console (Ctrl-A x quits)

    status, times = timed_run(command, args.timeout, echo=not args.quiet)
    summary = ", ".join(f"{what} {seconds:.3f} s" for what, seconds in times.items())
    outcome = "killed after the timeout" if status is None else f"status {status}"
    print(f"qemu: {summary} ({outcome})", file=sys.stderr)
    ok = status == 0 and "marker" in times and (args.script != "check" or "check ok" in times)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
