"""What the harts of one soft VM share, handed to each hart instead of the backend itself.

A hart reads the VM's clock, RAM (stage-2), MMIO handler and turn lock, and bumps the code
generation when the guest announces code other harts must see. Holding this object, not the
``SoftRiscvBackend``, keeps ``riscv64`` from importing ``backend`` (which creates the harts),
so the two modules form no import cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from axaddrspace import AccessWidth

from .stage2 import SoftStage2


class MmioHandler(Protocol):
    """What serves MMIO windows inline (axdevice's MmioBus satisfies it)."""

    def read(self, addr: int, width: AccessWidth) -> int: ...

    def write(self, addr: int, width: AccessWidth, value: int) -> None: ...


class TurnLock:
    """A FIFO lock: harts waiting to run a slice get it in the order they asked."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0

    def acquire(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket:
                self._cond.wait()

    def release(self) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


@dataclass(eq=False)
class SharedHarts:
    """The state every hart of one VM reads, and the code generation they bump."""

    stage2: SoftStage2
    mtime: Callable[[], int]
    """Ticks of the VM's 10 MHz machine timer (rdtime reads it)."""
    mmio_exits: bool
    """Without an MMIO handler, an access outside RAM and windows leaves run() as an exit."""
    turns: TurnLock | None
    """Held around each slice when harts take turns; None when they run in parallel."""
    code_generation: int = 0
    """Bumped when the guest announces code other harts must see (SBI remote fence.i, hart
    start); each engine drops its translations when it sees a newer value."""
    mmio_handler: MmioHandler | None = None
