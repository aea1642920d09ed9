"""``HartContext``: what the harts of one soft VM share, handed to each hart at its creation.

Theory of operation. The backend builds one ``HartContext`` and passes it to every
``RiscvSoftVCpu`` it creates; a hart holds the context, never the backend. Both ``backend``
and ``riscv64`` import this module and neither imports the other's caller, so the package's
import graph has no cycle (tests/test_layering.py checks it). What lives here:

- the VM's RAM (``stage2``, whose attached guest memory the harts decode and walk through);
- the clock (``mtime``) rdtime reads;
- the turn lock harts hold around a slice (``turns``);
- the MMIO handler serving device windows inline, or ``mmio_exits`` without one;
- the code generation: bumped when the guest announces code other harts must see, compared
  by every hart between slices (a newer value drops its translations);
- the ecall observer the machine installs (``EcallObserver``), which decides which ecalls
  announce new code: the CPU model itself knows no firmware ABI.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from axaddrspace import AccessWidth

from ...ecall import EcallObserver
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

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


NO_TURNS = contextlib.nullcontext()
"""What a vCPU holds around its slice when vCPUs run in parallel (``HartContext.turns`` is None)."""


@dataclass(eq=False)
class HartContext:
    """The state every hart of one VM reads, and the code generation they bump."""

    stage2: SoftStage2
    mtime: Callable[[], int]
    """Ticks of the VM's 10 MHz machine timer (rdtime reads it)."""
    mmio_exits: bool
    """Without an MMIO handler, an access outside RAM and windows leaves run() as an exit."""
    turns: TurnLock | None
    """Held around each slice when harts take turns; None when they run in parallel."""
    code_generation: int = 0
    """Bumped when the guest announces code other harts must see (``ecall_observer`` says
    when); each engine drops its translations when it sees a newer value."""
    mmio_handler: MmioHandler | None = None
    ecall_observer: EcallObserver | None = None
    """Told of every ecall before its trap is entered; None: no ecall announces new code."""
