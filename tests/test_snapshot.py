"""VM snapshots end to end: a riscv U-Boot VM on the soft CPU saved at its prompt and restored
in another manager answers a command; refusals (newer format, another config, another backend,
a changed disk) each one line; clones from one snapshot run side by side with their own ids.

A riscv Linux VM saved at its shell and restored by ``axvisor run --restore`` in a fresh
process answers a command (pexpect). Waits are bounded only so that a hang fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from axvisor.manager import BadRequest, VmManager, VMState

from .test_manager_vms import Console
from .vmm_watch import watch

ROOT = Path(__file__).parent.parent
CONFIGS = ROOT / "configs" / "vms"
UBOOT = CONFIGS / "uboot-riscv64-virt-smp1.toml"
UBOOT_PROMPT = "=> "
LINUX_SHELL = "axvisor# "
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def uboot_images() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True, timeout=1200
    )


def _uboot_at_prompt(manager: VmManager) -> tuple[int, Console]:
    info = manager.create(UBOOT)
    console = Console(manager, info.id)
    manager.start(info.id)
    console.expect("Hit any key")
    console.expect(UBOOT_PROMPT)  # autoboot finds nothing and gives the prompt
    return info.id, console


def test_uboot_saved_at_its_prompt_answers_after_a_restore_elsewhere(uboot_images: None, tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    with VmManager() as first:
        vm_id, console = _uboot_at_prompt(first)
        first.console_input(vm_id, b"setenv marker before-snapshot\n")
        console.expect(UBOOT_PROMPT)
        info = first.snapshot(vm_id, snap, stop=True)
        assert info.state is VMState.STOPPED
    manifest = json.loads((snap / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["backend"] == "soft" and manifest["arch"] == "riscv64"
    ram = snap / manifest["ram"][0]["file"]
    assert ram.stat().st_size == 0x800_0000
    assert ram.stat().st_blocks * 512 < 0x800_0000  # sparse: the untouched RAM is holes
    assert {"vcpu-0.json", "devices.json"} <= {p.name for p in snap.iterdir()}
    with VmManager() as second:
        restored = second.create("", restore=snap)
        console = Console(second, restored.id)
        second.start(restored.id)
        second.console_input(restored.id, b"printenv marker\n")
        console.expect("marker=before-snapshot")
        console.expect(UBOOT_PROMPT)


def test_four_harts_saved_at_the_prompt_answer_after_a_restore(uboot_images: None, tmp_path: Path) -> None:
    """Hart 0 at U-Boot's prompt, harts 1-3 parked in OpenSBI (M-mode wfi) come back as they were."""
    snap = tmp_path / "snap"
    with VmManager() as first:
        info = first.create(CONFIGS / "uboot-riscv64-virt-smp4.toml")
        console = Console(first, info.id)
        first.start(info.id)
        console.expect("Hit any key", timeout=300)
        console.expect(UBOOT_PROMPT, timeout=300)
        first.console_input(info.id, b'echo ready""now\n')  # quiet once its prompt is back
        console.expect("readynow")
        console.expect(UBOOT_PROMPT)
        first.snapshot(info.id, snap, stop=True)
    states = [json.loads((snap / f"vcpu-{n}.json").read_text()) for n in range(4)]
    assert [state["priv"] for state in states] == [1, 3, 3, 3] and all(s["halted"] for s in states[1:])
    with VmManager() as second:
        restored = second.create("", restore=snap)
        console = Console(second, restored.id)
        second.start(restored.id)
        second.console_input(restored.id, b'echo four""harts\n')
        console.expect("fourharts")
        console.expect(UBOOT_PROMPT)


def test_console_input_between_build_and_boot_is_kept(uboot_images: None, tmp_path: Path) -> None:
    """Input that reaches the UART of a restored VM before its boot (the console pump pushes it
    as soon as the VM is started) is not wiped by the restore: devices are restored at build."""
    from axvisor.snapshots import open_snapshot, restore_build

    snap = _snapshot(tmp_path)
    vm = restore_build(open_snapshot(snap))(open_snapshot(snap).config, lambda data: None)
    try:
        assert vm.consoles[0].push_input(b"typed early") == len(b"typed early")
        held = vm.backend.mtime()  # type: ignore[attr-defined]
        time.sleep(0.05)
        assert vm.backend.mtime() == held  # type: ignore[attr-defined]  # the guest clock waits for the boot
        vm.boot()
        assert vm.consoles[0].state().rx_fifo == b"typed early"
    finally:
        vm.stop()


def test_a_running_vm_snapshot_resumes_it_and_refuses_a_used_directory(uboot_images: None, tmp_path: Path) -> None:
    with VmManager() as manager:
        vm_id, console = _uboot_at_prompt(manager)
        assert manager.snapshot(vm_id, tmp_path / "a").state is VMState.RUNNING
        manager.console_input(vm_id, b"echo still-here\n")
        console.expect("still-here")
        with pytest.raises(BadRequest, match="not an empty directory"):
            manager.snapshot(vm_id, tmp_path / "a")
        assert manager.get(vm_id).state is VMState.RUNNING


def _typed_until(child: pexpect.spawn, line: str, pattern: str, tries: int = 30) -> None:
    """Type ``line`` until ``pattern`` shows: input typed before the console has put the terminal
    in raw mode is flushed by that switch, and nothing on the console says when it has."""
    for _ in range(tries):
        child.sendline(line)
        if child.expect([pattern, pexpect.TIMEOUT], timeout=2) == 0:
            return
    raise AssertionError(f"{pattern!r} never came back; the console ends with {child.before[-400:]!r}")


