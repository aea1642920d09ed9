"""Every way out of `axvisor run` at a real terminal: a stop signal (sent twice, the second one
landing during the shutdown), a hang-up, a guest failure code that does not fit in 8 bits.

The VMM runs at a pseudo-terminal as a user would run it; the terminal's settings are read
before it starts and after it exits. A vCPU thread left inside the engine at exit shows as a
segfault (signal 11), a shutdown path skipped as a terminal left raw.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from ptyprocess import PtyProcess

from .vmm_watch import watch

ROOT = Path(__file__).parent.parent
CONFIGS = ROOT / "configs" / "vms"
UBOOT = CONFIGS / "uboot-riscv64-virt-smp1.toml"
ECHO = CONFIGS / "echo-x86_64-kvm-smp1.toml"
STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]


@pytest.fixture(scope="module")
def debian_firmware() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True, timeout=1200
    )


@contextlib.contextmanager
def vmm(config: Path) -> Iterator[pexpect.spawn]:
    """`axvisor run CONFIG` at a pseudo-terminal whose settings must be the same after it exits."""
    child = watch(
        pexpect.spawn(
            sys.executable,
            ["-m", "axvisor", "run", str(config)],
            cwd=str(ROOT),
            timeout=120,
            encoding="utf-8",
            codec_errors="replace",
        )
    )
    before = termios.tcgetattr(child.child_fd)
    try:
        yield child
        child.expect(pexpect.EOF)
        after = termios.tcgetattr(child.child_fd)
        child.wait()
        assert after == before, "the terminal was left as the VM had it"
    finally:
        child.close(force=True)


def at_uboot_prompt(child: pexpect.spawn) -> None:
    child.expect("Hit any key to stop autoboot")
    child.send(" ")
    child.expect_exact("=> ")


def stop_with(child: pexpect.spawn, signum: int) -> None:
    """Send the signal while the guest runs, and again at once (during the shutdown)."""
    assert termios.tcgetattr(child.child_fd)[3] & termios.ECHO == 0, "the console should be raw while VMs run"
    child.kill(signum)
    child.kill(signum)


def assert_stopped_by(child: pexpect.spawn, signum: int) -> None:
    name = signal.Signals(signum).name
    assert child.signalstatus is None, f"the VMM died of signal {child.signalstatus} instead of stopping"
    assert child.exitstatus == 128 + signum
    assert f"stopped by {name}" in child.before
    assert "Traceback" not in child.before


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_stop_signal_stops_a_riscv_vm_in_order(debian_firmware: None, signum: int) -> None:
    with vmm(UBOOT) as child:
        at_uboot_prompt(child)
        stop_with(child, signum)
    assert_stopped_by(child, signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: signal.Signals(s).name)
def test_a_stop_signal_stops_an_x86_kvm_vm_in_order(kvm: None, guests: Path, signum: int) -> None:
    with vmm(ECHO) as child:
        child.expect("echo ready")
        stop_with(child, signum)
    assert_stopped_by(child, signum)


def test_a_hang_up_stops_the_vmm_with_129(debian_firmware: None) -> None:
    """The terminal itself goes away: SIGHUP from the kernel, and every later write fails."""
    process = PtyProcess.spawn([sys.executable, "-m", "axvisor", "run", str(UBOOT)], cwd=str(ROOT))
    seen = b""
    while b"Hit any key" not in seen:
        seen += process.read(4096)
    process.fileobj.close()  # the terminal emulator closes: the VMM's session gets SIGHUP
    process.wait()
    assert process.signalstatus is None, f"the VMM died of signal {process.signalstatus}"
    assert process.exitstatus == 128 + signal.SIGHUP  # not 120: a failed final flush is not the status


def test_a_guest_failure_code_of_256_is_not_success(debian_firmware: None) -> None:
    """sifive_test FAIL carries a 16-bit code; exit statuses are 8 bits, and 256 must not read as 0."""
    with vmm(UBOOT) as child:
        at_uboot_prompt(child)
        child.sendline("mw.l 0x100000 0x01003333")  # FAIL (0x3333) with code 256 in the high half
    assert child.exitstatus == 255
    assert "powered off with status 256" in child.before
