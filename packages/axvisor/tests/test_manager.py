"""VmManager driving VMs on the scripted backend: lifecycle and its wrong-state errors, pause
as a barrier the vCPU threads park at, console, metrics, guest memory, registers and a
riscv page walk over a page table the test writes into guest RAM."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import AxVCpuExitReason, MmioWrite, ScriptedVCpu
from axvisor.manager import (
    MEMORY_ACCESS_MAX,
    BadRequest,
    ManagerClosed,
    VmManager,
    VmNotFound,
    VMState,
    VmStateError,
    parse_size,
)
from axvm import AxVM, ScriptedBackend

RISCV = """
[base]
id = 7
name = "{name}"
vm_type = 1
cpu_num = {cpus}
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "{image}"
kernel_load_addr = 0x8000_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [["uart", 0x1000_0000, 0x100, 10, 0x2, []], ["test", 0x10_0000, 0x1000, 0, 0x82, []]]
"""

UART = GuestPhysAddr(0x1000_0000)
RAM = 0x8000_0000
DEADLINE = 30.0
"""Seconds a test waits for something that must happen (a bound on a hang, never an assertion)."""


class TickingVCpu(ScriptedVCpu):
    """A guest that never ends by itself: each run writes one console byte and counts a tick."""

    def __init__(self, script: list[AxVCpuExitReason] | None = None) -> None:
        super().__init__(script or [])
        self.ticks = 0
        self.inside = False

    def run(self) -> AxVCpuExitReason:
        self.inside = True
        try:
            if self.exits_left:
                return super().run()
            self.ticks += 1
            time.sleep(0.0005)
            return MmioWrite(UART, AccessWidth.BYTE, ord("."))
        finally:
            self.inside = False


class Backends:
    """Makes a ScriptedBackend of TickingVCpus per VM build and remembers them."""

    def __init__(self, make: Callable[[int], ScriptedVCpu] | None = None) -> None:
        self.built: list[ScriptedBackend] = []
        self._make = make or (lambda vcpu_id: TickingVCpu())

    def __call__(self, config: object) -> ScriptedBackend:
        backend = ScriptedBackend(vcpu_factory=self._make)
        self.built.append(backend)
        return backend

    def vcpu(self, index: int = 0, build: int = -1) -> TickingVCpu:
        vcpu = self.built[build].vcpus[index]
        assert isinstance(vcpu, TickingVCpu)
        return vcpu


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "guest.bin"
    path.write_bytes(b"\x13\x00\x00\x00" * 4)
    return path


@pytest.fixture
def config_text(image: Path) -> Callable[..., str]:
    def make(name: str = "tick", cpus: int = 1) -> str:
        return RISCV.format(name=name, cpus=cpus, image=image)

    return make


@pytest.fixture
def backends() -> Backends:
    return Backends()


@pytest.fixture
def manager(tmp_path: Path, backends: Backends) -> Iterator[VmManager]:
    with VmManager(tmp_path / "logs", backend_factory=backends) as vms:
        yield vms


def test_lifecycle_with_wrong_state_errors_naming_the_state(manager: VmManager, config_text, backends) -> None:
    info = manager.create(config_text(), text=True)
    assert (info.id, info.name, info.state, info.cpus) == (7, "tick", VMState.READY, 1)
    assert manager.ids() == [7]
    with pytest.raises(VmStateError, match="is Ready: cannot pause") as refused:
        manager.pause(7)
    assert refused.value.state is VMState.READY and refused.value.http_status == 409
    with pytest.raises(VmStateError, match="is Ready: cannot resume"):
        manager.resume(7)

    assert manager.start(7).state is VMState.RUNNING
    wait_until(lambda: backends.vcpu().ticks > 0, "the guest ran")
    with pytest.raises(VmStateError, match="is Running: cannot start"):
        manager.start(7)
    with pytest.raises(VmStateError, match="is Running: cannot delete"):
        manager.delete(7)
    with pytest.raises(VmStateError, match="is Running: cannot read registers"):
        manager.registers(7, 0)

    assert manager.stop(7).state is VMState.STOPPED
    stopped = manager.get(7)
    assert stopped.exit_code == 0 and stopped.reason == "stopped by the manager"
    assert manager.list() == [] and [vm.id for vm in manager.list(all=True)] == [7]
    assert backends.built[0].closed  # the build was released through the one shutdown path
    with pytest.raises(VmStateError, match="is Stopped: cannot pause"):
        manager.pause(7)

    assert manager.start(7).state is VMState.RUNNING  # built afresh from the config
    assert len(backends.built) == 2
    wait_until(lambda: backends.vcpu().ticks > 0, "the restarted guest ran")
    manager.delete(7, force=True)
    assert backends.built[1].closed
    with pytest.raises(VmNotFound, match="no VM with id 7") as missing:
        manager.get(7)
    assert missing.value.http_status == 404


def test_pause_parks_every_vcpu_and_resume_continues(manager: VmManager, config_text, backends) -> None:
    manager.create(config_text(cpus=2), text=True)
    manager.start(7)
    wait_until(lambda: all(backends.vcpu(i).ticks > 0 for i in (0, 1)), "both vCPUs ran")
    assert manager.pause(7).state is VMState.PAUSED
    vm = manager._vms[7].supervisor.vm
    assert vm.state is VMState.PAUSED
    assert manager._vms[7].gate.parked() == {0, 1}
    frozen = [backends.vcpu(i).ticks for i in (0, 1)]
    output = manager.console_history(7)
    time.sleep(0.2)  # a window in which a vCPU that had not parked would tick
    assert [backends.vcpu(i).ticks for i in (0, 1)] == frozen
    assert manager.console_history(7) == output
    assert not any(backends.vcpu(i).inside for i in (0, 1))
    with pytest.raises(VmStateError, match="is Paused: cannot pause"):
        manager.pause(7)

    assert manager.resume(7).state is VMState.RUNNING
    wait_until(lambda: all(backends.vcpu(i).ticks > frozen[i] for i in (0, 1)), "both vCPUs ran again")
    metrics = manager.metrics(7)
    assert metrics.paused_s >= 0.2 and metrics.state is VMState.RUNNING


def test_stop_and_reset_of_a_paused_vm(manager: VmManager, config_text, backends) -> None:
    manager.create(config_text(), text=True)
    manager.start(7)
    manager.pause(7)
    info = manager.reset(7)
    assert (info.state, info.resets) == (VMState.RUNNING, 1)
    assert backends.built[0].closed and len(backends.built) == 2
    wait_until(lambda: backends.vcpu().ticks > 0, "the rebuilt guest ran")
    manager.pause(7)
    assert manager.stop(7).state is VMState.STOPPED
    assert backends.built[1].closed


def test_guest_power_off_and_a_failing_vm_leave_the_others_running(tmp_path: Path, config_text) -> None:
    class Exploding(TickingVCpu):
        def run(self) -> AxVCpuExitReason:
            raise OSError("KVM_RUN: Bad address")

    power_off = [MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, 0x5555)]
    kinds = {"off": lambda i: TickingVCpu(power_off), "boom": lambda i: Exploding(), "tick": lambda i: TickingVCpu()}
    made: dict[str, list[ScriptedBackend]] = {name: [] for name in kinds}

    def factory(config) -> ScriptedBackend:
        backend = ScriptedBackend(vcpu_factory=kinds[config.base.name])
        made[config.base.name].append(backend)
        return backend

    with VmManager(None, backend_factory=factory) as manager:
        ids = {name: manager.create(config_text(name), text=True).id for name in kinds}
        assert sorted(ids.values()) == [7, 8, 9]  # the config's id, then the next free ones
        for vm_id in ids.values():
            manager.start(vm_id)
        wait_until(lambda: manager.get(ids["off"]).state is VMState.STOPPED, "the guest powered off")
        wait_until(lambda: manager.get(ids["boom"]).state is VMState.FAILED, "the broken VM failed")
        assert manager.get(ids["off"]).reason == "powered off with status 0"
        assert "Bad address" in (manager.get(ids["boom"]).reason or "")
        ticks = made["tick"][0].vcpus[0].ticks  # type: ignore[attr-defined]
        wait_until(lambda: made["tick"][0].vcpus[0].ticks > ticks, "the healthy VM still runs")  # type: ignore[attr-defined]
        assert manager.get(ids["tick"]).state is VMState.RUNNING
        manager.delete(ids["boom"])
        manager.delete(ids["off"], keep_data=True)
    assert made["tick"][0].closed  # close() stopped the VM still running
    with pytest.raises(ManagerClosed):
        manager.list()


def test_console_subscription_history_and_input(manager: VmManager, config_text, backends) -> None:
    manager.create(config_text(), text=True)
    seen: list[bytes] = []
    got = threading.Event()
    subscription = manager.console_subscribe(7, lambda data: (seen.append(data), got.set()))
    assert manager.console_input(7, b"ignored") == 0  # Ready: nobody reads it yet
    manager.start(7)
    assert got.wait(DEADLINE) and seen[0] == b"."
    subscription.close()
    wait_until(lambda: len(manager.console_history(7)) >= 3, "more output")
    assert set(manager.console_history(7)) == {ord(".")}
    assert manager.console_input(7, b"hi") == 2
    vm = manager._vms[7].current_vm()
    uart = vm.consoles[0]
    wait_until(lambda: uart.rx_space < 16, "the input reached the UART's FIFO")
    with vm.device_lock:
        assert [uart.read(0) for _ in range(2)] == [ord("h"), ord("i")]
    metrics = manager.metrics(7)
    assert metrics.devices.uart_rx_bytes == 2 and metrics.devices.uart_tx_bytes > 0
    log = Path(manager.get(7).log_path or "")
    manager.delete(7, force=True)
    assert not log.exists()  # no --keep-data: the console log went with the VM


def test_metrics_count_exits_per_vcpu_by_kind(manager: VmManager, config_text, backends) -> None:
    manager.create(config_text(), text=True)
    before = manager.metrics(7)
    assert before.state is VMState.READY and before.boot.start_to_first_instruction_s is None
    manager.start(7)
    wait_until(lambda: backends.vcpu().ticks > 10, "the guest ran")
    metrics = manager.metrics(7)
    (vcpu,) = metrics.vcpus
    assert vcpu.exits["MmioWrite"] >= 10 and vcpu.host_cpu_s > 0
    assert metrics.boot.start_to_first_instruction_s is not None
    assert metrics.boot.start_to_first_console_byte_s is not None
    assert metrics.boot.process_to_first_console_byte_s >= metrics.boot.start_to_first_console_byte_s  # type: ignore[operator]
    assert metrics.devices.uart_tx_bytes >= 10 and metrics.devices.unmapped_accesses == 0
    assert metrics.uptime_s > 0 and metrics.host_cpu_s == vcpu.host_cpu_s


def test_guest_memory_round_trip_and_bounds(manager: VmManager, config_text) -> None:
    manager.create(config_text(), text=True)
    manager.write_memory(7, RAM + 0x1000, b"axvisor")
    assert manager.read_memory(7, RAM + 0x1000, 7) == b"axvisor"
    vm = manager._vms[7].current_vm()
    assert vm.addrspace.memory.read(RAM + 0x1000, 7) == b"axvisor"  # the guest's own RAM
    for gpa, size, field in [(0x1000_0000, 4, "gpa"), (RAM + 0xFF_FFFC, 8, "gpa"), (RAM, 0, "size"),
                             (RAM, MEMORY_ACCESS_MAX + 1, "size"), (-1, 4, "gpa")]:  # fmt: skip
        with pytest.raises(BadRequest) as bad:
            manager.read_memory(7, gpa, size)
        assert bad.value.field == field and bad.value.http_status == 400
    with pytest.raises(BadRequest) as bad:
        manager.write_memory(7, RAM, b"x" * (MEMORY_ACCESS_MAX + 1))
    assert bad.value.field == "data"
    manager.stop(7)
    with pytest.raises(VmStateError, match="is Stopped: cannot access guest memory"):
        manager.read_memory(7, RAM, 4)


def test_registers_of_a_paused_vm(manager: VmManager, config_text, backends) -> None:
    manager.create(config_text(), text=True)
    manager.start(7)
    manager.pause(7)
    registers = manager.registers(7, 0)
    assert registers["pc"] == RAM  # the scripted vCPU's pc is its entry point
    assert {"ra", "sp", "a0", "t6", "satp", "mstatus", "scause"} <= set(registers)
    with pytest.raises(BadRequest) as bad:
        manager.registers(7, 1)
    assert bad.value.field == "vcpu"


def _sv39_tables(manager: VmManager, vm_id: int) -> tuple[int, int]:
    """Sv39 tables in guest RAM mapping VA 0x4000_1000 to PA 0x8020_3000 (a 4 KiB page, R+W)
    and VA 0xC000_0000 to PA 0xC000_0000 (a 1 GiB superpage, R+X); returns (satp, root)."""
    root, mid, leaf = RAM + 0x10_0000, RAM + 0x10_1000, RAM + 0x10_2000

    def pte(pa: int, flags: int) -> bytes:
        return ((pa >> 12) << 10 | flags).to_bytes(8, "little")

    va = 0x4000_1000
    manager.write_memory(vm_id, root + 8 * ((va >> 30) & 0x1FF), pte(mid, 0x1))  # V: points down
    manager.write_memory(vm_id, mid + 8 * ((va >> 21) & 0x1FF), pte(leaf, 0x1))
    manager.write_memory(vm_id, leaf + 8 * ((va >> 12) & 0x1FF), pte(0x8020_3000, 0x1 | 0x2 | 0x4 | 0x40 | 0x80))
    manager.write_memory(vm_id, root + 8 * 3, pte(0xC000_0000, 0x1 | 0x2 | 0x8))  # VA 0xC000_0000: 1 GiB R+X
    return (8 << 60) | (root >> 12), root


def test_translate_walks_a_riscv_page_table_in_guest_ram(tmp_path: Path, config_text) -> None:
    pytest.importorskip("unicorn", reason="the riscv walk is the soft backend's, which needs unicorn")
    satp_holder: dict[str, int] = {}

    class Paged(TickingVCpu):
        def get_register(self, name: str) -> int:
            return satp_holder.get(name, super().get_register(name))

    with VmManager(None, backend_factory=Backends(lambda i: Paged())) as manager:
        manager.create(config_text(), text=True)
        satp, root = _sv39_tables(manager, 7)
        satp_holder["satp"] = satp
        manager.start(7)
        with pytest.raises(VmStateError, match="is Running: cannot translate"):
            manager.translate(7, 0, 0x4000_1234)
        manager.pause(7)
        walk = manager.translate(7, 0, 0x4000_1234)
        assert (walk.gpa, walk.mode, walk.page_size, walk.fault) == (0x8020_3234, "sv39", 4096, None)
        assert walk.levels[0][0] == root + 8 * 1 and len(walk.levels) == 3
        assert walk.writable and not walk.user and not walk.executable
        huge = manager.translate(7, 0, 0xC012_3456)
        assert (huge.gpa, huge.page_size, huge.executable, huge.writable) == (0xC012_3456, 1 << 30, True, False)
        missing = manager.translate(7, 0, 0x4020_0000)
        assert missing.gpa is None and "not valid" in (missing.fault or "")
        bad_va = manager.translate(7, 0, 0x0000_8000_0000_0000)
        assert bad_va.gpa is None and "sign-extended" in (bad_va.fault or "")
        with pytest.raises(BadRequest) as bad:
            manager.translate(7, 0, 1 << 64)
        assert bad.value.field == "gva"


def test_create_overrides_and_bad_requests_name_the_field(
    manager: VmManager, config_text, image: Path, tmp_path: Path
) -> None:
    path = tmp_path / "tick.toml"
    path.write_text(config_text())
    info = manager.create(path, name="renamed", cpus=2, mem=parse_size("8M"))
    assert (info.name, info.cpus, info.memory_bytes, info.config_path) == ("renamed", 2, 8 << 20, str(path))
    assert len(manager._vms[7].current_vm().vcpus) == 2
    for kwargs, field in [({"cpus": 0}, "cpus"), ({"mem": 1000}, "mem"), ({"name": ""}, "name"),
                          ({"mem": 1 << 40}, "config")]:  # fmt: skip
        with pytest.raises(BadRequest) as bad:
            manager.create(path, **kwargs)
        assert bad.value.field == field, bad.value
    with pytest.raises(BadRequest, match="config: .*no such file|cannot read") as missing:
        manager.create(tmp_path / "nope.toml")
    assert missing.value.field == "config"
    with pytest.raises(BadRequest, match="invalid TOML"):
        manager.create("[base", text=True)
    with pytest.raises(BadRequest, match=r"base\.cpu_num"):
        manager.create(config_text().replace("cpu_num = 1", "cpu_num = -1"), text=True)
    assert manager.ids() == [7]  # nothing left behind by the refused ones
    with pytest.raises(BadRequest, match="mem"):
        parse_size("lots")


def test_axvm_pause_holds_run_vcpu_and_stops_a_guest_clock(image: Path, config_text) -> None:
    """AxVM's part: request_pause makes run_vcpu return Nothing; suspend/resume stop and restart
    a backend's GuestClock once each."""

    class ClockedBackend(ScriptedBackend):
        def __init__(self) -> None:
            super().__init__(vcpu_factory=lambda i: TickingVCpu())
            self.calls: list[str] = []

        def pause_clock(self) -> None:
            self.calls.append("pause")

        def resume_clock(self) -> None:
            self.calls.append("resume")

    from axvcpu import Nothing
    from axvm import parse_config

    backend = ClockedBackend()
    vm = AxVM(parse_config(config_text()), backend)
    vm.mark_loaded()
    vm.boot()
    vm.request_pause()
    assert vm.state is VMState.PAUSING
    assert vm.run_vcpu(0) == Nothing() and backend.vcpus[0].ticks == 0  # type: ignore[attr-defined]
    vm.suspend()
    vm.resume()
    assert backend.calls == ["pause", "resume"] and vm.state is VMState.RUNNING
    vm.stop()
