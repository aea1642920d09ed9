"""The ARM PrimeCell PL031 real-time clock as a sans-IO state machine.

Theory of operation (ARM PrimeCell Real Time Clock (PL031) Technical Reference Manual, DDI 0224,
chapter 3 "Programmers Model": 3.2 register summary, 3.3 register descriptions; choices the
TRM leaves open as QEMU's hw/rtc/pl031.c, which Linux's rtc-pl031 driver is used with):

- A 32-bit counter of seconds. RTCDR (0x000) reads it; writing RTCLR (0x008) loads it (and
  RTCLR reads back the value last loaded); RTCMR (0x004) is the match value.
- The counter runs from power-on: RTCCR (0x00C) reads 1 (started) and ignores writes, as QEMU
  (the TRM's start bit can only be set, and firmware sets it before any OS runs).
- The alarm: when the counter reaches RTCMR, RTCRIS (0x014) bit 0 is set; RTCIMSC (0x010)
  masks it, RTCMIS (0x018) is RIS & IMSC, and writing 1 to RTCICR (0x01C) clears it. The one
  output line is a level, high while RTCMIS is set; ``set_level`` is called only on changes.
- PeriphID0-3 at 0xFE0 read 0x31 0x10 0x14 0x00 (part 0x031, designer ARM, revision 1, as QEMU)
  and CellID0-3 0x0D 0xF0 0x05 0xB1; Linux's amba bus matches rtc-pl031 on them.
- Any access width at a word-aligned offset reaches the register (a read is masked to the
  width); unaligned and unknown offsets read 0 and drop writes.

Time comes from the injected ``clock`` (seconds, e.g. ``time.time``); the counter is its floor
plus an offset the guest moves by writing RTCLR. A state machine cannot act at a future time, so
the match is found when the VMM calls ``poll()`` (and on every register access): each change of
the next match time is handed to the injected ``alarm`` callback as a ``clock()`` value, for the
VMM to schedule that poll. A match is always due, since the counter meets any value within
2**32 seconds. As QEMU, a match value equal to the counter when RTCMR or RTCLR is written
matches at once; after a match the next one is 2**32 seconds later.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from axaddrspace import AccessWidth, AddrRange

from .device import BaseDeviceOps
from .irq import IrqLine
from .primecell import CELL_ID, id_register
from .types import EmuDeviceType

PL031_BASE = 0x0901_0000  # QEMU arm virt
PL031_SIZE = 0x1000

RTCDR = 0x000
RTCMR = 0x004
RTCLR = 0x008
RTCCR = 0x00C
RTCIMSC = 0x010
RTCRIS = 0x014
RTCMIS = 0x018
RTCICR = 0x01C

PERIPH_ID = (0x31, 0x10, 0x14, 0x00)
ID_BYTES = PERIPH_ID + CELL_ID

COUNTER_MASK = 0xFFFF_FFFF
WRAP = 1 << 32  # seconds between two matches of the same value
RTC_STARTED = 1

Clock = Callable[[], float]
AlarmSink = Callable[[float], object]


@dataclass
class Pl031State:
    """Everything needed to resume a PL031; ``counter`` is the counter's value when saved."""

    counter: int = 0
    load: int = 0
    match: int = 0
    imsc: int = 0
    ris: int = 0


def _validate(state: Pl031State) -> None:
    for name in ("counter", "load", "match"):
        value = getattr(state, name)
        if not isinstance(value, int) or not 0 <= value <= COUNTER_MASK:
            raise ValueError(f"Pl031State.{name} = {value!r} is not a 32-bit counter value")
    for name in ("imsc", "ris"):
        value = getattr(state, name)
        if value not in (0, 1):
            raise ValueError(f"Pl031State.{name} = {value!r} is not 0 or 1")


