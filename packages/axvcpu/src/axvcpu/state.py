"""The vCPU lifecycle as one table of legal transitions.

    Created --setup--> Free --bind--> Ready --run--> Running --exit--> Ready
                        ^               |            Ready --block--> Blocked --unblock--> Ready
                        +----unbind-----+
    any state --fail--> Invalid

Every state change goes through ``check_transition`` (the one table helper,
``axvcpu.lifecycle``) so an illegal one raises ``IllegalVCpuTransition`` naming both states,
instead of a backend being driven in a state it cannot handle.
"""

from __future__ import annotations

import enum

from .lifecycle import IllegalTransition, Lifecycle


class VCpuState(enum.Enum):
    INVALID = 0
    CREATED = 1
    FREE = 2
    READY = 3
    RUNNING = 4
    BLOCKED = 5


LEGAL_TRANSITIONS: dict[VCpuState, frozenset[VCpuState]] = {
    VCpuState.CREATED: frozenset({VCpuState.FREE, VCpuState.INVALID}),
    VCpuState.FREE: frozenset({VCpuState.READY, VCpuState.INVALID}),
    VCpuState.READY: frozenset({VCpuState.RUNNING, VCpuState.FREE, VCpuState.BLOCKED, VCpuState.INVALID}),
    VCpuState.RUNNING: frozenset({VCpuState.READY, VCpuState.INVALID}),
    VCpuState.BLOCKED: frozenset({VCpuState.READY, VCpuState.INVALID}),
    VCpuState.INVALID: frozenset(),
}


class IllegalVCpuTransition(IllegalTransition):
    def __init__(self, vcpu_id: int, current: VCpuState, wanted: VCpuState) -> None:
        super().__init__(f"vCPU {vcpu_id}", current, wanted)
        self.current = current
        self.wanted = wanted


VCPU_LIFECYCLE: Lifecycle[int, VCpuState] = Lifecycle(LEGAL_TRANSITIONS, IllegalVCpuTransition)


def check_transition(vcpu_id: int, current: VCpuState, wanted: VCpuState) -> None:
    """Raise ``IllegalVCpuTransition`` unless ``current -> wanted`` is in ``LEGAL_TRANSITIONS``."""
    VCPU_LIFECYCLE.check(vcpu_id, current, wanted)
