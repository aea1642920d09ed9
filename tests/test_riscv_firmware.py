"""Debian's OpenSBI and U-Boot on the riscv64 virt machine (software CPU), driven like a user
at the console: banner, prompt, typed commands, reset and power-off."""

from __future__ import annotations

import contextlib
import shutil
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


@pytest.fixture(scope="module", autouse=True)
def debian_firmware() -> None:
    subprocess.run([str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True,
                   timeout=1200)


@contextlib.contextmanager
def vmm(config: Path) -> Iterator[pexpect.spawn]:
    """`axvisor run CONFIG` at a pseudo-terminal; once the body is done, it must have exited with 0."""
    child = watch(pexpect.spawn(sys.executable, ["-m", "axvisor", "run", str(config)], cwd=str(ROOT), timeout=120,
                                encoding="utf-8", codec_errors="replace"))
    try:
        yield child
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, f"{config.name}: axvisor exited with {child.exitstatus}"


def power_off(child: pexpect.spawn) -> None:
    """`poweroff` at U-Boot's prompt ends the VMM."""
    child.sendline("poweroff")
    child.expect(pexpect.EOF)


def quit_console(child: pexpect.spawn) -> None:
    child.send("\x01x")
    child.expect(pexpect.EOF)


def stop_autoboot(child: pexpect.spawn) -> None:
    child.expect("Hit any key to stop autoboot")
    child.send(" ")
    child.expect_exact(PROMPT)


def test_opensbi_banner_lists_the_platform_devices() -> None:
    with vmm(CONFIGS / "opensbi-riscv64-virt-smp1.toml") as child:
        child.expect("OpenSBI v")
        child.expect(r"Platform Name\s+: riscv-virtio,qemu")
        child.expect(r"Platform HART Count\s+: 1")
        child.expect(r"Platform IPI Device\s+: aclint-mswi")
        child.expect(r"Platform Timer Device\s+: aclint-mtimer @ 10000000Hz")
        child.expect(r"Platform Console Device\s+: uart8250")
        child.expect(r"Platform Shutdown Device\s+: syscon-poweroff")
        child.expect(r"Boot HART Base ISA\s+: rv64imafdc")
        quit_console(child)


@pytest.mark.parametrize("config,harts", [("uboot-riscv64-virt-smp1.toml", 1), ("uboot-riscv64-virt-smp4.toml", 4)])
def test_uboot_runs_typed_commands_and_powers_off(config: str, harts: int) -> None:
    with vmm(CONFIGS / config) as child:
        child.expect(rf"Platform HART Count\s+: {harts}")
        stop_autoboot(child)
        child.sendline("version")
        child.expect(r"U-Boot 20\d\d\.\d\d")
        child.expect_exact(PROMPT)
        child.sendline("bdinfo")
        child.expect(r"-> start\s+= 0x0*80000000")  # the configured RAM, as the device tree says
        child.expect(r"-> size\s+= 0x0*8000000")
        child.expect(r"serial addr\s+= 0x0*10000000")
        child.expect_exact(PROMPT)
        if harts > 1:
            child.sendline("cpu list")
            for hart in range(harts):
                child.expect(rf"{hart}: cpu@{hart}\s+riscv")
            child.expect_exact(PROMPT)
        power_off(child)


def test_uboot_reset_restarts_the_vm() -> None:
    with vmm(CONFIGS / "uboot-riscv64-virt-smp1.toml") as child:
        stop_autoboot(child)
        child.sendline("reset")
        child.expect("OpenSBI v")  # the firmware starts again from the top
        stop_autoboot(child)
        power_off(child)


def test_a_config_written_elsewhere_boots_the_same_images(tmp_path: Path) -> None:
    """A config from `axvisor generate` (two harts, 256 MiB, its own id and name) boots the images."""
    cache = Path.home() / ".cache" / "axvisor" / "riscv64"
    config = tmp_path / "elsewhere.toml"
    subprocess.run([sys.executable, "-m", "axvisor", "generate", "-a", "riscv64", "-n", "elsewhere", "-i", "9",
                    "-c", "2", "-k", str(cache / "u-boot-qemu" / "qemu-riscv64_smode" / "u-boot.bin"),
                    "-l", "0x80200000", "--bios-path", str(cache / "opensbi" / "fw_jump.bin"),
                    "--bios-load-addr", "0x80000000", "-m", "0x80000000:0x10000000", "--backend", "soft",
                    "-O", str(config)], check=True, cwd=ROOT)
    with vmm(config) as child:
        child.expect(r"Platform HART Count\s+: 2")
        child.expect(r"DRAM:\s+256 MiB")
        stop_autoboot(child)
        power_off(child)


def test_fw_dynamic_finds_uboot_through_its_info_structure(tmp_path: Path) -> None:
    """OpenSBI's FW_DYNAMIC build takes the next stage from struct fw_dynamic_info at a2. The
    config's boot_protocol says so, not the file's name: a copy called firmware.bin boots."""
    firmware = tmp_path / "firmware.bin"
    shutil.copyfile(Path.home() / ".cache" / "axvisor" / "riscv64" / "opensbi" / "fw_dynamic.bin", firmware)
    text = (CONFIGS / "uboot-riscv64-virt-smp1.toml").read_text()
    assert 'boot_protocol = "fw_jump"' in text
    text = text.replace('boot_protocol = "fw_jump"', 'boot_protocol = "fw_dynamic"')
    text = text.replace("~/.cache/axvisor/riscv64/opensbi/fw_jump.bin", str(firmware))
    config = tmp_path / "dynamic.toml"
    config.write_text(text.replace('"~/', f'"{Path.home()}/').replace('"../../', f'"{ROOT}/'))
    with vmm(config) as child:
        child.expect(r"Domain0 Next Address\s+: 0x0*80200000")
        child.expect(r"Domain0 Next Mode\s+: S-mode")
        stop_autoboot(child)
        power_off(child)
