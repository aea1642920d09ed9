"""``VCpu``: an ``ArchVCpu`` wrapped in the lifecycle the rest of the VMM relies on."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from axaddrspace import GuestPhysAddr, Stage2Mapper

from .arch import ArchVCpu
from .debug import Debugger
from .errors import PendingReadError
from .exits import READ_EXITS, AxVCpuExitReason
from .state import VCpuState, check_transition

__all__ = ["PendingReadError", "VCpu"]


class VCpu:
    """A vCPU with an id, an optional set of host CPUs to run on, and enforced states.

    It is the one owner of "a read is pending": ``run()`` after a read exit and before its
    ``complete_read()``, or ``complete_read()`` with no read waiting, raise ``PendingReadError``
    whatever the backend. Code above axvcpu talks to the vCPU through it alone (run, reads,
    registers, interrupts, kick, wait, close), never through ``arch``.
    """

    def __init__(self, vcpu_id: int, arch: ArchVCpu, phys_cpu_set: Sequence[int] | None = None) -> None:
        self.id = vcpu_id
        self.arch = arch
        self.phys_cpu_set = tuple(phys_cpu_set) if phys_cpu_set is not None else None
        self._state = VCpuState.CREATED
        self._read_pending = False
        self._lock = threading.Lock()
        self.debug: Debugger | None = None
        """A debugger attached to this vCPU (``axvcpu.backends.debug.attach_debugger``): run()
        asks it before and after each entry; None (no debugger) costs one attribute test."""

    @property
    def state(self) -> VCpuState:
        return self._state

    def _transition(self, wanted: VCpuState) -> None:
        with self._lock:
            check_transition(self.id, self._state, wanted)
            self._state = wanted

    def setup(self, entry: GuestPhysAddr, stage2: Stage2Mapper | None = None) -> None:
        check_transition(self.id, self._state, VCpuState.FREE)
        self.arch.setup(entry, stage2)
        self._transition(VCpuState.FREE)

    def bind(self) -> None:
        check_transition(self.id, self._state, VCpuState.READY)
        self.arch.bind()
        self._transition(VCpuState.READY)

    def unbind(self) -> None:
        check_transition(self.id, self._state, VCpuState.FREE)
        self.arch.unbind()
        self._transition(VCpuState.FREE)

    def run(self) -> AxVCpuExitReason:
        """Enter the guest once; Ready -> Running -> Ready around the backend's run().

        This is the hot path of every exit, and only the vCPU's own thread runs it, so the state
        is checked and set without the lock the other transitions take.
        """
        if self._read_pending:
            raise PendingReadError(f"vCPU {self.id}: answer the pending read with complete_read() first")
        if self._state is not VCpuState.READY:
            check_transition(self.id, self._state, VCpuState.RUNNING)
        self._state = VCpuState.RUNNING
        debug = self.debug
        try:
            if debug is None:  # no debugger: one attribute load and one test on the hot path
                exit_reason = self.arch.run()
            else:
                held = debug.before_slice()
                exit_reason = debug.after_slice(self.arch.run() if held is None else held)
        finally:
            self._state = VCpuState.READY
        self._read_pending = isinstance(exit_reason, READ_EXITS)
        return exit_reason

    def complete_read(self, value: int) -> None:
        if not self._read_pending:
            raise PendingReadError(f"vCPU {self.id}: no read is waiting for a value")
        self.arch.complete_read(value)
        self._read_pending = False

    def block(self) -> None:
        self._transition(VCpuState.BLOCKED)

    def unblock(self) -> None:
        self._transition(VCpuState.READY)

    def invalidate(self) -> None:
        """Mark the vCPU unusable after a backend failure."""
        if self._state is not VCpuState.INVALID:
            self._transition(VCpuState.INVALID)

    def get_register(self, name: str) -> int:
        return self.arch.get_register(name)

    def set_register(self, name: str, value: int) -> None:
        self.arch.set_register(name, value)

    def inject_interrupt(self, vector: int) -> None:
        self.arch.inject_interrupt(vector)

    def kick(self) -> None:
        """Make a ``run()`` in progress on another thread return soon (any thread)."""
        self.arch.kick()

    def wait_for_interrupt(self, timeout: float) -> bool:
        """After a Halt: block until an interrupt is pending or a kick (True), or ``timeout``
        seconds (False)."""
        return self.arch.wait_for_interrupt(timeout)

    def close(self) -> None:
        """Release the backend's host resources for this vCPU (descriptors, engine)."""
        self.arch.close()

    def __repr__(self) -> str:
        return f"VCpu(id={self.id}, state={self._state.name}, arch={type(self.arch).__name__})"
