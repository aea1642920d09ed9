"""Debian's U-Boot (qemu_arm64) on the arm virt machine (software CPU), driven like a user at
the console: banner, prompt, typed commands, reset and power-off through PSCI."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from .vmm_watch import watch

ROOT = Path(__file__).parent.parent
CONFIGS = ROOT / "configs" / "vms"
PROMPT = "=> "
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module", autouse=True)
def debian_firmware() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "--arch", "arm64", "u-boot-qemu"],
        check=True,
        timeout=1200,
        capture_output=True,
    )


@contextlib.contextmanager
def vmm(config: Path) -> Iterator[pexpect.spawn]:
    """`axvisor run CONFIG` at a pseudo-terminal; once the body is done, it must have exited with 0."""
    child = watch(
        pexpect.spawn(
            sys.executable,
            ["-m", "axvisor", "run", str(config)],
            cwd=str(ROOT),
            timeout=300,
            encoding="utf-8",
            codec_errors="replace",
        )
    )
    try:
        yield child
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, f"{config.name}: axvisor exited with {child.exitstatus}"


def stop_autoboot(child: pexpect.spawn) -> None:
    child.expect("Hit any key to stop autoboot")
    child.send(" ")
    child.expect_exact(PROMPT)


def test_uboot_runs_typed_commands_and_powers_off() -> None:
    with vmm(CONFIGS / "uboot-aarch64-virt-smp1.toml") as child:
        child.expect(r"U-Boot 20\d\d\.\d\d")
        child.expect(r"DRAM:\s+128 MiB")  # the RAM region the device tree describes
        stop_autoboot(child)
        child.sendline("version")
        child.expect(r"U-Boot 20\d\d\.\d\d")
        child.expect_exact(PROMPT)
        child.sendline("bdinfo")
        child.expect(r"-> start\s+= 0x0*40000000")
        child.expect(r"-> size\s+= 0x0*8000000")
        child.expect_exact(PROMPT)
        child.sendline("fdt addr $fdtcontroladdr; fdt print /psci")
        child.expect(r'method = "hvc"')
        child.expect_exact(PROMPT)
        child.sendline("date")  # the PL031
        child.expect(r"Date: 20\d\d-\d\d-\d\d")
        child.expect_exact(PROMPT)
        child.sendline("poweroff")  # PSCI SYSTEM_OFF
        child.expect(pexpect.EOF)


def test_uboot_reset_restarts_the_vm() -> None:
    with vmm(CONFIGS / "uboot-aarch64-virt-smp1.toml") as child:
        stop_autoboot(child)
        child.sendline("reset")  # PSCI SYSTEM_RESET: the VM is built again and U-Boot starts over
        child.expect(r"U-Boot 20\d\d\.\d\d")
        stop_autoboot(child)
        child.sendline("poweroff")
        child.expect(pexpect.EOF)
