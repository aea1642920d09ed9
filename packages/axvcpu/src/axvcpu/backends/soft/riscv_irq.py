"""Interrupt sources of one hart: MIP lines driven from any thread, the machine timer, waiting.

Theory of operation (privileged spec 3.1.9 "mip and mie", 3.1.6.1 "Privilege and Global
Interrupt-Enable Stack"). Devices drive MIP bits through ``HartLine`` objects: the CLINT drives
MSIP, the PLIC MEIP (context 2h) and SEIP (context 2h+1). They may do so from any thread (the
CLINT on another hart's thread for an IPI, a device on an I/O thread), and unicorn's engine may
only be touched by its own thread, so a line only records its level here under a lock and wakes
a waiting hart. The hart's thread applies the record between slices (``take``):

- S-level bits (SSIP, STIP, SEIP) go into unicorn's MIP, which delivers them itself; only bits
  whose line changed are written, so a bit the guest set or cleared in mip keeps its value
  until the device changes its line again.
- M-level bits (MSIP, MTIP, MEIP) written to unicorn's MIP are dropped by the engine, so they
  live here and the vCPU enters them by hand; MTIP is not a line but ``mtime >= mtimecmp``.

``pulse()`` is for edge sources: an S bit is set in MIP once (the guest clears it, as it does
SSIP); an M bit stays pending until the hart takes that interrupt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

IRQ_SSIP = 1
IRQ_MSIP = 3
IRQ_STIP = 5
IRQ_MTIP = 7
IRQ_SEIP = 9
IRQ_MEIP = 11

MIP_BITS = {IRQ_SSIP, IRQ_MSIP, IRQ_STIP, IRQ_MTIP, IRQ_SEIP, IRQ_MEIP}
M_LEVEL_MASK = (1 << IRQ_MSIP) | (1 << IRQ_MTIP) | (1 << IRQ_MEIP)
S_LEVEL_MASK = (1 << IRQ_SSIP) | (1 << IRQ_STIP) | (1 << IRQ_SEIP)

PRIORITY = (IRQ_MEIP, IRQ_MSIP, IRQ_MTIP, IRQ_SEIP, IRQ_SSIP, IRQ_STIP)
"""Highest first: the privileged spec's order for simultaneous interrupts (3.1.9)."""

MTIMECMP_RESET = (1 << 64) - 1


class SliceSignal(Protocol):
    """How a running slice of the C engine is told to end early, and of a new mtimecmp."""

    def raise_event(self) -> None: ...

    def set_mtimecmp(self, value: int) -> None: ...


def highest(pending: int) -> int | None:
    """The interrupt number to take first among the set bits of ``pending``."""
    for irq in PRIORITY:
        if pending >> irq & 1:
            return irq
    return None


