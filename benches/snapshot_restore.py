"""Snapshot restore: a riscv64 Linux VM saved at its shell, restored in a fresh process until the
shell answers a command, against (1) a cold boot of the same VM to the shell answering, and (2)
QEMU's savevm/-loadvm of the same guest (qemu-system-riscv64 -M virt, TCG, same OpenSBI, kernel,
initramfs, RAM and disk, the disk behind a qcow2 overlay since savevm needs one), same run.
Targets (issue 12): restore/cold boot <= 0.05; restore/QEMU loadvm <= 1.0.

Each side is timed from spawning the process to the guest's answer to
``echo answered-$((6*7))`` (its output, ``answered-42``, never matches the typed echo). The
command is typed every ``POLL`` seconds until answered: a terminal switched to raw mode drops
what was typed before, and nothing says when that has happened.

    .venv/bin/python benches/snapshot_restore.py [--runs N] [--cold-runs N]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect
from riscv_linux import SHELL, our_config, qemu_command
from timing import CACHE, ROOT, axvisor_command

sys.path.insert(0, str(ROOT / "packages" / "axvisor" / "src"))

COMMAND = "echo answered-$((6*7))"
ANSWER = "answered-42"
POLL = 0.05
TIMEOUT = 900


def until_answered(command: list[str]) -> float:
    """Seconds from spawning ``command`` to the guest's answer; the process is then killed."""
    start = time.perf_counter()
    child = pexpect.spawn(command[0], command[1:], cwd=str(ROOT), timeout=TIMEOUT, encoding="utf-8",
                          codec_errors="replace")  # fmt: skip
    try:
        while time.perf_counter() - start < TIMEOUT:
            child.sendline(COMMAND)
            if child.expect([ANSWER, pexpect.TIMEOUT, pexpect.EOF], timeout=POLL) == 0:
                return time.perf_counter() - start
        raise SystemExit(f"{command[0]}: no answer in {TIMEOUT} s")
    finally:
        child.close(force=True)


def take_axvisor_snapshot(config: Path, snapshot: Path) -> None:
    """Boot in a VmManager to the shell, then ``snapshot --stop`` (not timed)."""
    from axvisor.manager import VmManager

    with VmManager() as manager:
        info = manager.create(config)
        seen: list[bytes] = []
        manager.console_subscribe(info.id, seen.append)
        manager.start(info.id)
        deadline = time.monotonic() + TIMEOUT
        while SHELL.encode() not in b"".join(seen):
            if time.monotonic() > deadline:
                raise SystemExit("axvisor: the VM never reached its shell")
            time.sleep(0.2)
        manager.snapshot(info.id, snapshot, stop=True)


def take_qemu_snapshot(command: list[str], monitor: Path) -> None:
    """Boot QEMU to the shell, ``savevm`` through its monitor socket, quit (not timed)."""
    child = pexpect.spawn(command[0], command[1:], cwd=str(ROOT), timeout=TIMEOUT, encoding="utf-8",
                          codec_errors="replace")  # fmt: skip
    try:
        child.expect_exact(SHELL)
        time.sleep(1)
        with socket.socket(socket.AF_UNIX) as mon:
            mon.connect(str(monitor))
            mon.settimeout(300)
            _monitor(mon, "")
            _monitor(mon, "savevm shell")
            _monitor(mon, "quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def _monitor(mon: socket.socket, line: str) -> None:
    if line:
        mon.sendall(line.encode() + b"\n")
    got = b""
    while b"(qemu) " not in got.split(line.encode(), 1)[-1] if line else b"(qemu) " not in got:
        chunk = mon.recv(4096)
        if not chunk:
            return
        got += chunk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="restores (and QEMU loadvms) to time")
    parser.add_argument("--cold-runs", type=int, default=1, help="cold boots to time (each takes tens of seconds)")
    args = parser.parse_args()
    if shutil.which("qemu-img") is None:
        raise SystemExit("qemu-img is missing: apt-get install qemu-utils")
    with tempfile.TemporaryDirectory(prefix="snapshot-bench-") as tmp:
        work = Path(tmp)
        disk = work / "disk.ext4"
        shutil.copy(CACHE / "riscv64" / "disk-vm.ext4", disk)
        config = our_config(work, disk, "shell")
        cold = [until_answered(axvisor_command(config)) for _ in range(args.cold_runs)]
        snapshot = work / "snap"
        take_axvisor_snapshot(config, snapshot)
        restore = [until_answered([*axvisor_command(), "--restore", str(snapshot)]) for _ in range(args.runs)]

        qdisk = work / "qemu-disk.ext4"
        shutil.copy(CACHE / "riscv64" / "disk-vm.ext4", qdisk)
        overlay = work / "overlay.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(qdisk), "-F", "raw", str(overlay)],
                       check=True)  # fmt: skip
        monitor = work / "qemu-monitor.sock"
        base = qemu_command(overlay, "shell")
        base = [arg.replace("format=raw", "format=qcow2") for arg in base]
        take_qemu_snapshot([*base, "-monitor", f"unix:{monitor},server,nowait"], monitor)
        loadvm = [until_answered([*base, "-loadvm", "shell"]) for _ in range(args.runs)]

    ours, boot, peer = statistics.median(restore), statistics.median(cold), statistics.median(loadvm)
    print(f"restore to an answering shell: axvisor {ours:.3f} s (runs {', '.join(f'{t:.3f}' for t in restore)})")
    print(f"cold boot to an answering shell: axvisor {boot:.3f} s (runs {', '.join(f'{t:.3f}' for t in cold)})")
    print(f"QEMU -loadvm to an answering shell: {peer:.3f} s (runs {', '.join(f'{t:.3f}' for t in loadvm)})")
    print(f"restore/cold boot: ratio {ours / boot:.3f}, target <= 0.05")
    print(f"restore/QEMU loadvm: ratio {ours / peer:.2f} (axvisor/QEMU), target <= 1.0", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
