"""Shared by the benchmarks: time a command's console to marker lines, and report medians."""

from __future__ import annotations

import shutil
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "axvisor"


def axvisor_command(*configs: Path) -> list[str]:
    return [sys.executable, "-m", "axvisor", "run", *map(str, configs)]


def qemu_riscv_command(*args: str, memory: str = "128M", smp: int = 1) -> list[str]:
    qemu = shutil.which("qemu-system-riscv64")
    if qemu is None:
        raise SystemExit("qemu-system-riscv64 is missing: apt-get install qemu-system-misc")
    return [qemu, "-M", "virt", "-m", memory, "-smp", str(smp), "-nographic", *args]


def time_markers(command: Sequence[str], markers: Sequence[str], timeout: float = 600,
                 then: str | None = None) -> list[float]:
    """Seconds from spawning ``command`` to each marker, in order; ``then`` is typed after the last."""
    start = time.perf_counter()
    child = pexpect.spawn(command[0], list(command[1:]), cwd=str(ROOT), timeout=timeout, encoding="utf-8",
                          codec_errors="replace")
    try:
        seen = []
        for marker in markers:
            child.expect(marker)
            seen.append(time.perf_counter() - start)
        if then is not None:
            child.send(then)
            child.expect(pexpect.EOF, timeout=120)
        return seen
    finally:
        stop(child)


def stop(child: pexpect.spawn) -> None:
    """End the child and reap it. pexpect gives a killed child 0.1 s to go before it raises "Could
    not terminate the child"; on a loaded machine a VMM with its guest RAM mapped takes longer."""
    try:
        child.close(force=True)
    except pexpect.ExceptionPexpect:
        child.kill(signal.SIGKILL)
        child.wait()


def report(label: str, ours: list[float], peer: list[float], unit: str = "s", higher_is_better: bool = False,
           target: str = "") -> str:
    mine, theirs = statistics.median(ours), statistics.median(peer)
    ratio = mine / theirs
    line = (f"{label}: axvisor {mine:.3f} {unit}, QEMU {theirs:.3f} {unit}, ratio {ratio:.2f}"
            f"{' (axvisor/QEMU, higher is better)' if higher_is_better else ' (axvisor/QEMU)'}"
            f"{f', target {target}' if target else ''}  [runs: {len(ours)}]")
    print(line, flush=True)
    return line
