"""The VMM: builds VMs from configs, runs each vCPU on its own thread, reports how they ended.

Policy lives here, not in axvm: what to do when a vCPU halts, when the guest powers off, when
the backend fails. A VM that fails or powers off never stops another VM.

However a VM ends (the guest powers off or resets, a vCPU fails, the VMM stops it), it ends
the same way, in ``RunningVm.wait``: every vCPU is kicked out of the guest and its thread
joined, then the writable disks are flushed, and only then are the engines, host resources
and guest memory released (``AxVM.stop``). Releasing an engine while a thread still runs in
it crashes the process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from axvcpu import CpuUp, FailEntry, Halt, Nothing, SystemDown, Unsupported
from axvm import AxVM, AxVMCrateConfig, VmBackend
from axvm.host import HostDisk, HostResources

from . import startup_trace
from .loaders import load_guest
from .net import NetHost

if TYPE_CHECKING:
    from .pause import PauseGate

log = logging.getLogger(__name__)

HALT_WAIT_SECONDS = 0.5
"""The longest a halted vCPU waits before running the guest again. The wait ends at once on an
interrupt, a timer deadline or a kick (pause, stop and reset kick every vCPU), so this only
bounds a wake-up nobody signalled. Each timeout resumes the guest after its wfi/hlt, which idle
Linux answers with a pass through its idle loop (timer reprogramming included): at 0.01 s an
idle 4-hart riscv VM kept a host core busy."""

STATUS_MAX = 255
"""Process exit statuses are 8 bits: a guest code that does not fit becomes this."""


def exit_status(code: int) -> int:
    """The process exit status for a VM's exit code: 0-255 as they are, anything else 255.

    Truncating to 8 bits, as exit() would, turns a guest failure such as sifive_test FAIL with
    code 256 into 0, success; a failure must never read as success.
    """
    return code if 0 <= code <= STATUS_MAX else STATUS_MAX


@dataclass(frozen=True)
class VmOutcome:
    """How one VM ended: the exit status the VMM reports for it and a one-line reason."""

    name: str
    exit_code: int
    reason: str
    reset: bool = False
    failed: bool = False
    """The VM failed (a vCPU, the backend, a disk flush, a rebuild), as opposed to powering off."""


class VmmHost(NetHost):
    """axvisor's host resources for one VM (NetHost's), remembering the writable disks it
    opens so the VMM can flush them once the vCPUs are joined, before the VM closes them."""

    def __init__(self) -> None:
        super().__init__()
        self.disks: list[tuple[Path, HostDisk]] = []

    def open_disk(self, path: Path, read_only: bool) -> HostDisk:
        disk = super().open_disk(path, read_only)
        if not read_only:
            self.disks.append((path, disk))
        return disk

    def flush_disks(self) -> str | None:
        """fsync every writable disk; the first failure as a one-line reason, else None."""
        problem = None
        for path, disk in self.disks:
            try:
                disk.flush()
            except OSError as error:  # the guest's writes may be lost: the VM must not end with 0
                log.error("disk %s: flushing it failed: %s", path, error.strerror or error)
                problem = problem or f"disk {path}: flushing it failed: {error.strerror or error}"
        return problem


class RunningVm:
    """One VM and its vCPU threads; with a ``gate``, they park there while it is held (a pause)."""

    def __init__(self, vm: AxVM, gate: PauseGate | None = None) -> None:
        self.vm = vm
        self.gate = gate
        self.threads: list[threading.Thread] = []
        self.vcpu_threads: dict[int, threading.Thread] = {}
        self.first_entry_ns: int | None = None
        """time.monotonic_ns() when a vCPU thread first went to enter the guest (the boot timer)."""
        self.booted = False
        """Every boot vCPU has its thread (or the boot failed): what a pause waits for."""
        self.cpu_seconds: dict[int, float] = {}
        """Host CPU time of each vCPU thread that has ended (live ones: ``thread_cpu_seconds``)."""
        self._failure: str | None = None
        self._stopped: VmOutcome | None = None
        self._started: set[int] = set()
        self._lock = threading.Lock()

    def start_vcpu(self, vcpu_id: int) -> None:
        with self._lock:
            if vcpu_id in self._started:
                return
            self._started.add(vcpu_id)
        thread = threading.Thread(target=self._vcpu_main, args=(vcpu_id,), daemon=True,
                                  name=f"{self.vm.name}-vcpu{vcpu_id}")
        self.threads.append(thread)
        self.vcpu_threads[vcpu_id] = thread
        thread.start()

    def thread_cpu_seconds(self) -> dict[int, float]:
        """Host CPU time per vCPU thread so far, ended threads included."""
        seconds = dict(self.cpu_seconds)
        for vcpu_id, thread in list(self.vcpu_threads.items()):
            ident = thread.ident
            if vcpu_id in seconds or ident is None or not thread.is_alive():
                continue
            try:
                seconds[vcpu_id] = time.clock_gettime(time.pthread_getcpuclockid(ident))
            except (OSError, ProcessLookupError):  # it ended meanwhile: it recorded its own time
                seconds[vcpu_id] = self.cpu_seconds.get(vcpu_id, 0.0)
        return seconds

    def _wake_gate(self) -> None:
        if self.gate is not None:
            self.gate.wake()

    def fail(self, reason: str) -> None:
        """End this VM with status 1 and ``reason`` (the first failure is the one reported)."""
        if self._failure is None:
            self._failure = reason
        self.vm.shutdown(1)
        self._wake_gate()

    def stop(self, exit_code: int, reason: str) -> None:
        """End this VM from outside the guest (a signal, Ctrl-A x) with this outcome."""
        if self._stopped is None:
            self._stopped = VmOutcome(self.vm.name, exit_code, reason)
        self.vm.shutdown(exit_code)
        self._wake_gate()

    def _vcpu_main(self, vcpu_id: int) -> None:
        host_cpus = self.vm.vcpus[vcpu_id].phys_cpu_set
        if host_cpus:
            try:
                os.sched_setaffinity(0, host_cpus)  # pid 0: this thread only
            except OSError as error:
                log.warning("VM %s vCPU %d: cannot pin to host CPUs %s: %s", self.vm.name, vcpu_id,
                            list(host_cpus), error.strerror)
        try:
            self._vcpu_loop(vcpu_id)
        except Exception as error:  # a backend failure ends this VM, never the VMM
            log.exception("VM %s vCPU %d failed", self.vm.name, vcpu_id)
            self.fail(f"vCPU {vcpu_id}: {type(error).__name__}: {error}")
        finally:
            self.cpu_seconds[vcpu_id] = time.thread_time()

    def _vcpu_loop(self, vcpu_id: int) -> None:
        vm, gate = self.vm, self.gate
        traced = self.first_entry_ns is None  # the VM's first entry: AXVISOR_TRACE_STARTUP's marks
        if traced:
            self.first_entry_ns = time.monotonic_ns()
            startup_trace.mark("first_entry", self.first_entry_ns)
        while True:
            if gate is not None and gate.held:
                gate.park(vcpu_id, lambda: vm.exit_request is not None)
            exit_reason = vm.run_vcpu(vcpu_id)
            if traced:
                traced = False
                startup_trace.mark("first_exit", time.monotonic_ns())
            match exit_reason:
                case SystemDown(exit_code=code, reset=reset):
                    vm.reset() if reset else vm.shutdown(code)
                    return
                case Halt():
                    vm.vcpus[vcpu_id].wait_for_interrupt(HALT_WAIT_SECONDS)
                case CpuUp(target_cpu=target):
                    self._start_secondary(target)
                case Nothing():  # a pause asked this vCPU out of the guest: it parks at the gate above
                    pass
                case FailEntry(hardware_entry_failure_reason=code, detail=detail):
                    self.fail(f"vCPU {vcpu_id} could not run the guest: {detail or hex(code)}")
                    return
                case Unsupported(code=code, detail=detail):
                    self.fail(f"vCPU {vcpu_id}: unhandled exit {code:#x} {detail}".rstrip())
                    return
                case _:
                    self.fail(f"vCPU {vcpu_id}: unhandled exit {exit_reason}")
                    return

    def _start_secondary(self, vcpu_id: int) -> None:
        """A backend reporting CpuUp has set the secondary's registers; it only needs a thread."""
        if not 0 <= vcpu_id < len(self.vm.vcpus) or vcpu_id in self._started:
            log.warning("VM %s: ignoring start of vCPU %d", self.vm.name, vcpu_id)
            return
        self.start_vcpu(vcpu_id)

    def wait(self) -> VmOutcome:
        """Join every vCPU thread (secondaries may start while waiting), flush the disks, then
        release the VM. Call it after something asked the VM to stop, or the guest may run on."""
        while alive := [thread for thread in self.threads if thread.is_alive()]:
            alive[0].join()
        host = self.vm.host
        if isinstance(host, VmmHost) and (problem := host.flush_disks()) is not None and self._failure is None:
            self._failure = problem
        request = self.vm.exit_request
        if self._failure is not None:
            outcome = VmOutcome(self.vm.name, 1, self._failure, failed=True)
        elif self._stopped is not None:
            outcome = self._stopped
        elif request is not None and request.reset:
            outcome = VmOutcome(self.vm.name, 0, "the guest asked for a reset", reset=True)
        elif request is not None:
            outcome = VmOutcome(self.vm.name, request.exit_code, f"powered off with status {request.exit_code}")
        else:
            outcome = VmOutcome(self.vm.name, 1, "stopped without a power-off")
        report_device_errors(self.vm)
        self.vm.stop()
        return outcome