def _snapshot(tmp_path: Path) -> Path:
    snap = tmp_path / "snap"
    with VmManager() as manager:
        vm_id, _ = _uboot_at_prompt(manager)
        manager.snapshot(vm_id, snap, stop=True)
    return snap


def test_refusals_name_what_differs(uboot_images: None, tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    manifest_path = snap / "manifest.json"
    original = manifest_path.read_text()
    cases = {
        "format_version": (9, "format version 9 is newer"),
        "backend": ("kvm", "taken on the kvm backend; this VM would run on soft"),
    }
    with VmManager() as manager:
        for key, (value, message) in cases.items():
            manifest = json.loads(original)
            manifest[key] = value
            manifest_path.write_text(json.dumps(manifest))
            with pytest.raises(BadRequest, match=message):
                manager.create("", restore=snap)
        manifest_path.write_text(original)
        assert manager.list(all=True) == []
    result = subprocess.run(
        [sys.executable, "-m", "axvisor", "run", "--restore", str(snap), str(CONFIGS / "uboot-riscv64-virt-smp4.toml")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "another config: base.cpu_num differs" in result.stderr


def test_a_changed_disk_is_refused_unless_forced(tmp_path: Path) -> None:
    from axvm.snapshot import Snapshot, SnapshotError

    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\x01" * 8192)
    snap = tmp_path / "snap"
    snap.mkdir()
    from axvm.snapshot.manifest import DiskRecord

    record = DiskRecord.of("kernel.disk_path", disk)
    manifest = {"format": "axvisor-snapshot", "format_version": 1, "config": {}, "ram": [], "vcpus": 1,
                "backend": "soft", "arch": "riscv64", "config_hash": "", "disks": [record.__dict__]}  # fmt: skip
    fake = Snapshot(snap, manifest, config=None)  # type: ignore[arg-type]
    fake.check_fits(backend="soft")
    with disk.open("r+b") as out:
        out.write(b"\x02")
    with pytest.raises(SnapshotError, match=r"disk .*disk.img \(kernel.disk_path\) changed since the snapshot"):
        fake.check_fits(backend="soft")
    fake.check_fits(backend="soft", force=True)
    disk.write_bytes(b"\x01" * 4096)
    with pytest.raises(SnapshotError, match="its size is 4096 bytes, it was 8192"):
        fake.check_fits(backend="soft")


def test_clones_of_one_snapshot_run_side_by_side(uboot_images: None, tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    child = watch(pexpect.spawn(
        sys.executable, ["-m", "axvisor", "run", "--restore", str(snap), "--clone", "2"], cwd=str(ROOT),
        timeout=120, encoding="utf-8", codec_errors="replace",
    ))  # fmt: skip
    try:
        _typed_until(child, 'echo first""clone', "firstclone")  # the typed echo does not match
        child.send("\x01n")  # the console moves to the second clone
        child.sendline('echo second""clone')
        child.expect("secondclone")
        child.send("\x01x")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_x86_echo_guest_on_kvm_restored_answers_typed_input(kvm: None, guests: Path, tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    with VmManager() as first:
        vm_id = first.create(CONFIGS / "echo-x86_64-kvm-smp1.toml").id
        console = Console(first, vm_id)
        first.start(vm_id)
        console.expect("echo ready")
        first.console_input(vm_id, b"abc")
        console.expect("ABC")
        first.snapshot(vm_id, snap, stop=True)
    assert (snap / "backend.json").exists()  # the in-kernel PIC, IOAPIC, PIT and kvmclock
    with VmManager() as second:
        restored = second.create("", restore=snap)
        console = Console(second, restored.id)
        second.start(restored.id)
        second.console_input(restored.id, b"xyz")
        console.expect("XYZ")
        second.console_input(restored.id, b".\r")
        console.expect("bye")


@pytest.fixture(scope="module")
def linux_images() -> dict[str, Path]:
    out = subprocess.run([str(ROOT / "scripts" / "prepare-riscv-linux.sh")], check=True, capture_output=True,
                         text=True, timeout=1800).stdout  # fmt: skip
    return {line.split()[0]: Path(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2}


def test_linux_saved_at_its_shell_answers_in_a_fresh_process(linux_images: dict[str, Path], tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    shutil.copy(linux_images["disk"], disk)
    text = (CONFIGS / "linux-riscv64-virt-smp1.toml").read_text()
    text = text.replace('disk_path = "~/.cache/axvisor/riscv64/disk-vm.ext4"', f'disk_path = "{disk}"')
    config = tmp_path / "linux.toml"
    config.write_text(text.replace('"~/', f'"{Path.home()}/'))
    snap = tmp_path / "snap"
    with VmManager() as manager:
        info = manager.create(config)
        console = Console(manager, info.id)
        manager.start(info.id)
        console.expect(LINUX_SHELL, timeout=600)
        manager.console_input(info.id, b"echo remembered > /tmp/mark\n")
        console.expect(LINUX_SHELL)
        manager.snapshot(info.id, snap, stop=True)
    env = dict(os.environ)
    child = watch(pexpect.spawn(sys.executable, ["-m", "axvisor", "run", "--restore", str(snap)], cwd=str(ROOT),
                                env=env, timeout=300, encoding="utf-8", codec_errors="replace"))  # fmt: skip
    try:
        _typed_until(child, "cat /tmp/mark; echo answered-$((6*7))", "answered-42")
        child.sendline("cat /tmp/mark")
        child.expect("remembered")
        child.expect_exact(LINUX_SHELL)
        child.sendline("poweroff -f")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
