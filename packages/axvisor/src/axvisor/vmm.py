"""The VMM: builds VMs from configs, runs each vCPU on its own thread, reports how they ended.

Policy lives here, not in axvm: what to do when a vCPU halts, when the guest powers off, when
the backend fails. A VM that fails or powers off never stops another VM.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from axvcpu import CpuUp, FailEntry, Halt, SystemDown, Unsupported
from axvm import AxVM, AxVMCrateConfig, VmBackend
from axvm.host import HostResources

from .loaders import load_guest
from .net import NetHost

log = logging.getLogger(__name__)

HALT_WAIT_SECONDS = 0.01
"""The longest a halted vCPU waits before looking at the VM's stop request again."""


@dataclass(frozen=True)
class VmOutcome:
    """How one VM ended: the exit status the VMM reports for it and a one-line reason."""

    name: str
    exit_code: int
    reason: str
    reset: bool = False


class RunningVm:
    """One VM and its vCPU threads."""

    def __init__(self, vm: AxVM) -> None:
        self.vm = vm
        self.threads: list[threading.Thread] = []
        self._failure: str | None = None
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
        thread.start()

    def fail(self, reason: str) -> None:
        """End this VM with status 1 and ``reason`` (the first failure is the one reported)."""
        if self._failure is None:
            self._failure = reason
        self.vm.shutdown(1)

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

    def _vcpu_loop(self, vcpu_id: int) -> None:
        vm = self.vm
        while True:
            exit_reason = vm.run_vcpu(vcpu_id)
            match exit_reason:
                case SystemDown(exit_code=code, reset=reset):
                    vm.reset() if reset else vm.shutdown(code)
                    return
                case Halt():
                    vm.vcpus[vcpu_id].arch.wait_for_interrupt(HALT_WAIT_SECONDS)
                case CpuUp(target_cpu=target):
                    self._start_secondary(target)
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
        """Join every vCPU thread (secondaries may start while waiting), then stop the VM."""
        while alive := [thread for thread in self.threads if thread.is_alive()]:
            alive[0].join()
        request = self.vm.exit_request
        if self._failure is not None:
            outcome = VmOutcome(self.vm.name, 1, self._failure)
        elif request is not None and request.reset:
            outcome = VmOutcome(self.vm.name, 0, "the guest asked for a reset", reset=True)
        elif request is not None:
            outcome = VmOutcome(self.vm.name, request.exit_code, f"powered off with status {request.exit_code}")
        else:
            outcome = VmOutcome(self.vm.name, 1, "stopped without a power-off")
        self.vm.stop()
        return outcome


def build_vm(config: AxVMCrateConfig, backend: VmBackend,
             console_output: Callable[[bytes], object] | None = None,
             host: HostResources | None = None) -> AxVM:
    """The recipe for one VM: compose it (with axvisor's host resources: disks, entropy, TAP and
    UDP networking), load its images, mark it loaded."""
    vm = AxVM(config, backend, console_output, host or NetHost())
    try:
        vm.boot_plan = load_guest(config, vm.addrspace.memory)
    except BaseException:
        vm.stop()
        raise
    vm.mark_loaded()
    return vm


class VmSupervisor:
    """Runs one VM until it ends for good: a guest reset rebuilds it from its config and boots
    it again (a fresh VM, as a power cycle), anything else is its outcome."""

    def __init__(self, vm: AxVM, rebuild: Callable[[AxVMCrateConfig], AxVM] | None = None,
                 boot_vcpus: Callable[[AxVM], list[int]] | None = None) -> None:
        self.vm = vm
        self.outcome: VmOutcome | None = None
        self.resets = 0
        self._rebuild = rebuild
        self._boot_vcpus = boot_vcpus
        self._thread = threading.Thread(target=self._main, daemon=True, name=f"{vm.name}-supervisor")

    def start(self) -> None:
        self._thread.start()

    def join(self) -> VmOutcome:
        self._thread.join()
        assert self.outcome is not None
        return self.outcome

    def _main(self) -> None:
        while True:
            outcome = self._run_once(self.vm)
            if not (outcome.reset and self._rebuild is not None):
                self.outcome = outcome
                return
            try:
                self.vm = self._rebuild(self.vm.config)
            except Exception as error:  # a config or image that went away: this VM ends, others go on
                self.outcome = VmOutcome(self.vm.name, 1, f"could not restart after a reset: {error}")
                return
            self.resets += 1

    def _run_once(self, vm: AxVM) -> VmOutcome:
        handle = RunningVm(vm)
        try:
            vm.boot()
            for vcpu_id in (self._boot_vcpus(vm) if self._boot_vcpus else range(len(vm.vcpus))):
                handle.start_vcpu(vcpu_id)
        except Exception as error:
            handle.fail(f"boot: {error}")
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
              rebuild: Callable[[AxVMCrateConfig], AxVM] | None = None) -> list[VmSupervisor]:
    """Like run_vms, but returns the running supervisors (``supervisor.vm`` follows resets)."""
    supervisors = [VmSupervisor(vm, rebuild, boot_vcpus) for vm in vms]
    for supervisor in supervisors:
        supervisor.start()
    return supervisors


def summarise(outcomes: list[VmOutcome]) -> int:
    """The VMM's exit status: the first non-zero VM status, else 0."""
    return next((outcome.exit_code for outcome in outcomes if outcome.exit_code), 0)