DEVICE_ERRORS = "device errors:"
"""Starts the line logged when a VM's devices raised on guest accesses (the tests look for it)."""


def report_device_errors(vm: AxVM) -> int:
    """Log one line naming each device that raised on a guest access (its bus answered as for no
    device, so the guest went on); return how many accesses failed. Such a failure is a device bug."""
    errors = vm.buses.device_errors()
    total = sum(errors.values())
    if total:
        per_device = "; ".join(f"{name}: {count}" for name, count in errors.items())
        log.error("VM %s: %s %d guest accesses failed inside devices (%s)", vm.name, DEVICE_ERRORS, total, per_device)
    return total


def build_vm(config: AxVMCrateConfig, backend: VmBackend,
             console_output: Callable[[bytes], object] | None = None,
             host: HostResources | None = None) -> AxVM:
    """The recipe for one VM: compose it (with axvisor's host resources: disks, entropy, TAP and
    UDP networking), load its images, mark it loaded."""
    vm = AxVM(config, backend, console_output, host or VmmHost())
    try:
        vm.boot_plan = load_guest(config, vm.addrspace.memory)
    except BaseException:
        vm.stop()
        raise
    vm.mark_loaded()
    return vm


class VmSupervisor:
    """Runs one VM until it ends for good: a guest reset rebuilds it from its config and boots
    it again (a fresh VM, as a power cycle), anything else is its outcome.

    ``stop`` ends it from outside; ``on_end`` is called on the supervisor's thread once the VM
    has ended and been released (the VMM's main loop uses it to wake up).
    """

    def __init__(self, vm: AxVM, rebuild: Callable[[AxVMCrateConfig], AxVM] | None = None,
                 boot_vcpus: Callable[[AxVM], list[int]] | None = None,
                 on_end: Callable[[VmSupervisor], object] | None = None,
                 gate: PauseGate | None = None) -> None:
        """``gate``: where the vCPU threads of every run park while it is held (VmManager's pause)."""
        self.vm = vm
        self.gate = gate
        self.outcome: VmOutcome | None = None
        self.resets = 0
        self._rebuild = rebuild
        self._boot_vcpus = boot_vcpus
        self._on_end = on_end
        self._lock = threading.Lock()
        self._stop: tuple[int, str] | None = None
        self._running: RunningVm | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name=f"{vm.name}-supervisor")

    def start(self) -> None:
        self._thread.start()

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def running(self) -> RunningVm | None:
        """The run in progress (or the last one): its vCPU threads, boot timer and CPU times."""
        return self._running

    def stop(self, exit_code: int, reason: str) -> None:
        """Stop the VM with this outcome (the first stop wins; a VM already ended keeps its own).

        It only asks (its vCPUs are kicked out of the guest); ``join`` waits for the end. A VM
        that has not booted yet, or is being rebuilt after a reset, does not boot again.
        """
        with self._lock:
            if self._stop is None:
                self._stop = (exit_code, reason)
            running, stop = self._running, self._stop
        if running is not None:
            running.stop(*stop)

    def join(self) -> VmOutcome:
        """Wait until the VM has ended and been released. A supervisor never started runs here,
        on the caller's thread (after ``stop`` it releases the VM without booting it)."""
        if self._thread.ident is None:
            self._main()
        else:
            self._thread.join()
        assert self.outcome is not None
        return self.outcome

    def _main(self) -> None:
        try:
            self.outcome = self._run()
        except Exception as error:  # a bug in the VMM ends this VM, released, never the others
            log.exception("VM %s: the supervisor failed", self.vm.name)
            self.outcome = VmOutcome(self.vm.name, 1, f"VMM error: {type(error).__name__}: {error}", failed=True)
        if self._on_end is not None:
            try:
                self._on_end(self)
            except Exception:
                log.exception("VM %s: reporting its end failed", self.vm.name)

    def _run(self) -> VmOutcome:
        while True:
            outcome = self._run_once(self.vm)
            if outcome.reset and self._stop is not None:  # stopped while resetting: no rebuild
                return VmOutcome(self.vm.name, *self._stop)
            if not (outcome.reset and self._rebuild is not None):
                return outcome
            try:
                vm = self._rebuild(self.vm.config)
            except Exception as error:  # a config or image that went away: this VM ends, others go on
                return VmOutcome(self.vm.name, 1, f"could not restart after a reset: {error}", failed=True)
            with self._lock:
                self.vm = vm
            self.resets += 1

    def _run_once(self, vm: AxVM) -> VmOutcome:
        handle = RunningVm(vm, self.gate)
        with self._lock:  # a stop() from now on reaches this run; one before it is applied here
            self._running, stop = handle, self._stop
        if stop is not None:
            handle.stop(*stop)
            return handle.wait()
        try:
            vm.boot()
            for vcpu_id in (self._boot_vcpus(vm) if self._boot_vcpus else range(len(vm.vcpus))):
                handle.start_vcpu(vcpu_id)
        except Exception as error:
            handle.fail(f"boot: {error}")
        handle.booted = True
        return handle.wait()


