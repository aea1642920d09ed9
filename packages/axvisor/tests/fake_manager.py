"""An in-memory stand-in for ``VmManager`` with the same calls, states and errors, so the API's
HTTP layer (routes, status codes, bodies, concurrency, the token) is tested without booting a
guest. The workspace tests (tests/test_api.py) run the same routes against real VMs."""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

from axvisor.manager import (
    MEMORY_ACCESS_MAX,
    BadRequest,
    BootTimes,
    ConsoleSubscription,
    DeviceCounters,
    Translation,
    VcpuMetrics,
    VmInfo,
    VmMetrics,
    VmNotFound,
    VmStateError,
)
from axvm import VMState

RAM_BASE, RAM_SIZE = 0x8000_0000, 0x10_0000


class FakeVm:
    def __init__(self, vm_id: int, name: str, cpus: int, path: str | None) -> None:
        self.id, self.name, self.cpus, self.path = vm_id, name, cpus, path
        self.state = VMState.READY
        self.ram = bytearray(RAM_SIZE)
        self.subscribers: list[ConsoleSubscription] = []
        self.history = bytearray()

    def info(self) -> VmInfo:
        return VmInfo(
            self.id, self.name, self.state, "riscv64", "soft", self.cpus, RAM_SIZE, self.path, 1.5, 0, None, None, None
        )

    def output(self, data: bytes) -> None:
        self.history += data
        for subscription in list(self.subscribers):
            subscription.callback(data)


