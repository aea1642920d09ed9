"""An aarch64 VM snapshot end to end: Debian's U-Boot (qemu_arm64) on the arm virt machine and
the soft CPU, saved at its prompt and restored in another manager, answers a typed command.
Waits are bounded only so that a hang fails."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from axvisor.manager import VmManager, VMState

from .test_manager_vms import Console

ROOT = Path(__file__).parent.parent
UBOOT = ROOT / "configs" / "vms" / "uboot-aarch64-virt-smp1.toml"
PROMPT = "=> "
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
