"""VmManager with real guests: a riscv U-Boot VM on the soft CPU and an x86 echo guest on KVM
paused (no progress: pc, console and guest clock stand still), resumed (input typed while paused
is answered), inspected, reset, stopped and deleted; and a riscv Linux VM paused at its shell
whose /proc/uptime shows no jump across the pause, and whose Sv57 page tables the VMM's walk
reads as the engine does.

Boots are few (U-Boot twice, echo once, Linux once); nothing here asserts a duration: waits are
bounded only so that a hang fails, and clock checks compare two measurements of the same pause.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from axvisor.manager import VmManager, VMState, VmStateError

ROOT = Path(__file__).parent.parent
CONFIGS = ROOT / "configs" / "vms"
UBOOT_PROMPT = "=> "
LINUX_SHELL = "axvisor# "
pytestmark = pytest.mark.timeout(1200)


class Console:
    """A VM's console output as text, read through a manager subscription (as the shell does)."""

    def __init__(self, manager: VmManager, vm_id: int) -> None:
        self._manager = manager
        self._vm_id = vm_id
        self._cond = threading.Condition()
        self._text = ""
        self._pos = 0
        self.subscription = manager.console_subscribe(vm_id, self._output)

    def _output(self, data: bytes) -> None:
        with self._cond:
            self._text += data.decode("utf-8", "replace")
            self._cond.notify_all()

    @property
    def size(self) -> int:
        with self._cond:
            return len(self._text)

    def expect(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        """Wait for ``pattern`` after what the last expect consumed (the timeout bounds a hang)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (found := re.compile(pattern).search(self._text, self._pos)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} on the console; it ends with {self._text[-400:]!r}")
                self._cond.wait(left)
            self._pos = found.end()
            return found

    def send(self, text: str) -> None:
        assert self._manager.console_input(self._vm_id, text.encode()) == len(text)


@pytest.fixture(scope="module")
def debian_firmware() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True, timeout=1200
    )


def stop_autoboot(console: Console) -> None:
    console.expect("Hit any key to stop autoboot")
    console.send(" ")
    console.expect(UBOOT_PROMPT)


def test_uboot_vm_paused_makes_no_progress_then_resumes_resets_stops(debian_firmware: None, tmp_path: Path) -> None:
    with VmManager(tmp_path / "logs") as manager:
        vm_id = manager.create(CONFIGS / "uboot-riscv64-virt-smp1.toml").id
        console = Console(manager, vm_id)
        manager.start(vm_id)
        stop_autoboot(console)

        assert manager.pause(vm_id).state is VMState.PAUSED
        backend = manager._vms[vm_id].current_vm().backend  # the soft backend: its mtime is the guest's time
        pc, mtime, printed = manager.registers(vm_id, 0)["pc"], backend.mtime(), console.size
        console.send("version\r")  # typed while paused: it waits in the UART for the guest
        time.sleep(0.5)  # a window in which a guest that still ran would move
        assert manager.registers(vm_id, 0)["pc"] == pc  # U-Boot at its prompt polls the UART: pc moves
        assert backend.mtime() == mtime  # time CSR and CLINT stand still
        assert console.size == printed  # no echo of what was typed
        walk = manager.translate(vm_id, 0, pc)
        assert walk.mode in ("bare", "sv39") and walk.gpa is not None  # U-Boot's S mode, satp off or on

        assert manager.resume(vm_id).state is VMState.RUNNING
        console.expect(r"U-Boot 20\d\d\.\d\d")  # the command typed while paused, answered
        console.expect(UBOOT_PROMPT)
        assert backend.mtime() > mtime

        manager.write_memory(vm_id, 0x8100_0000, b"axvisor!")  # read back by the guest itself
        console.send("md.b 81000000 8\r")
        console.expect(r"81000000: 61 78 76 69 73 6f 72 21")
        console.expect(UBOOT_PROMPT)

        info = manager.reset(vm_id)
        assert (info.state, info.resets) == (VMState.RUNNING, 1)
        console.expect("OpenSBI v")  # the firmware starts again from the top
        stop_autoboot(console)
        metrics = manager.metrics(vm_id)
        assert metrics.boot.start_to_first_console_byte_s is not None and metrics.devices.uart_tx_bytes > 0

        assert manager.stop(vm_id).state is VMState.STOPPED
        with pytest.raises(VmStateError, match="is Stopped: cannot resume"):
            manager.resume(vm_id)
        manager.delete(vm_id)
        assert manager.ids() == []


def test_x86_echo_vm_paused_and_resumed_on_kvm(kvm: None, guests: Path, tmp_path: Path) -> None:
    with VmManager(tmp_path / "logs") as manager:
        vm_id = manager.create(CONFIGS / "echo-x86_64-kvm-smp1.toml").id
        console = Console(manager, vm_id)
        manager.start(vm_id)
        console.expect("echo ready")
        console.send("abc")
        console.expect("ABC")

        manager.pause(vm_id)
        vm = manager._vms[vm_id].current_vm()
        kvm_vm = vm.backend.vm
        clock_at_pause = kvm_vm.get_clock()
        paused_at = time.monotonic_ns()
        registers = manager.registers(vm_id, 0)
        walk = manager.translate(vm_id, 0, registers["rip"])
        assert walk.mode == "x86-4level" and walk.gpa == vm.vcpus[0].arch.translate(registers["rip"])
        printed = console.size
        console.send("def")  # completes into the UART while paused; answered after resume
        time.sleep(0.5)
        assert console.size == printed
        assert manager.registers(vm_id, 0)["rip"] == registers["rip"]
        paused_ns = time.monotonic_ns() - paused_at
        manager.resume(vm_id)
        advance = kvm_vm.get_clock() - clock_at_pause
        assert advance < paused_ns // 4, (advance, paused_ns)  # the kvmclock skipped the pause

        console.expect("DEF")
        console.send(".\r")
        console.expect("bye")
        deadline = time.monotonic() + 60
        while manager.get(vm_id).state is not VMState.STOPPED and time.monotonic() < deadline:
            time.sleep(0.01)
        info = manager.get(vm_id)
        assert (info.state, info.exit_code) == (VMState.STOPPED, 0)
        exits = manager.metrics(vm_id).vcpus[0].exits
        assert exits.get("IoRead", 0) > 0 and exits.get("IoWrite", 0) > 0


@pytest.fixture(scope="module")
def linux_images() -> dict[str, Path]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "prepare-riscv-linux.sh")], check=True, capture_output=True, text=True, timeout=1800
    ).stdout
    return {line.split()[0]: Path(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2}


def uptime(console: Console) -> float:
    console.send("cat /proc/uptime\n")
    return float(console.expect(r"(\d+\.\d+) \d+\.\d+\s+" + re.escape(LINUX_SHELL)).group(1))


def check_sv57_walks(manager: VmManager, vm_id: int) -> None:
    """Debian's kernel runs Sv57 here (the deepest mode the engine accepts): the VMM's walk of
    its trap vector (and pc and sp, paused in the kernel) must find the pages the engine's own
    MMU finds."""
    from axvcpu.backends.soft.riscv_debug import HartDebug  # not attached: run stays as it was

    registers = manager.registers(vm_id, 0)
    assert registers["satp"] >> 60 == 10, hex(registers["satp"])
    in_kernel = [registers["pc"], registers["sp"]] if registers["priv"] == 1 else []  # not in OpenSBI
    for gva in (registers["stvec"], *in_kernel):
        walk = manager.translate(vm_id, 0, gva)
        engine = manager.debug_call(vm_id, 0, lambda vm, n, va=gva: HartDebug.for_hart(vm.vcpus[n].arch).translate(va))
        assert walk.mode == "sv57" and walk.gpa is not None and walk.gpa == engine, (walk, engine)


def test_linux_paused_at_its_shell_shows_no_clock_jump(linux_images: dict[str, Path], tmp_path: Path) -> None:
    disk = tmp_path / "disk.ext4"
    shutil.copy(linux_images["disk"], disk)
    text = (CONFIGS / "linux-riscv64-virt-smp1.toml").read_text()
    text = text.replace('disk_path = "~/.cache/axvisor/riscv64/disk-vm.ext4"', f'disk_path = "{disk}"')
    config = tmp_path / "linux.toml"
    config.write_text(text.replace('"~/', f'"{Path.home()}/'))
    with VmManager(tmp_path / "logs") as manager:
        vm_id = manager.create(config).id
        console = Console(manager, vm_id)
        manager.start(vm_id)
        console.expect(re.escape(LINUX_SHELL), timeout=600)
        before, host_before = uptime(console), time.monotonic()
        manager.pause(vm_id)
        paused_at = time.monotonic()
        check_sv57_walks(manager, vm_id)
        time.sleep(5)
        paused = time.monotonic() - paused_at
        manager.resume(vm_id)
        after, host_after = uptime(console), time.monotonic()  # it answers a command after the pause
        guest, host = after - before, host_after - host_before
        assert guest > 0
        # The guest's clock missed the pause and nothing else: its uptime fell behind the host's
        # by about the pause (the two readings' own command round trips are the slack).
        assert 0.8 * paused <= host - guest <= paused + 2.0, (guest, host, paused)
        manager.stop(vm_id)
