"""``ManagedVm``: one VM of a ``VmManager``, across every build of it, and its lifecycle.

Two locks. ``_op`` serialises the operations on this VM (start, stop, pause, resume, reset,
delete, inspection) and may be held while waiting for vCPU threads; ``_state_lock`` only guards
the state, so the supervisor thread can report the VM's end (``_ended``) while an operation
waits for exactly that. The state moves only through ``_to``, which checks axvm's one table.

The VM runs under the VMM's own ``VmSupervisor``: its one shutdown path (kick, join, flush the
disks, release) ends every run, and a reset, by the guest or by ``reset``, is its rebuild from
the config (the disk is kept). Its pause gate is the managed VM's, so it holds across rebuilds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from axaddrspace import GuestMemory, GuestMemoryError
from axvm import VM_TRANSITIONS, AxVM, AxVMCrateConfig, VMState
from axvm.snapshot import vcpu_state as snapshot_vcpu_state

from . import guest_inspect
from .console import ConsoleTarget, vm_console_target
from .console_hub import ConsoleHub
from .device_stats import device_counters
from .pause import PauseGate
from .vmm import VmOutcome, VmSupervisor
from .vmtypes import (
    MEMORY_ACCESS_MAX,
    BadRequest,
    BootTimes,
    DeviceCounters,
    HostError,
    Translation,
    VcpuMetrics,
    VmInfo,
    VmMetrics,
    VmNotFound,
    VmStateError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

S = VMState
ALLOWED: dict[str, tuple[VMState, ...]] = {
    "start": (S.READY, S.STOPPED, S.FAILED),
    "stop": (S.READY, S.RUNNING, S.PAUSED),
    "force stop": (S.READY, S.RUNNING, S.PAUSING, S.PAUSED, S.STOPPING),
    "pause": (S.RUNNING,),
    "resume": (S.PAUSED,),
    "reset": (S.RUNNING, S.PAUSED),
    "delete": (S.READY, S.STOPPED, S.FAILED),
    "access guest memory": (S.READY, S.RUNNING, S.PAUSING, S.PAUSED),
    "read registers": (S.PAUSED,),
    "translate an address": (S.PAUSED,),
    "snapshot": (S.READY, S.PAUSED),
}
"""Which call is legal in which state (the manager's docstring prints the same)."""

STOP_REASON = (0, "stopped by the manager")
RESET_POLL_SECONDS = 0.01


def process_start_ns() -> int:
    """time.monotonic_ns() at which this process started (from /proc/self/stat), for the boot
    timer; now when /proc cannot say."""
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        boot_now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        age_ns = boot_now - start_ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        return time.monotonic_ns() - max(0, age_ns)
    except (OSError, ValueError, IndexError):
        return time.monotonic_ns()


PROCESS_START_NS = process_start_ns()


class ManagedVm:
    """One VM of the manager: its config, its current build, its state and its console."""

    def __init__(
        self,
        vm_id: int,
        config: AxVMCrateConfig,
        config_path: str | None,
        hub: ConsoleHub,
        build: Callable[[AxVMCrateConfig, Callable[[bytes], None]], AxVM],
    ) -> None:
        self.id = vm_id
        self.config = config
        self.name = config.base.name
        self.config_path = config_path
        self.hub = hub
        self._build = build
        self._op = threading.Lock()
        self._state_lock = threading.Lock()
        self.state = VMState.LOADING
        self.gate = PauseGate()
        self.vm: AxVM | None = None
        """The current build (Ready, or the one the supervisor runs; the last one once ended)."""
        self.supervisor: VmSupervisor | None = None
        self.backend_name = "-"
        self.outcome: VmOutcome | None = None
        self._started_ns = 0
        self._paused_since_ns: int | None = None
        self._paused_total_ns = 0
        self._deleted = False

    # -- state ---------------------------------------------------------------------------------

    def _to(self, wanted: VMState) -> None:
        """Move to ``wanted`` through the one table (a bug in the manager if it is illegal)."""
        with self._state_lock:
            self._move(wanted)

    def _move(self, wanted: VMState) -> None:
        if wanted not in VM_TRANSITIONS[self.state]:
            raise AssertionError(f"VM {self.id}: the manager took an illegal step {self.state.name} -> {wanted.name}")
        self.state = wanted

    def _require(self, action: str) -> None:
        allowed = ALLOWED[action]
        if self.state not in allowed:
            raise VmStateError(self.id, self.name, action, self.state, allowed)

    @contextlib.contextmanager
    def operation(self, action: str | None = None) -> Iterator[None]:
        """Hold this VM's operation lock; with ``action``, check the state allows it."""
        with self._op:
            if self._deleted:
                raise VmNotFound(self.id)
            if action is not None:
                self._require(action)
            yield

    # -- building and running -----------------------------------------------------------------

    def load(self) -> None:
        """Build the VM from its config (Loading -> Ready); on failure -> Failed and re-raise."""
        try:
            vm = self._build(self.config, self.hub.output)
        except BaseException:
            self._to(VMState.FAILED)
            raise
        self.vm = vm
        self.backend_name = vm.backend.name
        self._to(VMState.READY)

    def start(self) -> None:
        with self.operation("start"):
            if self.state in (VMState.STOPPED, VMState.FAILED):
                self._to(VMState.LOADING)
                self.load()
            assert self.vm is not None
            self.supervisor = VmSupervisor(
                self.vm, rebuild=lambda config: self._build(config, self.hub.output), on_end=self._ended, gate=self.gate
            )
            self.outcome = None
            self.hub.mark_boot()
            self._started_ns = time.monotonic_ns()
            self._paused_total_ns, self._paused_since_ns = 0, None
            self._to(VMState.RUNNING)
            self.supervisor.start()

    def _ended(self, supervisor: VmSupervisor) -> None:
        """The supervisor thread: the VM ended (powered off, failed, or stopped by ``stop``)."""
        outcome = supervisor.outcome
        with self._state_lock:
            if supervisor is not self.supervisor:
                return
            self.outcome = outcome
            self.vm = supervisor.vm
            if self.state is VMState.STOPPING:
                return  # ``stop`` (or ``delete``) is waiting for this and settles the state
            failed = outcome is None or outcome.failed
            if failed:
                self._move(VMState.FAILED)
            else:
                self._move(VMState.STOPPING)
                self._move(VMState.STOPPED)
        if failed:
            log.warning("VM %d %r failed: %s", self.id, self.name, outcome.reason if outcome else "?")

    def stop(self, force: bool = False) -> None:
        with self.operation("force stop" if force else "stop"):
            self._stop_locked()

    def _stop_locked(self) -> None:
        """Stop in order (the operation lock is held) and settle Stopped or Failed."""
        with self._state_lock:
            was = self.state
            if was in (VMState.STOPPED, VMState.FAILED):
                return
            if was is not VMState.STOPPING:
                self._move(VMState.STOPPING)
        supervisor = self.supervisor
        if was in (VMState.READY, VMState.LOADING) or supervisor is None:  # this build never ran
            if self.vm is not None:
                self.vm.stop()
            self._to(VMState.STOPPED)
            return
        supervisor.stop(*STOP_REASON)
        self.gate.release()  # after the stop request: parked threads wake and see it
        outcome = supervisor.join()
        with self._state_lock:
            self.outcome = outcome
            self.vm = supervisor.vm
            self._move(VMState.FAILED if outcome.failed else VMState.STOPPED)

    def pause(self, timeout: float) -> None:
        with self.operation("pause"):
            supervisor = self.supervisor
            assert supervisor is not None and self.vm is not None
            self._to(VMState.PAUSING)
            self.gate.hold()
            vm = supervisor.vm
            try:
                vm.request_pause()
            except Exception:  # not Running: it is being rebuilt or ending; the gate still holds
                for vcpu in vm.vcpus:
                    vcpu.kick()
            parked = self.gate.wait_parked(lambda: self._live_vcpus(supervisor), timeout, lambda: supervisor.ended)
            if not parked and supervisor.ended:
                self.gate.release()
                supervisor.join()  # its end has been reported: Stopped or Failed
                return
            if not parked:
                self._give_up_pause(supervisor.vm)
                raise HostError(
                    f"VM {self.id} {self.name!r}: a vCPU did not leave the guest within {timeout:g} s; "
                    f"the pause was given up"
                )
            supervisor.vm.suspend()  # Paused: the guest clock stops
            self._paused_since_ns = time.monotonic_ns()
            self._to(VMState.PAUSED)

    def _give_up_pause(self, vm: AxVM) -> None:
        with contextlib.suppress(Exception):  # a build that was never asked to pause stays Running
            vm.resume()
        self.gate.release()
        self._to(VMState.RUNNING)

    @staticmethod
    def _live_vcpus(supervisor: VmSupervisor) -> set[int] | None:
        """The vCPUs that must park: the live threads of the current run once it has booted and
        while nothing asks it to end (a stop, or a reset whose rebuilt run will park instead)."""
        running = supervisor.running
        if running is None or running.vm is not supervisor.vm or not running.booted:
            return None
        if running.vm.exit_request is not None:
            return None
        return {vcpu_id for vcpu_id, thread in list(running.vcpu_threads.items()) if thread.is_alive()}

    def resume(self) -> None:
        with self.operation("resume"):
            supervisor = self.supervisor
            assert supervisor is not None
            supervisor.vm.resume()  # the clock runs on from where it stopped
            self.gate.release()
            self._account_pause()
            self._to(VMState.RUNNING)

    def _account_pause(self) -> None:
        if self._paused_since_ns is not None:
            self._paused_total_ns += time.monotonic_ns() - self._paused_since_ns
            self._paused_since_ns = None

    def reset(self, timeout: float) -> None:
        with self.operation("reset"):
            supervisor = self.supervisor
            assert supervisor is not None
            resets, old = supervisor.resets, supervisor.vm
            old.reset()  # the guest's own reset path: every vCPU leaves, the supervisor rebuilds
            self.gate.release()
            deadline = time.monotonic() + timeout
            while supervisor.resets == resets and not supervisor.ended:
                if time.monotonic() > deadline:
                    raise HostError(f"VM {self.id} {self.name!r}: the reset did not finish within {timeout:g} s")
                time.sleep(RESET_POLL_SECONDS)
            if supervisor.ended:
                return  # the rebuild failed: ``_ended`` made it Failed
            self._account_pause()
            self.hub.mark_boot()  # the boot timer starts again; uptime counts from the start
            with self._state_lock:
                self.vm = supervisor.vm
                if self.state is VMState.PAUSED:
                    self._move(VMState.RUNNING)

    def delete(self, force: bool) -> None:
        """Stop (with ``force``) and release; the manager forgets the VM afterwards."""
        with self.operation(None):
            if force:
                self._stop_locked()
            else:
                self._require("delete")
                if self.state is VMState.READY:
                    self._stop_locked()
            self._deleted = True

    def close(self) -> None:
        """For the manager's close: stop whatever state it is in, and wait."""
        with self._op:
            if not self._deleted:
                self._stop_locked()

    # -- inspection ----------------------------------------------------------------------------

    def current_vm(self) -> AxVM:
        supervisor = self.supervisor
        vm = supervisor.vm if supervisor is not None and self.state is not VMState.READY else self.vm
        assert vm is not None
        return vm

    def read_memory(self, gpa: int, size: int) -> bytes:
        if not 1 <= size <= MEMORY_ACCESS_MAX:
            raise BadRequest("size", f"{size} bytes: expected 1..{MEMORY_ACCESS_MAX}")
        with self.operation("access guest memory"):
            memory = self._ram(gpa, size)
            return memory.read(gpa, size)

    def write_memory(self, gpa: int, data: bytes) -> None:
        if not 1 <= len(data) <= MEMORY_ACCESS_MAX:
            raise BadRequest("data", f"{len(data)} bytes: expected 1..{MEMORY_ACCESS_MAX}")
        with self.operation("access guest memory"):
            memory = self._ram(gpa, len(data))
            try:
                memory.write(gpa, data)
            except GuestMemoryError as error:  # a read-only region (a ROM)
                raise BadRequest("gpa", str(error)) from None

    def _ram(self, gpa: int, size: int) -> GuestMemory:
        if gpa < 0:
            raise BadRequest("gpa", f"{gpa:#x} is negative")
        memory = self.current_vm().addrspace.memory
        if not memory.contains(gpa, size):
            ram = ", ".join(f"{r.gpa:#x}-{int(r.gpa) + r.size - 1:#x}" for r in memory.regions) or "none"
            raise BadRequest("gpa", f"{gpa:#x}+{size:#x} is not all guest RAM (RAM: {ram})")
        return memory

    def on_vcpu(self, action: str, vcpu: int, function: Callable[[AxVM, int], T]) -> T:
        """Run ``function(vm, vcpu)`` on the parked thread of ``vcpu`` (or here, when that vCPU
        has no thread: it never ran)."""
        with self.operation(action):
            vm = self.current_vm()
            if not 0 <= vcpu < len(vm.vcpus):
                raise BadRequest("vcpu", f"{vcpu}: this VM has vCPUs 0..{len(vm.vcpus) - 1}")
            return self._on_vcpu_locked(vm, vcpu, function)

    def _on_vcpu_locked(self, vm: AxVM, vcpu: int, function: Callable[[AxVM, int], T]) -> T:
        supervisor = self.supervisor
        running = supervisor.running if supervisor is not None else None
        thread = running.vcpu_threads.get(vcpu) if running is not None else None
        if thread is None or not thread.is_alive():
            return function(vm, vcpu)
        return self.gate.call(vcpu, lambda: function(vm, vcpu))

    def snapshot(self, timeout: float, stop: bool, write: Callable[[AxVM, list[dict[str, Any]]], object]) -> None:
        """Pause a Running VM (a Ready one never ran), read every vCPU's state on its own parked
        thread, ``write(vm, states)`` with the VM still paused, then resume it, or stop it."""
        if self.state is VMState.RUNNING:
            self.pause(timeout)
            resume = True
        else:
            resume = False
        try:
            with self.operation("snapshot"):
                vm = self.current_vm()
                states = [self._on_vcpu_locked(vm, index, snapshot_vcpu_state) for index in range(len(vm.vcpus))]
                write(vm, states)
        finally:
            if stop:
                self.stop()
            elif resume:
                self.resume()

    def registers(self, vcpu: int) -> dict[str, int]:
        arch = self.config.base.arch.value
        return self.on_vcpu("read registers", vcpu, lambda vm, n: guest_inspect.read_registers(vm.vcpus[n], arch))

    def translate(self, vcpu: int, gva: int) -> Translation:
        arch = self.config.base.arch.value
        return self.on_vcpu(
            "translate an address",
            vcpu,
            lambda vm, n: guest_inspect.translate(vm.vcpus[n], vm.addrspace.memory, arch, gva),
        )

    # -- reports -------------------------------------------------------------------------------

    def uptime_s(self) -> float:
        if self.state not in (VMState.RUNNING, VMState.PAUSING, VMState.PAUSED):
            return 0.0
        return (time.monotonic_ns() - self._started_ns) / 1e9

    def paused_s(self) -> float:
        since = self._paused_since_ns
        total = self._paused_total_ns + (time.monotonic_ns() - since if since is not None else 0)
        return total / 1e9

    def info(self) -> VmInfo:
        config = self.config
        outcome = self.outcome
        return VmInfo(
            id=self.id,
            name=self.name,
            state=self.state,
            arch=config.base.arch.value,
            backend=self.backend_name,
            cpus=config.base.cpu_num,
            memory_bytes=sum(region.size for region in config.kernel.memory_regions),
            config_path=self.config_path,
            uptime_s=self.uptime_s(),
            resets=self.supervisor.resets if self.supervisor is not None else 0,
            exit_code=outcome.exit_code if outcome is not None else None,
            reason=outcome.reason if outcome is not None else None,
            log_path=str(self.hub.log_path) if self.hub.log_path is not None else None,
        )

    def metrics(self) -> VmMetrics:
        supervisor = self.supervisor
        vm = self.vm if supervisor is None else supervisor.vm
        running = supervisor.running if supervisor is not None else None
        cpu = running.thread_cpu_seconds() if running is not None and running.vm is vm else {}
        vcpus = (
            tuple(VcpuMetrics(index, _exit_counts(vm, index), cpu.get(index, 0.0)) for index in range(len(vm.vcpus)))
            if vm is not None
            else ()
        )
        first_entry = running.first_entry_ns if running is not None and running.vm is vm else None
        return VmMetrics(
            id=self.id,
            name=self.name,
            state=self.state,
            uptime_s=self.uptime_s(),
            paused_s=self.paused_s(),
            boot=self._boot_times(first_entry),
            vcpus=vcpus,
            devices=device_counters(vm.buses, self.hub.tx_bytes, self.hub.rx_bytes)
            if vm is not None
            else DeviceCounters(0, 0, 0, 0, 0, 0, 0),
            host_cpu_s=sum(cpu.values()),
            resets=supervisor.resets if supervisor is not None else 0,
        )

    def _boot_times(self, first_entry_ns: int | None) -> BootTimes:
        boot, first_byte = self.hub.boot_ns, self.hub.first_byte_ns
        if not self._started_ns:
            return BootTimes(None, None, None, None)

        def since(origin: int, event: int | None) -> float | None:
            return (event - origin) / 1e9 if event is not None and event >= origin else None

        return BootTimes(
            since(boot, first_entry_ns), since(boot, first_byte),
            since(PROCESS_START_NS, first_entry_ns), since(PROCESS_START_NS, first_byte),
        )  # fmt: skip

    def console_target(self) -> ConsoleTarget:
        return vm_console_target(self.current_vm)

    def accepts_input(self) -> bool:
        return self.state in (VMState.RUNNING, VMState.PAUSING, VMState.PAUSED) and not self._deleted


def _exit_counts(vm: AxVM, vcpu: int) -> dict[str, int]:
    """A copy of one vCPU's exit counts by exit name, taken while its thread may add a kind."""
    counts = vm.exit_counts[vcpu] if vcpu < len(vm.exit_counts) else {}
    for _ in range(3):
        try:
            return {kind.__name__: count for kind, count in list(counts.items())}
        except RuntimeError:  # a new kind was added during the copy
            continue
    return {}


def log_file_name(vm_id: int, name: str, log_dir: Path) -> Path:
    """``<log_dir>/<name>-<id>.log`` with the name made file-safe."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "vm"
    return log_dir / f"{stem}-{vm_id}.log"