class HartInterrupts:
    """Lines, latched pulses and mtimecmp of one hart; written by anyone, applied by the hart."""

    def __init__(self, mtime: Callable[[], int], mtime_deadline: Callable[[int], float]) -> None:
        self._mtime = mtime
        self._deadline_of = mtime_deadline  # mtime value -> time.monotonic() at which it is reached
        self._cond = threading.Condition(threading.Lock())
        self._levels = 0
        self._changed = 0
        self._pulses = 0
        self._latched_m = 0
        self._mtimecmp = MTIMECMP_RESET
        self._kicked = False
        self.on_own_thread: Callable[[int, bool], bool] | None = None
        """Set by the vCPU: applies an S-bit change at once when called on its own thread."""
        self.signal: SliceSignal | None = None
        """Set by a vCPU on the C engine: a change here ends its running slice."""
        self.on_wake: Callable[[], None] | None = None
        """Set by the backend when harts take turns: ends the running hart's slice, so the hart
        woken here (an IPI) does not wait a whole slice for its turn."""

    def _notify(self) -> None:
        signal, wake = self.signal, self.on_wake
        if signal is not None:
            signal.raise_event()
        if wake is not None:
            wake()

    # -- any thread -------------------------------------------------------------------------

    def set_line(self, irq: int, level: bool) -> None:
        bit = 1 << irq
        hook = self.on_own_thread
        with self._cond:
            if bool(self._levels & bit) == level:
                return
            self._levels = self._levels | bit if level else self._levels & ~bit
            applied = hook is not None and bit & S_LEVEL_MASK and hook(irq, level)
            if not applied:
                self._changed |= bit
                self._notify()
            self._cond.notify_all()

    def pulse_line(self, irq: int) -> None:
        with self._cond:
            self._pulses |= 1 << irq
            self._notify()
            self._cond.notify_all()

    def set_mtimecmp(self, value: int) -> None:
        with self._cond:
            self._mtimecmp = value & MTIMECMP_RESET
            if self.signal is not None:
                self.signal.set_mtimecmp(self._mtimecmp)
            self._cond.notify_all()

    def kick(self) -> None:
        """Make a hart blocked in ``wait`` return now (the VM wants it to look at a request)."""
        with self._cond:
            self._kicked = True
            if self.signal is not None:
                self.signal.raise_event()
            self._cond.notify_all()

    @property
    def mtimecmp(self) -> int:
        return self._mtimecmp

    def latched(self) -> tuple[int, int]:
        """(pulses not yet applied, M-level pulses latched until taken): for a snapshot."""
        with self._cond:
            return self._pulses, self._latched_m

    def restore_latched(self, pulses: int, latched_m: int) -> None:
        """Put back what ``latched`` saved (a snapshot restored)."""
        with self._cond:
            self._pulses, self._latched_m = pulses, latched_m & M_LEVEL_MASK
            self._cond.notify_all()

    # -- the hart's thread ------------------------------------------------------------------------

    def take(self) -> tuple[int, int, int, int]:
        """(S bits to set, S bits to clear) in unicorn's MIP, the M-level bits pending now, and
        the lines that rose since the last ``take`` (an IPI arriving shows as MSIP here)."""
        with self._cond:
            levels, changed, pulses = self._levels, self._changed, self._pulses
            self._changed = 0
            self._pulses = 0
            self._latched_m |= pulses & M_LEVEL_MASK
            m_pending = (levels & M_LEVEL_MASK) | self._latched_m
            mtimecmp = self._mtimecmp
        if mtimecmp != MTIMECMP_RESET and self._mtime() >= mtimecmp:
            m_pending |= 1 << IRQ_MTIP
        rose = (changed & levels) | pulses
        return rose & S_LEVEL_MASK, changed & ~levels & S_LEVEL_MASK, m_pending, rose

    def m_pending(self) -> int:
        """The M-level bits pending now, as the guest's mip shows them; consumes nothing."""
        with self._cond:
            pending = (self._levels | self._pulses) & M_LEVEL_MASK | self._latched_m
            mtimecmp = self._mtimecmp
        if mtimecmp != MTIMECMP_RESET and self._mtime() >= mtimecmp:
            pending |= 1 << IRQ_MTIP
        return pending

    def taken(self, irq: int) -> None:
        """The hart entered interrupt ``irq``: a latched pulse of it is consumed."""
        with self._cond:
            self._latched_m &= ~(1 << irq)

    def wait(self, timeout: float, mie: int, native_mip: int) -> bool:
        """Block until an interrupt enabled in ``mie`` is pending or a kick (True), or until
        ``timeout`` seconds have passed (False, whatever is pending by then: a wake-up that
        came only with the timeout is reported as the timeout).

        ``native_mip`` is what unicorn's MIP held when the hart halted. A line change that
        enables nothing, or a new mtimecmp still in the future, re-arms the wait; the wait for a
        future mtimecmp sleeps until exactly its deadline.
        """
        give_up = time.monotonic() + max(timeout, 0.0)
        waited = False
        with self._cond:
            while True:
                if self._kicked:
                    self._kicked = False
                    return True
                now = time.monotonic()
                if waited and now >= give_up:
                    return False
                pending = native_mip | self._levels | self._pulses | self._latched_m
                timer_armed = mie >> IRQ_MTIP & 1 and self._mtimecmp != MTIMECMP_RESET
                if timer_armed and self._mtime() >= self._mtimecmp:
                    pending |= 1 << IRQ_MTIP
                if pending & mie:
                    return True
                if now >= give_up:
                    return False
                until = give_up
                if timer_armed:
                    until = min(until, self._deadline_of(self._mtimecmp))
                self._cond.wait(max(until - now, 0.0))
                waited = True


class HartLine:
    """One MIP bit of one hart, as an interrupt line (``set_level``/``pulse``)."""

    def __init__(self, irqs: HartInterrupts, irq: int, hart: int) -> None:
        self._irqs = irqs
        self.irq = irq
        self.hart = hart

    def set_level(self, level: bool) -> None:
        self._irqs.set_line(self.irq, bool(level))

    def pulse(self) -> None:
        self._irqs.pulse_line(self.irq)

    def __repr__(self) -> str:
        return f"HartLine(hart={self.hart}, mip_bit={self.irq})"
