"""Exit latency on KVM: a CPL3 guest doing N port writes, run by the Python VMM and by a C
program with a bare KVM_RUN loop, in the same run on the same guest state.

The Python figure is the whole path a device access takes here: KVM_RUN, exit decoding, the
VM's dispatch to the port bus (port 0x80 has no device: counted and dropped), back into the
guest. Each side runs the guest with N and 2N writes; the difference divided by N is the cost of
one exit, free of start-up. Prints both per-exit times and the ratio (Python / C).

    .venv/bin/python benches/exit_latency.py [--writes N] [--repeat R]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from axvcpu import SystemDown
from axvcpu.backends.kvm import KvmX86Backend, probe
from axvcpu.x86 import DESCRIPTOR_TABLES, REGISTERS, SEGMENTS
from axvisor import build_vm
from axvm import load_config

ROOT = Path(__file__).resolve().parent.parent
RAM_SIZE = 0x100_0000

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
cmdline = "n={writes}"
memory_regions = [[0x0, {ram:#x}, 0x7, 0]]
"""


def write_config(folder: Path, image: Path, writes: int) -> Path:
    path = folder / f"bench-{writes}.toml"
    path.write_text(CONFIG.format(image=image, writes=writes, ram=RAM_SIZE))
    return path


def python_seconds(config: Path) -> float:
    vm = build_vm(load_config(config), KvmX86Backend())
    vm.boot()
    try:
        start = time.perf_counter()
        exit_reason = vm.run_vcpu(0)
        elapsed = time.perf_counter() - start
        assert exit_reason == SystemDown(0), exit_reason
        return elapsed
    finally:
        vm.stop()


def c_seconds(config: Path, binary: Path, folder: Path) -> float:
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
            lines.append(f"seg {name} {s.base} {s.limit} {s.selector} {s.type} {s.present} {s.dpl} {s.db} {s.s} "
                         f"{s.l} {s.g}")
        for name in DESCRIPTOR_TABLES:
            base, limit = vcpu.get_descriptor_table(name)
            lines.append(f"dt {name} {base} {limit}")
        state = folder / "state.txt"
        state.write_text("\n".join(lines) + "\n")
    finally:
        vm.stop()
    out = subprocess.run([str(binary), str(ram), str(state)], capture_output=True, text=True, check=True).stdout
    fields = out.split()
    return float(fields[fields.index("seconds") + 1])


def per_exit(measure, small: Path, large: Path, writes: int, repeat: int) -> float:
    samples = [(measure(large) - measure(small)) / writes for _ in range(repeat)]
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    problem = probe()
    if problem is not None:
        print(f"exit_latency: KVM unusable: {problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([str(ROOT / "tests/guests/build.sh"), str(folder), "bench"], check=True)
        binary = folder / "kvm_exit_loop"
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(Path(__file__).parent / "kvm_exit_loop.c")],
                       check=True)
        image = folder / "bench.bin"
        small, large = write_config(folder, image, args.writes), write_config(folder, image, 2 * args.writes)
        python = per_exit(python_seconds, small, large, args.writes, args.repeat)
        c = per_exit(lambda config: c_seconds(config, binary, folder), small, large, args.writes, args.repeat)
    print(f"exit latency ({args.writes} port writes, median of {args.repeat}): "
          f"python VMM {python * 1e6:.1f} us/exit, C KVM_RUN loop {c * 1e6:.1f} us/exit, "
          f"ratio {python / c:.2f} (target <= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
