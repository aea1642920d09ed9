"""Guest debugging on a vCPU: breakpoints, watchpoints, single step, and how a stop is told.

What a debugger (the gdb stub) needs of a backend, and nothing more. A backend that can debug
returns a ``GuestDebug`` from ``ArchVCpu.debugger()``; one that cannot returns None.

Theory of operation. Breakpoints and watchpoints are set while the VM is paused. When the
vCPU reaches one (or finishes a single step), the backend ends its run with ``Nothing`` and
calls the listener with a ``DebugStop`` on the vCPU's own thread; from then on the vCPU stays
stopped (each ``run`` returns ``Nothing`` at once, after a short wait) until ``release``, so
the debugger has time to pause the whole VM. Nothing of this costs anything while no
breakpoint, watchpoint or step is set: the backends hook only the addresses asked for.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .exits import AxVCpuExitReason


class StopReason(enum.Enum):
    BREAKPOINT = "breakpoint"
    STEP = "step"
    WATCHPOINT = "watchpoint"


class WatchKind(enum.IntEnum):
    """The gdb numbering: Z2 write, Z3 read, Z4 access."""

    WRITE = 2
    READ = 3
    ACCESS = 4


@dataclass(frozen=True, slots=True)
class DebugStop:
    """Why a vCPU stopped for the debugger; ``pc`` is where it stands now."""

    reason: StopReason
    pc: int
    watch: tuple[WatchKind, int] | None = None
    """A watchpoint that fired: its kind and the data address accessed."""


DebugListener = Callable[[DebugStop], None]


class GuestDebug(Protocol):
    """One vCPU's debug controls. Addresses are guest virtual (what the PC holds). Every method
    is safe from any thread while the vCPU is not inside a run (the VM is paused)."""

    def set_listener(self, listener: DebugListener | None) -> None:
        """Who hears of stops; None: stops are still held, nobody is told."""

    def insert_breakpoint(self, addr: int, hardware: bool = False) -> bool:
        """Stop before the instruction at ``addr`` executes; False where not supported."""

    def remove_breakpoint(self, addr: int, hardware: bool = False) -> bool:
        """False where no such breakpoint was set."""

    def insert_watchpoint(self, kind: WatchKind, addr: int, length: int) -> bool:
        """Stop after an access to ``[addr, addr + length)``; False where not supported."""

    def remove_watchpoint(self, kind: WatchKind, addr: int, length: int) -> bool: ...

    def set_single_step(self, enabled: bool) -> None:
        """Stop after one instruction at the next run (one-shot: a stop clears it)."""

    @property
    def stopped(self) -> DebugStop | None:
        """The stop being held, if any."""

    def translate(self, va: int) -> int | None:
        """``va`` as the vCPU's MMU maps it now, by the backend's own walk; None where it does
        not map it or the backend cannot say (the caller may walk the page tables itself)."""

    def release(self) -> None:
        """Let the vCPU run again after a stop."""

    def clear(self) -> None:
        """Remove every breakpoint, watchpoint and step and release (a detach)."""


class DebugHold(Protocol):
    """What ``VCpu.run`` asks of an attached debugger around each entry into the guest."""

    def before_slice(self) -> AxVCpuExitReason | None:
        """An exit to return instead of entering the guest (the vCPU is held at a stop)."""

    def after_slice(self, exit_reason: AxVCpuExitReason) -> AxVCpuExitReason:
        """The exit to return for this run (``Nothing`` when it ended at a stop)."""


class Debugger(GuestDebug, DebugHold, Protocol):
    """A backend's debugger: the controls, and the hold ``VCpu.run`` consults."""
