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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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

    def saved(self) -> dict[str, Any]:
        """Every vCPU's power state and any CPU_ON entry not yet taken, as plain data (a snapshot)."""
        with self._lock:
            return {
                "states": [state.name for state in self._states],
                "starts": {str(cpu): [start.entry, start.context_id] for cpu, start in self._starts.items()},
            }

    def restore_saved(self, saved: Mapping[str, Any]) -> None:
        """Take back what ``saved`` returned; ValueError naming the field otherwise (a vCPU off
        at the snapshot stays off until a CPU_ON names it)."""
        states, starts = saved.get("states"), saved.get("starts")
        names = {state.name: state for state in psci.AffinityState}
        if not isinstance(states, list) or len(states) != len(self._states) or not all(s in names for s in states):
            raise ValueError(f"power.states must list {len(self._states)} of {', '.join(names)}, not {states!r}")
        parsed: dict[int, StartRequest] = {}
        if not isinstance(starts, Mapping):
            raise ValueError(f"power.starts must be a table, not {starts!r}")
        for key, value in starts.items():
            cpu = int(key) if isinstance(key, str) and key.isdigit() else -1
            ok = isinstance(value, list) and len(value) == 2 and all(type(v) is int and v >= 0 for v in value)
            if not 0 <= cpu < len(self._states) or not ok or names[states[cpu]] is not psci.AffinityState.ON_PENDING:
                raise ValueError(f"power.starts[{key!r}] = {value!r} is not a pending CPU_ON of a vCPU")
            parsed[cpu] = StartRequest(value[0], value[1])
        with self._lock:
            self._states = [names[s] for s in states]
            self._starts = parsed

    def take_start(self, cpu: int) -> StartRequest | None:
        """The entry a pending CPU_ON left for ``cpu`` (now ON), or None if there is none."""
        with self._lock:
            start = self._starts.pop(cpu, None)
            if start is not None:
                self._states[cpu] = psci.AffinityState.ON
            return start