class FakeManager:
    """Legal states as the real manager's table; the console echoes input upper-cased."""

    def __init__(self) -> None:
        self.vms: dict[int, FakeVm] = {}
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.closed = False

    def _vm(self, vm_id: int) -> FakeVm:
        try:
            return self.vms[vm_id]
        except KeyError:
            raise VmNotFound(vm_id) from None

    def _need(self, vm: FakeVm, action: str, *allowed: VMState) -> None:
        if vm.state not in allowed:
            raise VmStateError(vm.id, vm.name, action, vm.state, allowed)

    def create(
        self,
        config: str | Path,
        *,
        text: bool = False,
        name: str | None = None,
        cpus: int | None = None,
        mem: int | None = None,
    ) -> VmInfo:
        try:
            data = tomllib.loads(str(config)) if text else tomllib.loads(Path(config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise BadRequest("config", f"{'TOML text' if text else config}: {error}") from None
        base = data.get("base", {})
        if "name" not in base:
            raise BadRequest("config", "base.name: missing")
        with self.lock:
            vm_id = max(self.vms, default=0) + 1
            vm = FakeVm(vm_id, name or base["name"], cpus or int(base.get("cpu_num", 1)), None if text else str(config))
            self.vms[vm_id] = vm
        return vm.info()

    def list(self, all: bool = False) -> list[VmInfo]:
        return [
            vm.info()
            for vm in sorted(self.vms.values(), key=lambda v: v.id)
            if all or vm.state not in (VMState.STOPPED, VMState.FAILED)
        ]

    def get(self, vm_id: int) -> VmInfo:
        return self._vm(vm_id).info()

    def ids(self) -> list[int]:
        return sorted(self.vms)

    def start(self, vm_id: int) -> VmInfo:
        vm = self._vm(vm_id)
        self._need(vm, "start", VMState.READY, VMState.STOPPED, VMState.FAILED)
        vm.state = VMState.RUNNING
        vm.output(b"booted\r\n=> ")
        return vm.info()

    def stop(self, vm_id: int, force: bool = False, graceful: bool = False, timeout: float = 30.0) -> VmInfo:
        vm = self._vm(vm_id)
        self._need(vm, "stop", VMState.READY, VMState.RUNNING, VMState.PAUSED)
        self.calls.append(f"stop {vm_id} force={force} graceful={graceful}")
        vm.state = VMState.STOPPED
        return vm.info()

    def pause(self, vm_id: int, timeout: float = 10.0) -> VmInfo:
        vm = self._vm(vm_id)
        self._need(vm, "pause", VMState.RUNNING)
        vm.state = VMState.PAUSED
        return vm.info()

    def resume(self, vm_id: int) -> VmInfo:
        vm = self._vm(vm_id)
        self._need(vm, "resume", VMState.PAUSED)
        vm.state = VMState.RUNNING
        return vm.info()

    def reset(self, vm_id: int, timeout: float = 30.0) -> VmInfo:
        vm = self._vm(vm_id)
        self._need(vm, "reset", VMState.RUNNING, VMState.PAUSED)
        vm.state = VMState.RUNNING
        return vm.info()

    def delete(self, vm_id: int, force: bool = False, keep_data: bool = False) -> None:
        vm = self._vm(vm_id)
        if not force:
            self._need(vm, "delete", VMState.READY, VMState.STOPPED, VMState.FAILED)
        self.calls.append(f"delete {vm_id} force={force} keep_data={keep_data}")
        for subscription in list(vm.subscribers):
            subscription.close()
        del self.vms[vm_id]

    def close(self) -> None:
        for vm_id in sorted(self.vms):
            vm = self.vms[vm_id]
            if vm.state in (VMState.RUNNING, VMState.PAUSED, VMState.READY):
                vm.state = VMState.STOPPED
                self.calls.append(f"close-stop {vm_id}")
        self.closed = True

    def console_subscribe(self, vm_id: int, callback: Callable[[bytes], object]) -> ConsoleSubscription:
        vm = self._vm(vm_id)
        subscription = ConsoleSubscription(vm_id, callback, lambda s: vm.subscribers.remove(s))
        vm.subscribers.append(subscription)
        return subscription

    def console_history(self, vm_id: int) -> bytes:
        return bytes(self._vm(vm_id).history)

    def console_input(self, vm_id: int, data: bytes) -> int:
        vm = self._vm(vm_id)
        if vm.state not in (VMState.RUNNING, VMState.PAUSED):
            return 0
        vm.output(data.upper())
        return len(data)

    def metrics(self, vm_id: int) -> VmMetrics:
        vm = self._vm(vm_id)
        return VmMetrics(
            vm.id,
            vm.name,
            vm.state,
            1.5,
            0.25,
            BootTimes(0.01, 0.02, 0.3, 0.4),
            (VcpuMetrics(0, {"MmioRead": 7, "Halt": 2}, 0.5),),
            DeviceCounters(10, 2, 0, 0, 0, 1, 0, {"uart0": {"tx_bytes": 10}}),
            0.5,
            0,
        )

    def _range(self, vm: FakeVm, gpa: int, size: int, field: str) -> int:
        if vm.state in (VMState.STOPPED, VMState.FAILED):
            raise VmStateError(vm.id, vm.name, "access memory", vm.state)
        if not 1 <= size <= MEMORY_ACCESS_MAX:
            raise BadRequest(field, f"expected 1 to {MEMORY_ACCESS_MAX} bytes")
        if not (RAM_BASE <= gpa and gpa + size <= RAM_BASE + RAM_SIZE):
            raise BadRequest("gpa", f"{gpa:#x}+{size} is not guest RAM")
        return gpa - RAM_BASE

    def read_memory(self, vm_id: int, gpa: int, size: int) -> bytes:
        vm = self._vm(vm_id)
        offset = self._range(vm, gpa, size, "size")
        return bytes(vm.ram[offset : offset + size])

    def write_memory(self, vm_id: int, gpa: int, data: bytes) -> None:
        vm = self._vm(vm_id)
        offset = self._range(vm, gpa, len(data), "data")
        vm.ram[offset : offset + len(data)] = data

    def registers(self, vm_id: int, vcpu: int) -> dict[str, int]:
        vm = self._vm(vm_id)
        self._need(vm, "read registers", VMState.PAUSED)
        if vcpu >= vm.cpus:
            raise BadRequest("vcpu", f"VM {vm_id} has {vm.cpus} vCPU(s)")
        return {"pc": 0x8020_0000, "sp": 0x8100_0000, "satp": 0}

    def translate(self, vm_id: int, vcpu: int, gva: int) -> Translation:
        vm = self._vm(vm_id)
        self._need(vm, "translate", VMState.PAUSED)
        if vcpu >= vm.cpus:
            raise BadRequest("vcpu", f"VM {vm_id} has {vm.cpus} vCPU(s)")
        return Translation(gva, gva, "bare", (), 4096, True, False, True)