class Pl031(BaseDeviceOps):
    """The RTC's register window at ``base``; its alarm interrupt goes out through ``irq``."""

    def __init__(
        self,
        irq: IrqLine,
        clock: Clock,
        alarm: AlarmSink | None = None,
        base: int = PL031_BASE,
        size: int = PL031_SIZE,
    ) -> None:
        if size < PL031_SIZE:
            raise ValueError(f"PL031 window {size:#x} is smaller than its {PL031_SIZE:#x} registers")
        self.base = base
        self._range = AddrRange.from_start_size(base, size)
        self._irq = irq
        self._clock = clock
        self._alarm = alarm
        self._irq_level = False
        self._deadline = -1.0  # set by the first _arm
        self._load_state(Pl031State(counter=self._now() & COUNTER_MASK))

    @classmethod
    def from_state(
        cls,
        state: Pl031State,
        irq: IrqLine,
        clock: Clock,
        alarm: AlarmSink | None = None,
        base: int = PL031_BASE,
        size: int = PL031_SIZE,
    ) -> Pl031:
        """An RTC resumed from ``state``: the counter continues from the saved value on the new
        clock; ValueError if no PL031 could be in ``state``."""
        _validate(state)
        rtc = cls(irq, clock, alarm, base, size)
        rtc._load_state(state)
        return rtc

    def restore(self, state: Pl031State) -> None:
        """Put this RTC into ``state`` in place (a VM snapshot restored): the counter continues
        from the saved value on its clock; ValueError as ``from_state``."""
        _validate(state)
        self._load_state(state)

    def state(self) -> Pl031State:
        """A snapshot of the registers, the counter as read now."""
        self.poll()
        return Pl031State(counter=self.counter(), load=self._load, match=self._match, imsc=self._imsc, ris=self._ris)

    def reset(self) -> None:
        """Return to the power-on registers (a VM reset); the counter keeps counting, as a
        real-time clock does across a reset, and the line falls if it was raised."""
        self._load_state(Pl031State(counter=self.counter()))

    def _load_state(self, state: Pl031State) -> None:
        self._offset = state.counter - self._now()
        self._load, self._match = state.load, state.match
        self._imsc, self._ris = state.imsc, state.ris
        self._arm(match_now=False)
        self._update_irq()

    # -- host side -------------------------------------------------------------------------

    def counter(self) -> int:
        """The counter's value now (what RTCDR reads)."""
        return (self._now() + self._offset) & COUNTER_MASK

    @property
    def deadline(self) -> float:
        """The ``clock()`` time of the next match."""
        return self._deadline

    @property
    def irq_level(self) -> bool:
        """Whether the RTC is asserting its interrupt line."""
        return self._irq_level

    def poll(self) -> None:
        """Set the alarm interrupt if the match time has come; the VMM calls this at the
        deadline the ``alarm`` callback was given."""
        if self._clock() >= self._deadline:
            self._ris = 1
            self._set_deadline(self._deadline + WRAP)
            self._update_irq()

    # -- the device trait ------------------------------------------------------------------

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Rtc

    @property
    def address_range(self) -> AddrRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        offset = addr - self.base
        if offset % 4:
            return 0
        return self.read(offset) & width.mask

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        offset = addr - self.base
        if offset % 4 == 0:
            self.write(offset, value & width.mask)

    def read(self, offset: int) -> int:
        """The guest reads the register at ``offset``; unknown offsets read 0."""
        self.poll()
        if offset == RTCDR:
            return self.counter()
        if offset == RTCMR:
            return self._match
        if offset == RTCLR:
            return self._load
        if offset == RTCCR:
            return RTC_STARTED
        if offset == RTCIMSC:
            return self._imsc
        if offset == RTCRIS:
            return self._ris
        if offset == RTCMIS:
            return self._ris & self._imsc
        return id_register(ID_BYTES, offset)

    def write(self, offset: int, value: int) -> None:
        """The guest writes the register at ``offset``; read-only and unknown offsets drop it."""
        self.poll()
        value &= COUNTER_MASK
        if offset == RTCMR:
            self._match = value
            self._arm(match_now=True)
        elif offset == RTCLR:
            self._load = value
            self._offset = value - self._now()
            self._arm(match_now=True)
        elif offset == RTCIMSC:
            self._imsc = value & 1
        elif offset == RTCICR:
            self._ris &= ~value & 1
        else:
            return
        self._update_irq()

    # -- internals -------------------------------------------------------------------------

    def _now(self) -> int:
        return math.floor(self._clock())

    def _arm(self, match_now: bool) -> None:
        """Work out the next match after RTCMR or the counter changed; a guest write that makes
        them equal matches at once (``match_now``), a power-on or restore does not."""
        now = self._now()
        ahead = (self._match - (now + self._offset)) % WRAP
        if ahead == 0:
            if match_now:
                self._ris = 1
            ahead = WRAP
        self._set_deadline(float(now + ahead))

    def _set_deadline(self, deadline: float) -> None:
        if deadline != self._deadline:
            self._deadline = deadline
            if self._alarm is not None:
                self._alarm(deadline)

    def _update_irq(self) -> None:
        level = bool(self._ris & self._imsc)
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)
