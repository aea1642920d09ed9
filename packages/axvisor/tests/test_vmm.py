"""The VMM driving whole VMs on the scripted backend: threads, outcomes, isolation, and the
one shutdown path every way out of a run takes."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from axaddrspace import AccessWidth, AddrRange, GuestPhysAddr
from axdevice import BaseDeviceOps, EmuDeviceType
from axvcpu import AxVCpuExitReason, CpuUp, FailEntry, Halt, MmioRead, MmioWrite, Nothing, ScriptedVCpu
from axvisor import UserError, VmOutcome, VmSupervisor, build_vm, run_vms, summarise
from axvisor.console import ConsoleMux, Terminal
from axvisor.session import exit_status, run_session
from axvisor.shutdown import QUIT_REASON, StopRequest
from axvisor.vmm import DEVICE_ERRORS
from axvisor.vmm import exit_status as guest_exit_status
from axvm import AxVM, ScriptedBackend, parse_config

RISCV = """
[base]
id = 1
name = "{name}"
vm_type = 1
cpu_num = 2
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "{image}"
kernel_load_addr = 0x8000_0000
dtb_path = "{image}"
dtb_load_addr = 0x80f0_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [["uart", 0x1000_0000, 0x100, 10, 0x2, []], ["test", 0x10_0000, 0x1000, 0, 0x82, []]]
"""

POWEROFF = MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, 0x5555)


def config(tmp_path: Path, name: str = "vm", image: bytes = b"\x13\x00\x00\x00" * 4):
    path = tmp_path / f"{name}.bin"
    path.write_bytes(image)
    return parse_config(RISCV.format(name=name, image=path))


def test_images_are_loaded_and_the_guest_powers_off(tmp_path) -> None:
    output: list[bytes] = []
    backend = ScriptedBackend({0: [MmioWrite(GuestPhysAddr(0x1000_0000), AccessWidth.BYTE, ord("x")), POWEROFF]})
    vm = build_vm(config(tmp_path, image=b"IMAGE"), backend, output.append)
    assert vm.addrspace.memory.read(GuestPhysAddr(0x8000_0000), 5) == b"IMAGE"
    assert vm.addrspace.memory.read(GuestPhysAddr(0x80f0_0000), 5) == b"IMAGE"
    (outcome,) = run_vms([vm])
    assert outcome.exit_code == 0 and "powered off" in outcome.reason
    assert output == [b"x"]


def test_secondary_vcpu_starts_on_cpu_up_and_halts_are_waited_out(tmp_path) -> None:
    # vCPU 0 halts until vCPU 1's power-off stops it, so the outcome does not depend on timing.
    backend = ScriptedBackend({0: [CpuUp(1, GuestPhysAddr(0x8000_0000)), *[Halt()] * 10_000],
                               1: [Halt(), MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, (4 << 16) | 0x3333)]})
    vm = build_vm(config(tmp_path), backend)
    (outcome,) = run_vms([vm])
    assert outcome.exit_code == 4
    assert backend.vcpus[1].exits_left == 0
    # The power-off ended vCPU 0's halts: its script (100 s of halt waits) did not run out first.
    assert backend.vcpus[0].exits_left > 0


def test_one_failing_vm_does_not_stop_another(tmp_path) -> None:
    class Exploding(ScriptedVCpu):
        def run(self):
            raise OSError("KVM_RUN: Bad address")

    failing = build_vm(config(tmp_path, "bad"), ScriptedBackend(vcpu_factory=lambda i: Exploding([])))
    failed_entry = build_vm(config(tmp_path, "entry"), ScriptedBackend({0: [FailEntry(0x21, "invalid state")]}))
    healthy = build_vm(config(tmp_path, "good"), ScriptedBackend({0: [MmioRead(GuestPhysAddr(0x1000_0005),
                                                                               AccessWidth.BYTE), POWEROFF]}))
    outcomes = run_vms([failing, failed_entry, healthy])
    assert [o.exit_code for o in outcomes] == [1, 1, 0]
    assert "OSError" in outcomes[0].reason and "invalid state" in outcomes[1].reason
    assert summarise(outcomes) == 1
    assert summarise(outcomes[2:]) == 0


class FaultyDevice(BaseDeviceOps):
    """A device with a bug: every read raises."""

    emu_type = EmuDeviceType.Dummy
    address_range = AddrRange.from_start_size(0x2000_0000, 0x1000)

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        raise ZeroDivisionError("device bug")

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        pass


@pytest.mark.device_errors_expected
def test_device_errors_are_reported_when_the_vm_ends(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    read = MmioRead(GuestPhysAddr(0x2000_0004), AccessWidth.DWORD)
    vm = build_vm(config(tmp_path), ScriptedBackend({0: [read, read, POWEROFF]}))
    vm.buses.mmio.add(FaultyDevice())
    with caplog.at_level(logging.ERROR, logger="axvisor.vmm"):
        (outcome,) = run_vms([vm])
    assert outcome.exit_code == 0  # the guest went on: the bus answered both reads
    (line,) = (r.getMessage() for r in caplog.records if DEVICE_ERRORS in r.getMessage())
    assert "2 guest accesses failed" in line and "FaultyDevice (Dummy) at [0x20000000, 0x20001000): 2" in line


def test_image_that_does_not_fit_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="<config>: kernel.dtb_path: .*does not fit in guest RAM"):
        build_vm(config(tmp_path, image=b"\0" * 0x100_0001), ScriptedBackend())


def test_missing_image_is_a_user_error(tmp_path) -> None:
    cfg = config(tmp_path)
    cfg.kernel.kernel_path.unlink()
    with pytest.raises(UserError, match="kernel.kernel_path: .* does not exist"):
        build_vm(cfg, ScriptedBackend())


# -- exit statuses --------------------------------------------------------------------------


def test_a_guest_code_that_does_not_fit_in_8_bits_is_never_success(tmp_path) -> None:
    assert [guest_exit_status(code) for code in (0, 1, 3, 255, 256, 0x100 * 7, 0xFFFF, -1)] == \
        [0, 1, 3, 255, 255, 255, 255, 255]
    fail_256 = MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, (256 << 16) | 0x3333)  # sifive_test FAIL
    (outcome,) = run_vms([build_vm(config(tmp_path), ScriptedBackend({0: [fail_256]}))])
    assert outcome.exit_code == 256 and "status 256" in outcome.reason  # the message keeps the guest's code
    assert summarise([VmOutcome("ok", 0, ""), outcome]) == 255  # exit(256) would have been 0


# -- the shutdown path ----------------------------------------------------------------------


class GuestLoop(ScriptedVCpu):
    """A vCPU whose guest runs until it is kicked; it notes whether its engine was released
    while its thread was still alive (the crash the shutdown path exists to prevent)."""

    def __init__(self) -> None:
        super().__init__([])
        self.running = threading.Event()
        self._kicked = threading.Event()
        self.thread: threading.Thread | None = None
        self.closed = False
        self.closed_while_alive = False

    def run(self) -> AxVCpuExitReason:
        self.thread = threading.current_thread()
        self.running.set()
        self._kicked.wait()  # in the guest until kicked, as KVM_RUN
        self._kicked.clear()
        return Nothing()

    def kick(self) -> None:
        self._kicked.set()

    def close(self) -> None:
        self.closed = True
        self.closed_while_alive = self.thread is not None and self.thread.is_alive()


def looping_vm(tmp_path: Path, name: str = "vm") -> tuple[AxVM, list[GuestLoop], ScriptedBackend]:
    vcpus: list[GuestLoop] = []

    def make(vcpu_id: int) -> GuestLoop:
        vcpus.append(GuestLoop())
        return vcpus[-1]

    backend = ScriptedBackend(vcpu_factory=make)
    return build_vm(config(tmp_path, name), backend), vcpus, backend


def assert_released_after_join(vcpus: list[GuestLoop], backend: ScriptedBackend) -> None:
    assert all(vcpu.closed and not vcpu.closed_while_alive for vcpu in vcpus)
    assert backend.closed


def test_a_stop_kicks_and_joins_every_vcpu_before_the_vm_is_released(tmp_path) -> None:
    vm, vcpus, backend = looping_vm(tmp_path)
    supervisor = VmSupervisor(vm)
    supervisor.start()
    for vcpu in vcpus:
        vcpu.running.wait()
    supervisor.stop(143, "stopped by SIGTERM")
    supervisor.stop(130, "stopped by SIGINT")  # a second stop changes nothing
    assert supervisor.join() == VmOutcome("vm", 143, "stopped by SIGTERM")
    assert len(vcpus) == 2
    assert_released_after_join(vcpus, backend)


def test_a_vm_stopped_before_it_boots_is_released_without_running(tmp_path) -> None:
    backend = ScriptedBackend({0: [POWEROFF]})
    supervisor = VmSupervisor(build_vm(config(tmp_path), backend))
    supervisor.stop(0, QUIT_REASON)
    assert supervisor.join() == VmOutcome("vm", 0, QUIT_REASON)  # never started: released here
    assert backend.vcpus[0].exits_left == 1 and backend.closed


def test_a_stop_during_a_reset_does_not_boot_the_rebuilt_vm(tmp_path) -> None:
    reset = MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, 0x7777)
    first = ScriptedBackend({0: [reset]})
    second = ScriptedBackend({0: [POWEROFF]})

    def rebuild(cfg):  # a signal arrives while the VM is being rebuilt
        supervisor.stop(130, "stopped by SIGINT")
        return build_vm(cfg, second)

    supervisor = VmSupervisor(build_vm(config(tmp_path), first), rebuild)
    supervisor.start()
    assert supervisor.join() == VmOutcome("vm", 130, "stopped by SIGINT")
    assert first.closed and second.closed
    assert second.vcpus[0].exits_left == 1  # the rebuilt VM never ran


def test_writable_disks_are_flushed_before_the_vm_closes_them(tmp_path, monkeypatch) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 16))
    text = RISCV.format(name="vm", image=tmp_path / "vm.bin").replace(
        '["test", 0x10_0000', '["virtio-blk", 0x1000_1000, 0x1000, 1, 0xE1, []], ["test", 0x10_0000')
    (tmp_path / "vm.bin").write_bytes(b"\x13\x00\x00\x00")
    cfg = parse_config(text.replace("[devices]", f'disk_path = "{disk}"\n\n[devices]'))
    flushed: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))  # the descriptor is still open
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    (outcome,) = run_vms([build_vm(cfg, ScriptedBackend({0: [POWEROFF]}))])
    assert outcome.exit_code == 0
    assert flushed == [str(disk)]


def session(vms: list[AxVM], stop: StopRequest, tmp_path: Path, terminal: Terminal | None = None) -> list[VmOutcome]:
    mux = ConsoleMux([vm.name for vm in vms], log_dir=tmp_path / "logs", write=lambda data: None)
    with mux:
        return run_session(vms, mux, lambda cfg: pytest.fail("no VM resets here"), stop, terminal or Terminal(None))


def test_a_stop_signal_stops_every_vm_through_the_one_path(tmp_path) -> None:
    """SIGTERM from another thread: the kernel may deliver it to any thread, the main one wakes."""
    (vm_a, vcpus_a, backend_a), (vm_b, vcpus_b, backend_b) = looping_vm(tmp_path, "a"), looping_vm(tmp_path, "b")
    previous = signal.getsignal(signal.SIGTERM)

    def send_once_running() -> None:
        for vcpu in vcpus_a + vcpus_b:
            vcpu.running.wait()
        os.kill(os.getpid(), signal.SIGTERM)

    with StopRequest() as stop, stop.catching_signals():
        threading.Thread(target=send_once_running).start()
        outcomes = session([vm_a, vm_b], stop, tmp_path)
    assert signal.getsignal(signal.SIGTERM) is previous
    assert [(o.exit_code, o.reason) for o in outcomes] == [(143, "stopped by SIGTERM")] * 2
    assert exit_status(outcomes, stop) == 143
    assert_released_after_join(vcpus_a + vcpus_b, backend_a)
    assert_released_after_join(vcpus_b, backend_b)


def test_ctrl_a_x_stops_every_vm_with_status_0(tmp_path) -> None:
    vm, vcpus, backend = looping_vm(tmp_path)
    with StopRequest() as stop:
        threading.Thread(target=lambda: (vcpus[0].running.wait(), stop.request_quit())).start()
        outcomes = session([vm], stop, tmp_path)
    assert outcomes == [VmOutcome("vm", 0, QUIT_REASON)] and exit_status(outcomes, stop) == 0
    assert_released_after_join(vcpus, backend)


def test_the_status_of_a_power_off_is_the_guests_and_later_signals_change_nothing(tmp_path) -> None:
    fail_3 = MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, (3 << 16) | 0x3333)
    with StopRequest() as stop, stop.catching_signals():
        outcomes = session([build_vm(config(tmp_path), ScriptedBackend({0: [fail_3]}))], stop, tmp_path)
        os.kill(os.getpid(), signal.SIGINT)  # after the run ended: recorded, not raised, not the status
    assert exit_status(outcomes, stop) == 3 and stop.late_signals == 1


class RecordingTerminal(Terminal):
    def __init__(self) -> None:
        super().__init__(None)
        self.restored = 0

    def restore(self) -> bool:
        self.restored += 1
        return True


def test_an_exception_in_the_vmm_still_stops_joins_and_restores_the_terminal(tmp_path) -> None:
    vm, vcpus, backend = looping_vm(tmp_path)

    class BrokenMainLoop(StopRequest):
        def wait(self, timeout: float | None = None) -> None:
            vcpus[0].running.wait()
            raise RuntimeError("a bug in the main loop")

    terminal = RecordingTerminal()
    with BrokenMainLoop() as stop, pytest.raises(RuntimeError, match="a bug in the main loop"):
        session([vm], stop, tmp_path, terminal)
    assert_released_after_join(vcpus, backend)
    assert terminal.restored == 1
