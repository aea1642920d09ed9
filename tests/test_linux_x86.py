"""Debian's x86_64 kernel on KVM: the loader takes the bzImage (zstd payload decompressed on the
host) through Linux's 64-bit boot protocol, and the kernel prints its banner on COM1.

Slow: the kernel's CPL0 code is emulated on PVM (about a minute to the banner here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from .vmm_watch import watch

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "configs" / "vms" / "linux-x86_64-kvm-smp1.toml"
BANNER_TIMEOUT = 300


@pytest.fixture(scope="module")
def debian_amd64_kernel() -> None:
    subprocess.run([str(ROOT / "scripts" / "fetch-debian-images.sh"), "--arch", "amd64", "linux-image-amd64"],
                   check=True, timeout=1200)


@pytest.mark.usefixtures("kvm", "debian_amd64_kernel")
def test_debian_kernel_prints_its_banner() -> None:
    child = watch(pexpect.spawn(sys.executable, ["-m", "axvisor", "run", str(CONFIG)], cwd=str(ROOT),
                                timeout=BANNER_TIMEOUT, encoding="utf-8", codec_errors="replace"))
    try:
        child.expect(r"Linux version 6\.\d+\S*\+deb\d+-amd64")
        child.expect("Command line: earlyprintk=serial,ttyS0,115200 console=ttyS0 nokaslr")
        child.expect(r"BIOS-e820: \[mem 0x0000000000100000-0x000000001fffffff\] usable")
        child.send("\x01x")  # Ctrl-A x: quit
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
