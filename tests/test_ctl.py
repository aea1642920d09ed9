"""``axvisor ctl`` against ``axvisor serve`` in another process: the shell's commands over the
API, on the Unix socket and on a loopback port with a bearer token; exit statuses 0/1/2; serve
prints where it listens, makes its socket 0600 and stops every VM in order on SIGTERM (143)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from .host_tools import require
from .vmm_watch import OUTPUTS, watch

ROOT = Path(__file__).parent.parent
UBOOT = ROOT / "configs" / "vms" / "uboot-riscv64-virt-smp1.toml"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Path, int, Path]]:
    """``axvisor serve --sock ... --listen 127.0.0.1:0 --token-file ... UBOOT``: (socket, port, token file)."""
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True, timeout=1200
    )
    work = Path(tempfile.mkdtemp(prefix="axctl-"))
    sock, token = work / "api.sock", work / "token"
    token.write_text("t0ken\n")
    env = {**os.environ, "AXVISOR_LOG_DIR": str(work / "logs")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "axvisor",
            "serve",
            "--sock",
            str(sock),
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            str(token),
            str(UBOOT),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    port = None
    for line in process.stderr:
        lines.append(line)
        if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
            port = int(match.group(1))
        if "console logs in" in line:
            break
    assert port is not None, "".join(lines)
    try:
        yield sock, port, token
    finally:
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        status = process.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)
        output = "".join(lines) + rest
        OUTPUTS.append(lambda: output)
        assert status == 143, output
        assert "stopping" in rest and "Traceback" not in output
        assert not sock.exists()


def ctl(sock: Path, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "axvisor", "ctl", "--sock", str(sock), *words],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_ctl_operates_the_served_vm(server: tuple[Path, int, Path]) -> None:
    sock, _, _ = server
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    listed = json.loads(ctl(sock, "vm", "list", "--format", "json").stdout)
    assert [(vm["id"], vm["name"], vm["state"]) for vm in listed] == [(41, "uboot-riscv64", "Running")]
    result = ctl(sock, "vm", "suspend", "41")
    assert (result.returncode, result.stdout.strip()) == (0, "suspended VM 41 'uboot-riscv64'")
    result = ctl(sock, "vm", "regs", "41")
    assert result.returncode == 0 and re.search(r"\bpc 0x[0-9a-f]{16}", result.stdout), result.stdout
    result = ctl(sock, "vm", "mem", "41", "0x80000000", "32")
    assert result.returncode == 0 and result.stdout.startswith("0000000080000000  "), result.stdout
    assert len(result.stdout.splitlines()) == 2
    result = ctl(sock, "vm", "suspend", "41")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: VM 41 'uboot-riscv64' is Paused: cannot pause (allowed in Running)"
    assert ctl(sock, "vm", "resume", "41").returncode == 0
    result = ctl(sock, "vm", "show", "-s", "41")
    assert result.returncode == 0 and "Running" in result.stdout and "console bytes" in result.stdout


def test_ctl_console_attaches_over_the_websocket(server: tuple[Path, int, Path]) -> None:
    sock, _, _ = server
    child = watch(
        pexpect.spawn(
            sys.executable,
            ["-m", "axvisor", "ctl", "--sock", str(sock), "vm", "console", "41"],
            cwd=str(ROOT),
            timeout=120,
            encoding="utf-8",
            codec_errors="replace",
        )
    )
    try:
        child.expect_exact("Ctrl-A x detaches")
        child.send(" \r")  # stops the autoboot countdown if it still runs
        child.send("setenv x 12; echo X${x}Y\r")
        child.expect_exact("X12Y")
        child.send("\x01x")
        child.expect_exact("[axvisor] detached")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_ctl_statuses_for_misuse_and_refusals(server: tuple[Path, int, Path]) -> None:
    sock, _, _ = server
    result = ctl(sock, "vm", "frobnicate")
    assert result.returncode == 2 and "unknown vm command 'frobnicate'" in result.stderr
    result = ctl(sock, "vm", "show", "7")
    assert result.returncode == 1 and result.stderr.strip() == "error: no VM with id 7"
    result = ctl(sock, "vm", "delete", "41")  # no terminal to confirm on: refused, not deleted
    assert result.returncode == 1 and "not deleted" in result.stdout
    result = ctl(Path(tempfile.gettempdir()) / "no-such-axvisor.sock", "vm", "list")
    assert result.returncode == 1 and "no socket there" in result.stderr and "Traceback" not in result.stderr


def test_ctl_over_tcp_needs_the_token(server: tuple[Path, int, Path], tmp_path: Path) -> None:
    _, port, token = server
    base = [sys.executable, "-m", "axvisor", "ctl", "--connect", f"127.0.0.1:{port}", "--token-file"]
    result = subprocess.run([*base, str(token), "vm", "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "uboot-riscv64" in result.stdout
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    result = subprocess.run([*base, str(wrong), "vm", "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "bearer token" in result.stderr


def test_curl_over_the_socket(server: tuple[Path, int, Path]) -> None:
    """The README's example."""
    require("curl", why="the README's curl example over the socket")
    curl = shutil.which("curl")
    assert curl is not None
    sock, _, _ = server
    result = subprocess.run(
        [curl, "-s", "--unix-socket", str(sock), "http://localhost/api/vms"], capture_output=True, text=True, timeout=60
    )
    assert json.loads(result.stdout)[0]["name"] == "uboot-riscv64"
