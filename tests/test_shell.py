"""``axvisor shell`` driven as a person would, through a whole session with two VMs at once: an
x86 echo guest on KVM and Debian's U-Boot on the riscv64 software CPU. Create, start, list
(table and JSON), suspend (typed input is not answered: the guest makes no progress), resume
(the queued input is answered), reset, stop, delete, and bad commands (one error line each, the
shell goes on); ``exit`` stops what still runs and ends with 0."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from .vmm_watch import watch

ROOT = Path(__file__).parent.parent
CONFIGS = ROOT / "configs" / "vms"
PROMPT = "axvisor> "
DETACH = "\x01x"
QUIET_SECONDS = 1.0
"""How long a paused guest is watched for output it must not produce (it cannot, paused: a
running guest answers within milliseconds, so this is no timing assertion on the VMM's speed)."""


@pytest.fixture(scope="module")
def debian_firmware() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True, timeout=1200
    )


def spawn_shell(tmp_path: Path) -> pexpect.spawn:
    env = {
        **os.environ,
        "TERM": "dumb",
        "NO_COLOR": "1",
        "AXVISOR_LOG_DIR": str(tmp_path / "logs"),
        "AXVISOR_HISTORY_FILE": str(tmp_path / "history"),
        "COLUMNS": "150",
    }
    child = pexpect.spawn(
        sys.executable,
        ["-m", "axvisor", "shell"],
        cwd=str(ROOT),
        env=env,
        timeout=120,
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(50, 150),
    )
    watch(child)
    child.expect_exact(PROMPT)
    return child


def run(child: pexpect.spawn, line: str) -> str:
    """Type a command; what it printed before the next prompt."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    return child.before


def attach(child: pexpect.spawn, vm_id: int) -> None:
    child.sendline(f"vm console {vm_id}")
    child.expect_exact("Ctrl-A x detaches")


def detach(child: pexpect.spawn) -> None:
    child.send(DETACH)
    child.expect_exact("[axvisor] detached")
    child.expect_exact(PROMPT)


def assert_silent(child: pexpect.spawn, pattern: str) -> None:
    """``pattern`` does not show while the guest is paused."""
    index = child.expect([pattern, pexpect.TIMEOUT], timeout=QUIET_SECONDS)
    assert index == 1, f"a paused guest printed {pattern!r}"


def test_a_whole_session_with_two_vms(kvm: None, guests: Path, debian_firmware: None, tmp_path: Path) -> None:
    child = spawn_shell(tmp_path)
    try:
        text = run(child, "vm create configs/vms/echo-x86_64-kvm-smp1.toml configs/vms/uboot-riscv64-virt-smp1.toml")
        assert "created VM 6 'echo-x86_64': x86_64, 1 vCPU(s), 64 MiB, kvm (Ready)" in text
        assert "created VM 41 'uboot-riscv64': riscv64, 1 vCPU(s), 128 MiB, soft (Ready)" in text

        text = run(child, "vm start")
        assert "started VM 6 'echo-x86_64'" in text and "started VM 41 'uboot-riscv64'" in text

        rows = [line.split() for line in run(child, "vm list").splitlines()]
        assert ["ID", "NAME", "STATE", "ARCH", "BACKEND", "CPUS", "MEMORY", "UPTIME"] in rows
        assert [row[:5] for row in rows if row[:1] in (["6"], ["41"])] == [
            ["6", "echo-x86_64", "Running", "x86_64", "kvm"],
            ["41", "uboot-riscv64", "Running", "riscv64", "soft"],
        ]
        text = run(child, "vm list --format json")
        listed = json.loads(text[text.index("[") : text.rindex("]") + 1])
        assert [(vm["id"], vm["state"]) for vm in listed] == [(6, "Running"), (41, "Running")]

        # U-Boot: to its prompt, then typed input is answered only while it runs
        attach(child, 41)
        child.expect_exact("Hit any key to stop autoboot")
        child.send(" ")
        child.expect_exact("=> ")
        detach(child)
        assert "suspended VM 41 'uboot-riscv64'" in run(child, "vm suspend 41")
        attach(child, 41)
        child.send("setenv x 12; echo X${x}Y\r")
        assert_silent(child, "X12Y")
        detach(child)
        assert "Paused" in run(child, "vm show 41")
        assert "resumed VM 41" in run(child, "vm resume 41")
        attach(child, 41)
        child.expect_exact("X12Y")  # the input queued while paused, answered now
        detach(child)

        # the echo guest: the same on KVM
        assert "suspended VM 6 'echo-x86_64'" in run(child, "vm suspend 6")
        attach(child, 6)
        child.send("pq7")
        assert_silent(child, "PQ7")
        detach(child)
        assert "resumed VM 6" in run(child, "vm resume 6")
        attach(child, 6)
        child.expect_exact("PQ7")
        detach(child)

        text = run(child, "vm reset 41")
        assert "reset VM 41 'uboot-riscv64'" in text
        assert re.search(r"resets\s+1", run(child, "vm show 41"))
        assert "vCPU 0" in run(child, "vm show -s 6")

        # bad commands: one error line each, and the shell goes on
        for line, message in [
            ("vm frobnicate", "error: unknown vm command 'frobnicate'"),
            ("vm start 999", "error: no VM with id 999"),
            ("vm resume 41", "error: VM 41 'uboot-riscv64' is Running: cannot resume"),
            ("vm mem 41", "error: vm mem: missing GPA"),
            ("vm show 'unclosed", "error: cannot split the line"),
            ("reboot now", "error: unknown command 'reboot'"),
        ]:
            text = run(child, line)
            assert message in text, text
            assert "Traceback" not in text

        text = run(child, "vm stop 6 41")
        assert "stopped VM 6 'echo-x86_64'" in text and "stopped VM 41 'uboot-riscv64'" in text
        assert "no VMs running" in run(child, "vm list")
        rows = [line.split() for line in run(child, "vm list -a").splitlines()]
        assert [row[:3] for row in rows if row[:1] in (["6"], ["41"])] == [
            ["6", "echo-x86_64", "Stopped"],
            ["41", "uboot-riscv64", "Stopped"],
        ]
        assert "deleted VM 6 'echo-x86_64'" in run(child, "vm delete -f 6")
        child.sendline("vm delete 41")
        child.expect_exact("delete VM 41 'uboot-riscv64' (Stopped)? [y/N]")
        child.sendline("y")
        child.expect_exact("deleted VM 41 'uboot-riscv64'")
        child.expect_exact(PROMPT)
        assert "no VMs" in run(child, "vm list -a")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_exit_stops_running_vms_and_sigterm_is_143(debian_firmware: None, tmp_path: Path) -> None:
    child = spawn_shell(tmp_path)
    try:
        run(child, f"vm create {CONFIGS / 'uboot-riscv64-virt-smp1.toml'}")
        run(child, "vm start 41")
        child.kill(15)
        child.expect_exact("stopping 1 VM(s)")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 143
