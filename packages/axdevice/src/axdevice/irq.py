"""Interrupt lines: how a device tells an interrupt controller it wants attention.

The Protocol lives here, below the backends; axvm hands each device a line backed by KVM
(an irq line or irqfd) or by the software interrupt controller, and tests hand a recording one.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class IrqLine(Protocol):
    """One interrupt input of an interrupt controller."""

    def set_level(self, level: bool) -> None:
        """Assert (True) or deassert (False) a level-triggered line."""

    def pulse(self) -> None:
        """Signal one edge-triggered interrupt."""


class NullIrqLine:
    """A line wired to nothing, for devices used by polling only."""

    __slots__ = ()

    def set_level(self, level: bool) -> None:
        pass

    def pulse(self) -> None:
        pass


IrqEvent = tuple[str, bool] | tuple[str]
"""("level", bool) for set_level calls, ("pulse",) for pulses."""


class RecordingIrqLine:
    """A line that remembers what it was told, so tests can assert on a device's interrupts."""

    def __init__(self) -> None:
        self.events: list[IrqEvent] = []
        self.level = False
        self.pulses = 0

    def set_level(self, level: bool) -> None:
        self.events.append(("level", bool(level)))
        self.level = bool(level)

    def pulse(self) -> None:
        self.events.append(("pulse",))
        self.pulses += 1

    def clear(self) -> None:
        """Forget recorded events (keeping the current level), to assert on what comes next."""
        self.events.clear()
        self.pulses = 0
