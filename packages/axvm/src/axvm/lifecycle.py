"""The VM lifecycle as one table of legal transitions (AxVisor's VM states).

    Loading --> Loaded --> Running <--> Suspended
       |          |           |             |
       +----------+-----------+-------------+--> Stopping --> Stopped
       +------------------------------------------------------> Stopped  (a failed load)
"""

from __future__ import annotations

import enum


class VMState(enum.Enum):
    LOADING = "loading"
    LOADED = "loaded"
    RUNNING = "running"
    SUSPENDED = "suspended"
    STOPPING = "stopping"
    STOPPED = "stopped"


VM_TRANSITIONS: dict[VMState, frozenset[VMState]] = {
    VMState.LOADING: frozenset({VMState.LOADED, VMState.STOPPING, VMState.STOPPED}),
    VMState.LOADED: frozenset({VMState.RUNNING, VMState.STOPPING}),
    VMState.RUNNING: frozenset({VMState.SUSPENDED, VMState.STOPPING}),
    VMState.SUSPENDED: frozenset({VMState.RUNNING, VMState.STOPPING}),
    VMState.STOPPING: frozenset({VMState.STOPPED}),
    VMState.STOPPED: frozenset(),
}


class IllegalVMTransition(RuntimeError):
    def __init__(self, vm_name: str, current: VMState, wanted: VMState) -> None:
        super().__init__(f"VM {vm_name!r}: cannot go from {current.name} to {wanted.name}")
        self.current = current
        self.wanted = wanted


def check_vm_transition(vm_name: str, current: VMState, wanted: VMState) -> None:
    if wanted not in VM_TRANSITIONS[current]:
        raise IllegalVMTransition(vm_name, current, wanted)
