"""The arm virt machine's CPU power states, driven by the guest's PSCI calls.

``psci.handle_call`` decides; this keeps what it decides about: which vCPUs are on, off, or
starting, and what a started vCPU enters with. The boot vCPU starts on, the others off, as
a PSCI firmware leaves them (DEN0022D 6.4: a secondary waits for CPU_ON). A call's outcome is
returned to the machine as data; the machine touches the vCPUs and the VM.

CPU_ON moves the target to ON_PENDING and hands its entry (pc, x0 = context id) to the target
itself: the target's own thread takes it (``take_start``), sets its registers and only then is
ON, so no thread ever writes another vCPU's registers. CPU_OFF makes the caller OFF; an OFF vCPU
does not run until a CPU_ON names it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from . import psci
from .layout import mpidr_affinity


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What an OFF vCPU enters with once CPU_ON names it (DEN0022D 6.4.3: pc = entry,
    x0 = context id, MMU and caches off, at the caller's exception level)."""

    entry: int
    context_id: int


class CpuPower:
    """Power state of each vCPU of one VM, safe to call from every vCPU thread."""

    def __init__(self, num_cpus: int, boot_cpu: int = 0) -> None:
        self._states = [psci.AffinityState.ON if cpu == boot_cpu else psci.AffinityState.OFF for cpu in range(num_cpus)]
        self._starts: dict[int, StartRequest] = {}
        self._lock = threading.Lock()

    def state(self, cpu: int) -> psci.AffinityState:
        return self._states[cpu]

    def is_on(self, cpu: int) -> bool:
        return self._states[cpu] is psci.AffinityState.ON

    def call(
        self, caller: int, function_id: int, x1: int, x2: int, x3: int, entry_ok: Callable[[int], bool] | None = None
    ) -> psci.PsciResult:
        """Answer one PSCI call from vCPU ``caller`` and record what it changes."""
        with self._lock:
            cpus = [psci.PsciCpu(mpidr_affinity(cpu), state) for cpu, state in enumerate(self._states)]
            result = psci.handle_call(function_id, x1, x2, x3, cpus, entry_ok)
            match result.action:
                case psci.CpuOn(target=target, entry=entry, context_id=context_id):
                    self._states[target] = psci.AffinityState.ON_PENDING
                    self._starts[target] = StartRequest(entry, context_id)
                case psci.CpuOff():
                    self._states[caller] = psci.AffinityState.OFF
                case _:
                    pass
            return result

    def take_start(self, cpu: int) -> StartRequest | None:
        """The entry a pending CPU_ON left for ``cpu`` (now ON), or None if there is none."""
        with self._lock:
            start = self._starts.pop(cpu, None)
            if start is not None:
                self._states[cpu] = psci.AffinityState.ON
            return start
