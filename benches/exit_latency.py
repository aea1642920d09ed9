"""Exit latency on KVM: a CPL3 guest doing N port writes, run by the Python VMM and by a C
program with a bare KVM_RUN loop, in the same run on the same guest state.

The Python figure is the whole path a device access takes here: KVM_RUN, exit decoding, the
VM's dispatch to the port bus, back into the guest. Two ports are measured: 0x80 (POST codes,
no device: the bus counts and drops the write) and 0x70 (the CMOS index register: a device
model in Python). The C loop ignores both. Each side runs the guest with N and 2N writes; the
difference divided by N is the cost of one exit, free of start-up. Python and C runs alternate,
so both see the same machine load.

Each figure is given twice: wall-clock time, and the CPU time of the thread that runs the
vCPU (guest time included). On a shared machine the wall figure also counts time spent waiting
for a core; the CPU figure does not. "added" is ours minus the C loop's: what Python adds to
one exit round trip.

    .venv/bin/python benches/exit_latency.py [--writes N] [--repeat R]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from axvcpu import SystemDown
from axvcpu.backends.kvm import KvmX86Backend, probe
from axvcpu.x86 import DESCRIPTOR_TABLES, REGISTERS, SEGMENTS
from axvisor import build_vm
from axvm import load_config

ROOT = Path(__file__).resolve().parent.parent
RAM_SIZE = 0x100_0000
PORTS = {0x80: "port 0x80, no device", 0x70: "port 0x70, CMOS index (a Python device)"}

CONFIG = """
[base]
id = 1
name = "exit-latency"
vm_type = 1
cpu_num = 1
arch = "x86_64"
backend = "kvm"

[kernel]
entry_point = 0x10_0000
kernel_path = "{image}"
kernel_load_addr = 0x10_0000
cmdline = "n={writes} port={port}"
memory_regions = [[0x0, {ram:#x}, 0x7, 0]]
"""


class Seconds(NamedTuple):
    wall: float
    cpu: float


def write_config(folder: Path, image: Path, writes: int, port: int = 0x80) -> Path:
    path = folder / f"bench-{port}-{writes}.toml"
    path.write_text(CONFIG.format(image=image, writes=writes, port=port, ram=RAM_SIZE))
    return path


def python_seconds(config: Path) -> Seconds:
    vm = build_vm(load_config(config), KvmX86Backend())
    vm.boot()
    try:
        wall, cpu = time.perf_counter(), time.thread_time()
        exit_reason = vm.run_vcpu(0)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        assert exit_reason == SystemDown(0), exit_reason
        return Seconds(wall, cpu)
    finally:
        vm.stop()


def c_seconds(config: Path, binary: Path, folder: Path) -> Seconds:
    """Boot setup by the Python VMM, then RAM and vCPU state handed to the C loop."""
    vm = build_vm(load_config(config), KvmX86Backend())
    vm.boot()
    try:
        ram = folder / "ram.bin"
        ram.write_bytes(vm.addrspace.memory.read(0, RAM_SIZE))
        vcpu = vm.vcpus[0].arch
        lines = [f"reg {name} {vcpu.get_register(name)}" for name in REGISTERS]
        for name in SEGMENTS:
            s = vcpu.get_segment(name)
            lines.append(
                f"seg {name} {s.base} {s.limit} {s.selector} {s.type} {s.present} {s.dpl} {s.db} {s.s} " f"{s.l} {s.g}"
            )
        for name in DESCRIPTOR_TABLES:
            base, limit = vcpu.get_descriptor_table(name)
            lines.append(f"dt {name} {base} {limit}")
        state = folder / "state.txt"
        state.write_text("\n".join(lines) + "\n")
    finally:
        vm.stop()
    out = subprocess.run([str(binary), str(ram), str(state)], capture_output=True, text=True, check=True).stdout
    fields = out.split()
    return Seconds(float(fields[fields.index("seconds") + 1]), float(fields[fields.index("cpu_seconds") + 1]))


def per_exit(measure: Callable[[Path], Seconds], small: Path, large: Path, writes: int) -> Seconds:
    """Seconds per exit: the 2N-write run minus the N-write run, over N."""
    one, two = measure(small), measure(large)
    return Seconds((two.wall - one.wall) / writes, (two.cpu - one.cpu) / writes)


def line(label: str, ours: list[Seconds], peer: list[Seconds], field: str) -> str:
    mine = statistics.median(getattr(s, field) for s in ours) * 1e6
    theirs = statistics.median(getattr(s, field) for s in peer) * 1e6
    return (
        f"  {label:<5} ours {mine:6.1f} us, C loop {theirs:6.1f} us, ratio {mine / theirs:.2f}, "
        f"added {mine - theirs:+6.1f} us (target: added <= 3 us)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    problem = probe()
    if problem is not None:
        print(f"exit_latency: KVM unusable: {problem}", file=sys.stderr)
        return 2
    logging.getLogger("axdevice.bus").setLevel(logging.ERROR)  # port 0x80's one warning per VM built
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([str(ROOT / "tests/guests/build.sh"), str(folder), "bench"], check=True)
        binary = folder / "kvm_exit_loop"
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-o", str(binary), str(Path(__file__).parent / "kvm_exit_loop.c")], check=True
        )
        image = folder / "bench.bin"
        for port, label in PORTS.items():
            small = write_config(folder, image, args.writes, port)
            large = write_config(folder, image, 2 * args.writes, port)
            ours: list[Seconds] = []
            peer: list[Seconds] = []
            for _ in range(args.repeat):  # alternating, so both sides see the same load
                ours.append(per_exit(python_seconds, small, large, args.writes))
                peer.append(per_exit(lambda config: c_seconds(config, binary, folder), small, large, args.writes))
            print(f"KVM port-exit round trip, {label} ({args.writes} writes, median of {args.repeat}):")
            print(line("wall", ours, peer, "wall"))
            print(line("cpu", ours, peer, "cpu"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
