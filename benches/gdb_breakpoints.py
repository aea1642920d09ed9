"""What a gdb breakpoint costs the code it does not stop: U-Boot (riscv64, software CPU,
configs/vms/uboot-riscv64-virt-smp1.toml) from its first instruction to "Hit any key to stop
autoboot", with no debugger against the same boot with the stub's breakpoints set (unicorn code
hooks bounded to their addresses, at addresses the boot never runs), same run, medians of N
boots and the ratio. Target: <= 1.05 (the hooks are bounded, so unhooked code keeps its speed).
``--naive`` also times one boot with a code hook over every address (what an unbounded
breakpoint hook would cost).

    .venv/bin/python benches/gdb_breakpoints.py [--boots N] [--naive]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import threading
import time

from timing import ROOT
from unicorn import UC_HOOK_CODE

from axvcpu.backends.debug import attach_debugger
from axvisor.manager import VmManager

CONFIG = ROOT / "configs" / "vms" / "uboot-riscv64-virt-smp1.toml"
PROMPT = b"Hit any key to stop autoboot"
UNUSED = (0x8400_0000, 0x8400_1000, 0x8500_0000, 0x8600_0000)
"""Guest RAM addresses the boot never executes (U-Boot runs at 0x8020_0000, then near the top)."""


def boot(breakpoints: bool, naive: bool = False) -> float:
    """Seconds from the resume of a VM started paused to U-Boot's countdown."""
    seen = threading.Event()
    console = bytearray()

    def echo(_vm_id: int, data: bytes) -> None:
        console.extend(data)
        if PROMPT in console:
            seen.set()

    with VmManager(console_echo=echo) as manager:
        vm_id = manager.create(CONFIG).id
        manager.start(vm_id, paused=True)

        def arm(vm: object, n: int) -> None:
            vcpu = vm.vcpus[n]  # type: ignore[attr-defined]
            debug = attach_debugger(vcpu)
            for addr in UNUSED:
                debug.insert_breakpoint(addr)
            if naive:
                hart = vcpu.arch
                hart._uc.hook_add(UC_HOOK_CODE, lambda *_: None, begin=1, end=0)
                hart._uc.ctl_flush_tb()

        if breakpoints or naive:
            manager.debug_call(vm_id, 0, arm)
        start = time.perf_counter()
        manager.resume(vm_id)
        if not seen.wait(600):
            raise SystemExit("U-Boot did not reach its countdown")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--naive", action="store_true")
    args = parser.parse_args()
    subprocess.run([str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True)
    plain: list[float] = []
    hooked: list[float] = []
    for _ in range(args.boots):  # interleaved, so a slow moment of the host hits both
        plain.append(boot(False))
        hooked.append(boot(True))
    a, b = statistics.median(plain), statistics.median(hooked)
    print(f"U-Boot to its countdown, median of {args.boots}: no debugger {a:.3f} s, "
          f"{len(UNUSED)} breakpoints set {b:.3f} s, ratio {b / a:.3f} (target <= 1.05)")  # fmt: skip
    if args.naive:
        c = boot(False, naive=True)
        print(f"one boot with a code hook over every address: {c:.3f} s, ratio {c / a:.1f}")


if __name__ == "__main__":
    main()
