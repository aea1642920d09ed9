"""The IRQ input of one soft aarch64 vCPU: a level any thread sets, and waiting for it.

The GIC's CPU interface drives a vCPU's IRQ input from whatever thread changed it (a device on
an I/O thread, another vCPU sending an SGI, the vCPU's own MMIO write acknowledging one).
Unicorn's engine may be touched only by its own thread, so the input only records its level
here and wakes a waiting vCPU; the vCPU looks at it between slices and enters the IRQ itself
when PSTATE.I allows. ``pulse`` latches one interrupt until the vCPU takes it
(``inject_interrupt``). A WFI wakes on a pending IRQ whatever PSTATE.I says (Arm ARM D1.16.2),
so ``wait`` ignores the mask.
"""

from __future__ import annotations

import threading
import time

__all__ = ["IrqInput"]


class IrqInput:
    """The IRQ level of one vCPU (``set_level`` from any thread) and the vCPU's wait."""

    def __init__(self, vcpu_id: int) -> None:
        self.vcpu_id = vcpu_id
        self._cond = threading.Condition(threading.Lock())
        self._level = False
        self._latched = False
        self._kicked = False

    def set_level(self, level: bool) -> None:
        with self._cond:
            self._level = bool(level)
            if level:
                self._cond.notify_all()

    def pulse(self) -> None:
        with self._cond:
            self._latched = True
            self._cond.notify_all()

    @property
    def level(self) -> bool:
        return self._level

    def pending(self) -> bool:
        return self._level or self._latched

    def taken(self) -> None:
        """The vCPU entered the IRQ: a latched pulse is consumed (a level stays until dropped)."""
        with self._cond:
            self._latched = False

    def saved(self) -> tuple[bool, bool]:
        """(latched pulse, level) for a snapshot."""
        with self._cond:
            return self._latched, self._level

    def restore_pulse(self, pulse: bool) -> None:
        """Take back the latched pulse ``saved`` returned (a snapshot restored). The level is
        not: the GIC's restored state drives it (and only on a change, so a level written here
        could disagree with the GIC for good)."""
        with self._cond:
            self._latched = bool(pulse)
            if pulse:
                self._cond.notify_all()

    def kick(self) -> None:
        with self._cond:
            self._kicked = True
            self._cond.notify_all()

    def wait(self, timeout: float, deadline: float | None) -> bool:
        """Block until an IRQ is pending, a kick, or the monotonic ``deadline`` (a timer output
        rises then): True; or ``timeout`` seconds: False."""
        give_up = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while True:
                if self._kicked:
                    self._kicked = False
                    return True
                if self._level or self._latched:
                    return True
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return True
                if now >= give_up:
                    return False
                until = give_up if deadline is None else min(give_up, deadline)
                self._cond.wait(max(until - now, 0.0))

    def __repr__(self) -> str:
        return f"IrqInput(vcpu={self.vcpu_id}, level={self._level})"
