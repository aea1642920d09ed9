"""The ARM generic timer of one soft vCPU: the virtual and the EL1 physical timer.

Theory of operation (Arm ARM DDI 0487, D11 "The Generic Timer"; the registers in D17.8). Each
timer has a 64-bit compare value (CVAL; TVAL is a 32-bit signed view, CVAL - count) and a
control register: ENABLE (bit 0), IMASK (bit 1) and the read-only ISTATUS (bit 2), set while
enabled and count >= CVAL. The timer's output, a level to the interrupt controller (PPI 27 for
the virtual timer, PPI 30 for the non-secure physical one on QEMU's virt board), is
ISTATUS and not IMASK.

How unicorn 2.1.4 splits the work (qemu/target/arm/helper.c, its QEMU timers compiled out):
the counters and CVAL/TVAL work natively (the count is the host's CLOCK_MONOTONIC in 16 ns
ticks, 62.5 MHz, the virtual count that less CNTVOFF_EL2), but guest writes to CNTV_CTL and
CNTP_CTL are dropped and ISTATUS is never computed. So the vCPU traps MSR to the two control
registers (``GenericTimers.write_ctl``), keeps ENABLE and IMASK here, and writes the control
register's full value (ISTATUS included) into the engine, where the guest's MRS reads it.
ISTATUS is brought up to date at every slice boundary, at every control write and before an
IRQ is entered, so a guest polling ISTATUS inside one slice sees it change only at the next.

The virtual count follows the backend's pause-able clock (CNTVOFF_EL2 is set to the clock's
origin); the physical count is the host's and keeps running while the VM is paused (unicorn
has no physical offset): Linux at EL1 uses the virtual timer, U-Boot only reads CNTPCT.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = [
    "CNTFRQ_HZ",
    "CTL_ENABLE",
    "CTL_IMASK",
    "CTL_ISTATUS",
    "NS_PER_TICK",
    "PPI_PHYS",
    "PPI_VIRT",
    "TIMER_PPIS",
    "GenericTimers",
    "GuestCounter",
    "TimerSink",
]

CNTFRQ_HZ = 62_500_000
"""The counter frequency unicorn runs at (and QEMU's virt board advertises)."""
NS_PER_TICK = 1_000_000_000 // CNTFRQ_HZ  # 16

CTL_ENABLE = 1
CTL_IMASK = 2
CTL_ISTATUS = 4

VIRT = 0
PHYS = 1
PPI_VIRT = 27
PPI_PHYS = 30
TIMER_PPIS = (PPI_VIRT, PPI_PHYS)
"""The PPI each timer drives, indexed by timer (VIRT, PHYS)."""

_U64 = (1 << 64) - 1

TimerSink = Callable[[int, int, bool], None]
"""Told ``(vcpu_id, ppi, level)`` whenever a timer output changes, on the vCPU's thread."""


def fires(ctl: int, cval: int, count: int) -> bool:
    """ISTATUS: the timer is enabled and the count has reached the compare value."""
    return bool(ctl & CTL_ENABLE) and count >= cval


class GenericTimers:
    """ENABLE/IMASK of the two timers of one vCPU and the levels last sent to the sink."""

    def __init__(self, vcpu_id: int) -> None:
        self.vcpu_id = vcpu_id
        self.ctl = [0, 0]
        self.levels = [False, False]
        self.sink: TimerSink | None = None
        self.resend = False
        """Tell the sink both levels at the next ``update``, changed or not (after a restore the
        interrupt controller's saved view of them may differ from the vCPU's)."""
        self._lock = threading.Lock()

    def write_ctl(self, timer: int, value: int) -> None:
        """The guest wrote CNTx_CTL: keep its writable bits (ISTATUS is read-only)."""
        self.ctl[timer] = value & (CTL_ENABLE | CTL_IMASK)

    def ctl_value(self, timer: int, cval: int, count: int) -> int:
        """What the guest reads from CNTx_CTL now."""
        ctl = self.ctl[timer]
        return ctl | (CTL_ISTATUS if fires(ctl, cval, count) else 0)

    def update(self, cvals: tuple[int, int], counts: tuple[int, int]) -> None:
        """Recompute both outputs; tell the sink of each change (of both after ``resend``)."""
        resend, self.resend = self.resend, False
        for timer in (VIRT, PHYS):
            ctl = self.ctl[timer]
            level = fires(ctl, cvals[timer], counts[timer]) and not ctl & CTL_IMASK
            with self._lock:
                changed = resend or level != self.levels[timer]
                self.levels[timer] = level
            sink = self.sink
            if changed and sink is not None:
                sink(self.vcpu_id, TIMER_PPIS[timer], level)

    def deadlines(self, cvals: tuple[int, int]) -> list[tuple[int, int]]:
        """``(timer, cval)`` of each timer whose output is low now and will rise at ``cval``."""
        out = []
        for timer in (VIRT, PHYS):
            ctl = self.ctl[timer]
            if ctl & CTL_ENABLE and not ctl & CTL_IMASK and not self.levels[timer]:
                out.append((timer, cvals[timer] & _U64))
        return out


class GuestCounter:
    """The VM's counter: 62.5 MHz ticks of the host's monotonic clock, stopped while paused.

    The virtual count is ``(now - origin) / 16 ns``; with the origin a multiple of 16 ns the
    engine's own CNTVCT (``now / 16 ns - CNTVOFF_EL2``) equals it exactly when CNTVOFF_EL2 is
    ``cntvoff()``. ``generation`` changes when the origin moves (a resume), so each vCPU knows
    to write its engine's CNTVOFF_EL2 again.
    """

    def __init__(self) -> None:
        now = time.monotonic_ns()
        self._origin_ns = now - now % NS_PER_TICK
        self._paused_ns: int | None = None
        self.generation = 0

    def virtual(self) -> int:
        paused = self._paused_ns
        return ((time.monotonic_ns() if paused is None else paused) - self._origin_ns) // NS_PER_TICK

    @staticmethod
    def physical() -> int:
        return time.monotonic_ns() // NS_PER_TICK

    def cntvoff(self) -> int:
        return self._origin_ns // NS_PER_TICK

    def pause(self) -> None:
        if self._paused_ns is None:
            self._paused_ns = time.monotonic_ns()

    def resume(self) -> None:
        """Count on from where the clock stopped (the pause, rounded down to whole ticks, is
        added to the origin: the count never goes back)."""
        paused = self._paused_ns
        if paused is not None:
            gap = time.monotonic_ns() - paused
            self._origin_ns += gap - gap % NS_PER_TICK
            self._paused_ns = None
            self.generation += 1

    def restore(self, ticks: int) -> None:
        """Make the virtual count read ``ticks`` now and count on from there (a snapshot
        restored), paused or not; every vCPU writes its CNTVOFF_EL2 again."""
        now = self._paused_ns if self._paused_ns is not None else time.monotonic_ns()
        origin = now - ticks * NS_PER_TICK
        self._origin_ns = origin - origin % NS_PER_TICK
        self.generation += 1

    def deadline(self, timer: int, cval: int) -> float:
        """The time.monotonic() value at which ``timer``'s count reaches ``cval``."""
        ticks_ns = min(cval, 1 << 62) * NS_PER_TICK
        return (ticks_ns + (self._origin_ns if timer == VIRT else 0)) / 1e9 + 1e-6
