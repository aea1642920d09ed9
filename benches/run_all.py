"""Every benchmark in one run, each in its own process, in minutes rather than an hour.

Each benchmark prints its own figures (both sides and the ratio) as it goes; at the end this
prints the lines that carry a ratio, each benchmark's status and how long it took. A benchmark
that fails (a tool or /dev/kvm missing, a guest that never reached its marker) is reported and
the others still run; the exit status is 1 if any failed.

    .venv/bin/python benches/run_all.py              # all, with the run counts below
    .venv/bin/python benches/run_all.py --quick      # one or two runs each: a smoke run
    .venv/bin/python benches/run_all.py riscv_linux startup   # only these
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    quick: tuple[str, ...]


BENCHES = (
    Bench(
        "riscv_linux",
        ("--boot-runs", "3", "--smp4-runs", "3", "--read-runs", "3"),
        ("--boot-runs", "1", "--smp4-runs", "1", "--read-runs", "1"),
    ),
    Bench("riscv_firmware_boot", ("--runs", "5"), ("--runs", "2")),
    Bench("startup", ("--runs", "5"), ("--runs", "2")),
    Bench("idle_memory", (), ()),
    Bench("exit_latency", ("--repeat", "5"), ("--repeat", "2")),
    Bench("control_api", (), ("--calls", "500", "--cycles", "20")),
    Bench("snapshot_restore", ("--runs", "3", "--cold-runs", "1"), ("--runs", "1", "--cold-runs", "1")),
    Bench("gdb_breakpoints", ("--boots", "3"), ("--boots", "1")),
    Bench("aarch64_boot", ("--uboot-runs", "3", "--linux-runs", "1"), ("--uboot-runs", "1", "--linux-runs", "1")),
)
"""Run counts chosen so the whole list takes minutes once the soft CPU meets its targets (the
riscv Linux boots dominate: 3 per hart count and 3 disk reads on each side)."""

RESULT_WORDS = ("ratio", "target")
"""A printed line holding one of these is a result line, repeated in the summary (with the line
before it when that one ends in a colon: a heading such as exit_latency's)."""


def run(bench: Bench, quick: bool, timeout: float) -> tuple[str, float, list[str]]:
    """Run one benchmark, echoing its output; its status, seconds and result lines."""
    script = HERE / f"{bench.name}.py"
    if not script.exists():
        return f"missing ({script.name} not in benches/)", 0.0, []
    start = time.perf_counter()
    command = [sys.executable, str(script), *(bench.quick if quick else bench.args)]
    print(f"==> {bench.name}: {' '.join(command[1:])}", flush=True)
    results: list[str] = []
    with subprocess.Popen(
        command, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as child:
        assert child.stdout is not None
        try:
            heading = ""
            for line in child.stdout:
                print(line, end="", flush=True)
                if any(word in line.lower() for word in RESULT_WORDS):
                    results += [heading, line.rstrip()] if heading else [line.rstrip()]
                    heading = ""
                else:
                    heading = line.rstrip() if line.rstrip().endswith(":") else ""
            status = child.wait(timeout=max(1.0, timeout - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            child.kill()
            return f"timed out after {timeout:.0f} s", time.perf_counter() - start, results
    return ("ok" if status == 0 else f"failed (exit status {status})"), time.perf_counter() - start, results


def main() -> int:
    names = [bench.name for bench in BENCHES]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", metavar="NAME", help=f"benchmarks to run (default all: {', '.join(names)})")
    parser.add_argument("--quick", action="store_true", help="fewer runs each (a smoke run, noisier figures)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one benchmark may take (default 1800)")
    args = parser.parse_args()
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        print(f"run_all: unknown benchmark {', '.join(unknown)}; expected some of: {', '.join(names)}", file=sys.stderr)
        return 2
    chosen = [bench for bench in BENCHES if not args.only or bench.name in args.only]
    start = time.perf_counter()
    outcomes = [(bench.name, *run(bench, args.quick, args.timeout)) for bench in chosen]
    print(f"\n==> summary ({time.perf_counter() - start:.0f} s in all)")
    for name, status, seconds, results in outcomes:
        print(f"{name}: {status}, {seconds:.0f} s")
        for line in results:
            print(f"    {line}")
    return 0 if all(status == "ok" for _, status, _, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