def run_vms(vms: list[AxVM], boot_vcpus: Callable[[AxVM], list[int]] | None = None,
            rebuild: Callable[[AxVMCrateConfig], AxVM] | None = None) -> list[VmOutcome]:
    """Boot every VM, run until all have ended, and return how each ended.

    Every vCPU gets its thread at once (``boot_vcpus`` narrows that): x86 application processors
    then wait inside KVM for their startup IPI and riscv harts park in firmware, as on hardware.
    With ``rebuild``, a VM the guest resets is built again from its config and rebooted.
    """
    supervisors = start_vms(vms, boot_vcpus, rebuild)
    return [supervisor.join() for supervisor in supervisors]


def start_vms(vms: list[AxVM], boot_vcpus: Callable[[AxVM], list[int]] | None = None,
              rebuild: Callable[[AxVMCrateConfig], AxVM] | None = None,
              on_end: Callable[[VmSupervisor], object] | None = None) -> list[VmSupervisor]:
    """Like run_vms, but returns the running supervisors (``supervisor.vm`` follows resets)."""
    supervisors = [VmSupervisor(vm, rebuild, boot_vcpus, on_end) for vm in vms]
    for supervisor in supervisors:
        supervisor.start()
    return supervisors


def summarise(outcomes: list[VmOutcome]) -> int:
    """The VMM's exit status: the first non-zero VM exit code as an ``exit_status``, else 0."""
    return next((exit_status(outcome.exit_code) for outcome in outcomes if outcome.exit_code), 0)
