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


def timed(command: Sequence[str], env: Mapping[str, str], trace: Path | None = None) -> tuple[float, dict[str, float]]:
    """Seconds from spawning ``command`` to its exit, and each traced mark's seconds from the spawn."""
    if trace is not None:
        trace.unlink(missing_ok=True)
        env = {**env, TRACE_ENV: str(trace)}
    start = time.monotonic_ns()
    done = subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
        check=False,
    )
    end = time.monotonic_ns()
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} exited with {done.returncode}: {done.stdout.decode(errors='replace')}")
    marks = {}
    if trace is not None:
        for line in trace.read_text().splitlines():
            event, ns = line.split()
            marks[event] = (int(ns) - start) / 1e9
    return (end - start) / 1e9, marks


def measure_ours(config: Path, env: Mapping[str, str], runs: int, trace: Path, label: str) -> list[float]:
    """Per run: seconds to exit; prints the first entry and first exit medians."""
    command = [sys.executable, "-m", "axvisor", "run", str(config)]
    timed(command, env)  # warm the page cache (and the bytecode cache, where it is on)
    results = [timed(command, env, trace) for _ in range(runs)]
    entry = statistics.median(marks["first_entry"] for _, marks in results)
    first_exit = statistics.median(marks["first_exit"] for _, marks in results)
    print(
        f"process start to first guest instruction ({label}): axvisor {entry:.3f} s "
        f"(first run back at {first_exit:.3f} s), target <= 0.1 s  [runs: {runs}]",
        flush=True,
    )
    return [total for total, _ in results]


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
        floor = statistics.median(timed([sys.executable, "-c", "pass"], cached)[0] for _ in range(args.runs))
        print(f"python -c pass: {floor:.3f} s", flush=True)
        if "PYTHONDONTWRITEBYTECODE" in os.environ:
            measure_ours(config, base_env, args.runs, trace, "PYTHONDONTWRITEBYTECODE as set here")
        ours = measure_ours(config, cached, args.runs, trace, "bytecode cached")
        peer_command = [qemu, "-M", "virt", "-m", "128M", "-smp", "1", "-nographic", "-bios", str(image)]
        timed(peer_command, base_env)
        peer = [timed(peer_command, base_env)[0] for _ in range(args.runs)]
    report("process start to exit, guest powers off at once", ours, peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
