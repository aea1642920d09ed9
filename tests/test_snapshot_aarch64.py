"""aarch64 VM snapshots end to end on the arm virt machine and the soft CPU: Debian's U-Boot
(qemu_arm64) saved at its prompt and restored in another manager answers a typed command; a
two-vCPU arm64 Linux saved at its shell comes back with both CPUs, its timer and its GIC
(a command that sleeps, one run on CPU 1). Waits are bounded only so that a hang fails."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from axvisor.manager import VmManager, VMState

from .test_manager_vms import Console

ROOT = Path(__file__).parent.parent
UBOOT = ROOT / "configs" / "vms" / "uboot-aarch64-virt-smp1.toml"
LINUX_SMP2 = ROOT / "configs" / "vms" / "linux-aarch64-virt-smp2.toml"
PROMPT = "=> "
SHELL = "axvisor# "
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def arm64_firmware() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "--arch", "arm64", "u-boot-qemu"],
        check=True,
        timeout=1200,
        capture_output=True,
    )


def test_uboot_aarch64_saved_at_its_prompt_answers_after_a_restore_elsewhere(
    arm64_firmware: None, tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    with VmManager() as first:
        info = first.create(UBOOT)
        console = Console(first, info.id)
        first.start(info.id)
        console.expect("Hit any key", timeout=300)
        first.console_input(info.id, b" ")
        console.expect(PROMPT, timeout=300)
        first.console_input(info.id, b"setenv marker before-snapshot\n")
        console.expect(PROMPT)
        assert first.snapshot(info.id, snap, stop=True).state is VMState.STOPPED
    manifest = json.loads((snap / "manifest.json").read_text())
    assert manifest["arch"] == "aarch64" and manifest["backend"] == "soft"
    vcpu = json.loads((snap / "vcpu-0.json").read_text())
    assert vcpu["arch"] == "aarch64" and len(vcpu["q"]) == 32 and vcpu["sysregs"]["vbar_el1"] != 0
    assert json.loads((snap / "machine.json").read_text())["power"]["states"] == ["ON"]
    devices = json.loads((snap / "devices.json").read_text())
    assert {entry["type"] for entry in devices.values()} == {"Gicv2", "Pl011", "Pl031"}  # the GIC saved once
    with VmManager() as second:
        restored = second.create("", restore=snap)
        console = Console(second, restored.id)
        second.start(restored.id)
        second.console_input(restored.id, b"version\n")
        console.expect("U-Boot 20")
        console.expect(PROMPT)
        second.console_input(restored.id, b"printenv marker\n")
        console.expect("marker=before-snapshot")
        console.expect(PROMPT)


@pytest.fixture(scope="module")
def arm64_linux() -> dict[str, Path]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "prepare-linux.sh"), "--arch", "arm64"],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    ).stdout
    return {line.split()[0]: Path(line.split()[1]) for line in out.splitlines() if len(line.split()) >= 2}


def _private_config(tmp_path: Path, disk: Path) -> Path:
    """The shipped smp2 config with a disk of its own (tests never write the shared image)."""
    text = LINUX_SMP2.read_text()
    shipped = 'disk_path = "~/.cache/axvisor/arm64/disk-vm.ext4"'
    assert shipped in text
    path = tmp_path / LINUX_SMP2.name
    path.write_text(text.replace(shipped, f'disk_path = "{disk}"').replace('"~/', f'"{Path.home()}/'))
    return path


def test_linux_aarch64_smp2_saved_at_its_shell_carries_on_after_a_restore(
    arm64_linux: dict[str, Path], tmp_path: Path
) -> None:
    disk = tmp_path / "disk.ext4"
    shutil.copy(arm64_linux["vmdisk"], disk)
    snap = tmp_path / "snap"
    with VmManager() as first:
        info = first.create(_private_config(tmp_path, disk))
        console = Console(first, info.id)
        first.start(info.id)
        console.expect(SHELL, timeout=900)
        first.console_input(info.id, b'echo be""fore\n')
        console.expect("before")
        console.expect(SHELL)
        first.snapshot(info.id, snap, stop=True)
    assert json.loads((snap / "machine.json").read_text())["power"]["states"] == ["ON", "ON"]
    with VmManager() as second:
        restored = second.create("", restore=snap)
        console = Console(second, restored.id)
        second.start(restored.id)
        second.console_input(restored.id, b'echo af""ter $(grep -c ^processor /proc/cpuinfo); sleep 1; echo sl""ept\n')
        console.expect("after 2")
        console.expect("slept")  # the virtual timer's interrupt came through the restored GIC
        console.expect(SHELL)
        second.console_input(restored.id, b'taskset 2 echo on""cpu1\n')
        console.expect("oncpu1")
        console.expect(SHELL)
