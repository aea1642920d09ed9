"""Control-plane latency: a status query and a pause-to-resume cycle on axvisor's management
API (``axvisor serve``, HTTP/JSON over its Unix socket, through ``axvisor.client``) against
QEMU's QMP (``query-status``, ``stop``/``cont`` over a Unix socket) on the same U-Boot guest
(configs/vms/uboot-riscv64-virt-smp1.toml), same run, both clients in this Python process on
persistent connections; medians of N calls and the ratios. Target: <= 1.5 for both.

    .venv/bin/python benches/control_api.py [--calls N] [--cycles N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
from timing import CACHE, ROOT, qemu_riscv_command

from axvisor.client import Client

CONFIG = ROOT / "configs" / "vms" / "uboot-riscv64-virt-smp1.toml"
UBOOT_PROMPT = b"Hit any key to stop autoboot"


def timed(call: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


class Qmp:
    """A minimal QMP client: one JSON object per line each way (QEMU's docs/interop/qmp-spec)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        json.loads(self.reader.readline())  # the greeting
        self.execute("qmp_capabilities")

    def execute(self, command: str) -> object:
        self.sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
        while True:
            reply = json.loads(self.reader.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")
            # an asynchronous event (STOP, RESUME): not the answer

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def measure_axvisor(work: Path, calls: int, cycles: int) -> tuple[list[float], list[float]]:
    sock = work / "axvisor.sock"
    env = {**os.environ, "AXVISOR_LOG_DIR": str(work / "logs")}
    server = subprocess.Popen(
        [sys.executable, "-m", "axvisor", "serve", "--sock", str(sock), str(CONFIG)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if "listening on unix:" in line:
                break
        else:
            raise SystemExit(f"axvisor serve ended with {server.wait()} before listening")
        with Client.unix(sock) as api:
            vm = api.list()[0]
            with api.console(vm.id) as console:
                console.read_until(UBOOT_PROMPT, timeout=120)
            status = timed(lambda: api.get(vm.id), calls)

            def cycle() -> None:
                api.pause(vm.id)
                api.resume(vm.id)

            pause_resume = timed(cycle, cycles)
        return status, pause_resume
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)


def measure_qemu(work: Path, calls: int, cycles: int) -> tuple[list[float], list[float]]:
    firmware = CACHE / "riscv64" / "opensbi" / "fw_jump.bin"
    uboot = CACHE / "riscv64" / "u-boot-qemu" / "qemu-riscv64_smode" / "u-boot.bin"
    qmp_path = work / "qmp.sock"
    command = qemu_riscv_command(
        "-bios", str(firmware), "-kernel", str(uboot), "-qmp", f"unix:{qmp_path},server=on,wait=off", memory="128M"
    )
    child = pexpect.spawn(command[0], command[1:], timeout=120)
    try:
        child.expect(UBOOT_PROMPT.decode())
        qmp = Qmp(str(qmp_path))
        try:
            status = timed(lambda: qmp.execute("query-status"), calls)

            def cycle() -> None:
                qmp.execute("stop")
                qmp.execute("cont")

            pause_resume = timed(cycle, cycles)
        finally:
            qmp.close()
        return status, pause_resume
    finally:
        child.close(force=True)


def report(label: str, ours: list[float], peer: list[float]) -> None:
    mine, theirs = statistics.median(ours) * 1e6, statistics.median(peer) * 1e6
    print(
        f"{label}: axvisor {mine:.0f} us, QEMU {theirs:.0f} us, ratio {mine / theirs:.2f} (axvisor/QEMU), "
        f"target <= 1.5  [calls: {len(ours)}]",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="status queries per VMM")
    parser.add_argument("--cycles", type=int, default=100, help="pause-resume cycles per VMM")
    args = parser.parse_args()
    if shutil.which("qemu-system-riscv64") is None:
        raise SystemExit("qemu-system-riscv64 is missing: apt-get install qemu-system-misc")
    subprocess.run([str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True)
    with tempfile.TemporaryDirectory(prefix="axbench-") as tmp:
        work = Path(tmp)
        ours = measure_axvisor(work, args.calls, args.cycles)
        peer = measure_qemu(work, args.calls, args.cycles)
    report("status query (GET /api/vms/{id} vs QMP query-status)", ours[0], peer[0])
    report("pause-to-resume (pause+resume vs QMP stop+cont)", ours[1], peer[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
