"""Start-up: process start to the first guest instruction, and to the end of a guest whose first
instructions power the machine off, on axvisor's software CPU and on qemu-system-riscv64 -M virt
(TCG), same guest, same run; ``python -c pass`` as the floor every Python program pays.

The guest is five riscv64 instructions at 0x8000_0000 (the reset vector of both machines): store
0x5555 (sifive_test PASS) to 0x10_0000, then spin. axvisor marks the moment a vCPU thread first
calls into the backend (``AXVISOR_TRACE_STARTUP``, CLOCK_MONOTONIC, one clock for all
processes), and when that first run returned; QEMU cannot mark it, so the figure compared with
QEMU is process start to exit for that guest. Target for the first: <= 0.1 s.

By default the children run with bytecode caching on, as an installed axvisor does (pip compiles
its modules at install time); where this environment sets PYTHONDONTWRITEBYTECODE (every start
then compiles each module changed since its cached bytecode) that figure is printed as well.

    .venv/bin/python benches/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from timing import report

TRACE_ENV = "AXVISOR_TRACE_STARTUP"

# riscv64 encodings (RISC-V unprivileged ISA, RV32I base: LUI U-type, ADDI I-type, SW S-type, JAL J-type).
POWER_OFF_GUEST = struct.pack(
    "<5I",
    0x00100537,  # lui  a0, 0x100        a0 = 0x10_0000, sifive_test
    0x000055B7,  # lui  a1, 0x5
    0x55558593,  # addi a1, a1, 0x555    a1 = 0x5555, PASS
    0x00B52023,  # sw   a1, 0(a0)        power off with status 0
    0x0000006F,  # j    .
)

CONFIG = """\
# benches/startup.py: a guest that powers off at its fourth instruction
[base]
id = 1
name = "startup"
vm_type = 1
cpu_num = 1
arch = "riscv64"
backend = "soft"

[kernel]
entry_point = 0x8000_0000
image_location = "fs"
bios_path = "{image}"
bios_load_addr = 0x8000_0000
kernel_path = "{image}"
kernel_load_addr = 0x8020_0000
memory_regions = [[0x8000_0000, 0x800_0000, 0x7, 0]]

[devices]
emu_devices = [["test", 0x10_0000, 0x1000, 0, 0x82, []]]
passthrough_devices = []
"""


@dataclass
class Run:
    wall: float
    """Seconds from the spawn to the exit."""
    cpu: float
    """CPU seconds the process used (user + system, its rusage)."""
    marks: dict[str, tuple[float, float]]
    """Each traced event: seconds from the spawn, and the CPU seconds the process had used by then."""


def timed(command: Sequence[str], env: Mapping[str, str], trace: Path | None = None) -> Run:
    if trace is not None:
        trace.unlink(missing_ok=True)
        env = {**env, TRACE_ENV: str(trace)}
    with tempfile.TemporaryFile() as output:
        start = time.monotonic_ns()
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        end = time.monotonic_ns()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, for its rusage
        if process.returncode != 0:
            output.seek(0)
            raise SystemExit(f"{command[0]} exited with {process.returncode}: {output.read().decode(errors='replace')}")
    marks = {}
    if trace is not None:
        for line in trace.read_text().splitlines():
            event, ns, cpu_ns = line.split()
            marks[event] = ((int(ns) - start) / 1e9, int(cpu_ns) / 1e9)
    return Run((end - start) / 1e9, usage.ru_utime + usage.ru_stime, marks)


def measure_ours(config: Path, env: Mapping[str, str], runs: int, trace: Path, label: str) -> list[Run]:
    """Runs of the power-off guest; prints the first entry's and first exit's medians."""
    command = [sys.executable, "-m", "axvisor", "run", str(config)]
    timed(command, env)  # warm the page cache (and the bytecode cache, where it is on)
    results = [timed(command, env, trace) for _ in range(runs)]
    entry = statistics.median(run.marks["first_entry"][0] for run in results)
    entry_cpu = statistics.median(run.marks["first_entry"][1] for run in results)
    first_exit = statistics.median(run.marks["first_exit"][0] for run in results)
    print(
        f"process start to first guest instruction ({label}): axvisor {entry:.3f} s, {entry_cpu:.3f} CPU s "
        f"(first run back at {first_exit:.3f} s), target <= 0.1 s  [runs: {runs}]",
        flush=True,
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    qemu = shutil.which("qemu-system-riscv64")
    if qemu is None:
        raise SystemExit("qemu-system-riscv64 is missing: apt-get install qemu-system-misc")
    with tempfile.TemporaryDirectory(prefix="axvisor-startup-") as tmp:
        work = Path(tmp)
        image = work / "poweroff.bin"
        image.write_bytes(POWER_OFF_GUEST)
        config = work / "startup.toml"
        config.write_text(CONFIG.format(image=image))
        trace = work / "trace"
        base_env = dict(os.environ)
        cached = {key: value for key, value in base_env.items() if key != "PYTHONDONTWRITEBYTECODE"}
        floor = [timed([sys.executable, "-c", "pass"], cached) for _ in range(args.runs)]
        print(
            f"python -c pass: {statistics.median(run.wall for run in floor):.3f} s, "
            f"{statistics.median(run.cpu for run in floor):.3f} CPU s",
            flush=True,
        )
        if "PYTHONDONTWRITEBYTECODE" in os.environ:
            measure_ours(config, base_env, args.runs, trace, "PYTHONDONTWRITEBYTECODE as set here")
        ours = measure_ours(config, cached, args.runs, trace, "bytecode cached")
        peer_command = [qemu, "-M", "virt", "-m", "128M", "-smp", "1", "-nographic", "-bios", str(image)]
        timed(peer_command, base_env)
        peer = [timed(peer_command, base_env) for _ in range(args.runs)]
    label = "process start to exit, guest powers off at once"
    report(label, [run.wall for run in ours], [run.wall for run in peer])
    report(f"{label}, CPU time", [run.cpu for run in ours], [run.cpu for run in peer], unit="CPU s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
