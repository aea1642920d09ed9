"""The VM lifecycle as one table of legal transitions, with AxVisor's state names.

One table serves both holders of a VM state: an ``AxVM`` (one build of a VM, which ends for
good in Stopped) and the VMM's managed VM (``axvisor.manager``), which outlives its builds:
it is loaded again from its config after Stopped or Failed, and is Failed when a vCPU or its
backend failed.

    Loading --> Ready --> Running --> Pausing --> Paused --> Running
       |          |         |  \\_________________/^   |
       |          |         +--> Failed             |
       +----------+---------+-----------+-----------+--> Stopping --> Stopped
       +---------------------------------------------------------------> Stopped  (a failed load)
    Stopped, Failed --> Loading   (the manager builds the VM afresh; an AxVM never does)

``LOADED`` and ``SUSPENDED`` are the earlier names of ``READY`` and ``PAUSED`` (aliases).
"""

from __future__ import annotations

import enum

from axvcpu.lifecycle import IllegalTransition, Lifecycle


class VMState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    """Built and its images loaded; not started."""
    RUNNING = "running"
    PAUSING = "pausing"
    """A pause was asked for: the vCPUs are leaving the guest."""
    PAUSED = "paused"
    """Every vCPU parked outside the guest, the guest clock stopped."""
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    """A vCPU, the backend or a rebuild failed; its resources are released."""
    LOADED = "ready"  # alias of READY
    SUSPENDED = "paused"  # alias of PAUSED


VM_TRANSITIONS: dict[VMState, frozenset[VMState]] = {
    VMState.LOADING: frozenset({VMState.READY, VMState.STOPPING, VMState.STOPPED, VMState.FAILED}),
    VMState.READY: frozenset({VMState.RUNNING, VMState.STOPPING, VMState.FAILED}),
    VMState.RUNNING: frozenset({VMState.PAUSING, VMState.PAUSED, VMState.STOPPING, VMState.FAILED}),
    VMState.PAUSING: frozenset({VMState.PAUSED, VMState.RUNNING, VMState.STOPPING, VMState.FAILED}),
    VMState.PAUSED: frozenset({VMState.RUNNING, VMState.STOPPING, VMState.FAILED}),
    VMState.STOPPING: frozenset({VMState.STOPPED, VMState.FAILED}),
    VMState.STOPPED: frozenset({VMState.LOADING}),
    VMState.FAILED: frozenset({VMState.LOADING}),
}


class IllegalVMTransition(IllegalTransition):
    def __init__(self, vm_name: str, current: VMState, wanted: VMState) -> None:
        super().__init__(f"VM {vm_name!r}", current, wanted)
        self.current = current
        self.wanted = wanted


VM_LIFECYCLE: Lifecycle[str, VMState] = Lifecycle(VM_TRANSITIONS, IllegalVMTransition)
"""The table checked by the helper the vCPU lifecycle uses too (``axvcpu.lifecycle``)."""


def check_vm_transition(vm_name: str, current: VMState, wanted: VMState) -> None:
    """Raise ``IllegalVMTransition`` unless ``current -> wanted`` is in ``VM_TRANSITIONS``."""
    VM_LIFECYCLE.check(vm_name, current, wanted)
