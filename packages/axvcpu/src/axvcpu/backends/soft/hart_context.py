"""``HartContext``: what the harts of one soft VM share, handed to each hart at its creation.

Theory of operation. The backend builds one ``HartContext`` and passes it to every
``RiscvSoftVCpu`` it creates; a hart holds the context, never the backend. Both ``backend``
and ``riscv64`` import this module and neither imports the other's caller, so the package's
import graph has no cycle (tests/test_layering.py checks it). What lives here:

- the VM's RAM (``stage2``, whose attached guest memory the harts decode and walk through);
- the clock (``mtime``) rdtime reads;
- the turn lock harts hold around a slice (``turns``: each hart's view holds its own side of it,
  so a hart whose interrupt lines changed can be served first);
- the MMIO handler serving device windows inline, or ``mmio_exits`` without one;
- the code generation: bumped when the guest announces code other harts must see, compared
  by every hart between slices (a newer value drops its translations);
- the ecall observer the machine installs (``EcallObserver``), which decides which ecalls
  announce new code: the CPU model itself knows no firmware ABI;
- where the CLINT's mtimecmp registers are, when the C engine takes their writes, and the
  UART whose polled transmit it serves.
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


class PolledUart(Protocol):
    """A 16550 UART whose polled transmit the C engine may serve (axdevice's Uart16550)."""

    def polled_tx_lsr(self) -> int:
        """What LSR reads while the guest only polls LSR and writes THR; 0 when those accesses
        must reach the UART (interrupt-driven transmit, loopback, divisor latch, an overrun)."""
        ...

    def transmit(self, data: bytes) -> None:
        """THR writes of ``data``, in order, while ``polled_tx_lsr`` allowed them."""
        ...


class TurnLock:
    """Who runs the next slice: harts ask in turn (FIFO), but a hart whose interrupt lines
    changed since its last turn (``hasten``) goes before the others.

    Why: with FIFO alone an IPI's target waits behind every other runnable hart's whole slice,
    while the sender often spins until the target answers (OpenSBI's remote fences, Linux's
    cross-CPU calls). A hastened hart that is waiting, or that arrives while another holds the
    lock, also ends the holder's slice (``preempt(holder)``), so the hand-over happens at the
    holder's next block. The lock is handed straight to the chosen waiter (one wake-up per
    turn, no herd). Anonymous turns (``with lock:``, hart None) are plain FIFO.
    """

    def __init__(self, preempt: Callable[[int], None] | None = None) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._holder: int | None = None
        self._waiters: list[_Waiter] = []  # in arrival order
        self._hastened: set[int] = set()
        self._preempt = preempt
        self.handovers = 0
        """Turns handed to a hart other than the one that held the lock last (a thread switch)."""
        self.preemptions = 0
        """Slices a hastened hart ended early."""

    def acquire(self, hart: int | None = None) -> None:
        with self._mutex:
            if not self._held:
                self._take(hart)
                return
            waiter = _Waiter(hart)
            self._waiters.append(waiter)
            holder = self._holder
            hastened = hart is not None and hart in self._hastened
        if hastened and holder is not None and holder != hart:
            self._end_slice(holder)
        waiter.gate.acquire()  # released by the holder's release(), which made this hart the holder

    def release(self) -> None:
        with self._mutex:
            waiters = self._waiters
            if not waiters:
                self._held = False
                return
            chosen = next((w for w in waiters if w.hart is not None and w.hart in self._hastened), waiters[0])
            waiters.remove(chosen)
            self._take(chosen.hart)
        chosen.gate.release()

    def hasten(self, hart: int) -> None:
        """Any thread: ``hart``'s lines changed; it gets the next turn before the others, and
        the running slice ends now if ``hart`` is already waiting for its turn."""
        with self._mutex:
            self._hastened.add(hart)
            holder = self._holder if self._held else None
            waiting = any(w.hart == hart for w in self._waiters)
        if waiting and holder is not None and holder != hart:
            self._end_slice(holder)

    @property
    def waiting(self) -> tuple[int | None, ...]:
        """The harts waiting for a turn, in arrival order."""
        with self._mutex:
            return tuple(w.hart for w in self._waiters)

    def for_hart(self, hart: int) -> HartTurn:
        """The context manager hart ``hart`` holds around its slices."""
        return HartTurn(self, hart)

    def _take(self, hart: int | None) -> None:
        """Under the mutex: ``hart`` holds the lock now."""
        if hart is None or hart != self._holder:
            self.handovers += 1
        self._held = True
        self._holder = hart
        if hart is not None:
            self._hastened.discard(hart)

    def _end_slice(self, holder: int) -> None:
        if self._preempt is not None:
            self.preemptions += 1
            self._preempt(holder)

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Waiter:
    """A hart waiting for its turn: ``gate`` is released when the turn is handed to it."""

    __slots__ = ("gate", "hart")

    def __init__(self, hart: int | None) -> None:
        self.hart = hart
        self.gate = threading.Lock()
        self.gate.acquire()


class HartTurn:
    """One hart's side of a ``TurnLock``: ``with turn:`` waits for the hart's turn."""

    __slots__ = ("hart", "lock")

    def __init__(self, lock: TurnLock, hart: int) -> None:
        self.lock = lock
        self.hart = hart

    def __enter__(self) -> None:
        self.lock.acquire(self.hart)

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


NO_TURNS = contextlib.nullcontext()
"""What a vCPU holds around its slice when vCPUs run in parallel (``HartContext.turns`` is None)."""


@dataclass(eq=False)
class _Shared:
    """What every hart's view of the context reads and writes: one object per VM."""

    code_generation: int = 0
    mmio_handler: MmioHandler | None = None
    ecall_observer: EcallObserver | None = None
    mtimecmp_base: int | None = None
    polled_uart: tuple[int, PolledUart] | None = None


class HartContext:
    """The state every hart of one VM reads, and the code generation they bump.

    The backend builds one and hands each hart ``for_hart(hart)``: a view sharing all of it but
    ``turns``, which there is that hart's side of the turn lock (the lock needs to know who asks).
    """

    def __init__(
        self,
        stage2: SoftStage2,
        mtime: Callable[[], int],
        mmio_exits: bool,
        turns: TurnLock | HartTurn | None,
        *,
        shared: _Shared | None = None,
    ) -> None:
        self.stage2 = stage2
        self.mtime = mtime
        """Ticks of the VM's 10 MHz machine timer (rdtime reads it)."""
        self.mmio_exits = mmio_exits
        """Without an MMIO handler, an access outside RAM and windows leaves run() as an exit."""
        self.turns = turns
        """Held around each slice when harts take turns; None when they run in parallel."""
        self._shared = shared if shared is not None else _Shared()

    def for_hart(self, hart: int) -> HartContext:
        """Hart ``hart``'s view: the same shared state, its own side of the turn lock."""
        turns = self.turns
        if isinstance(turns, TurnLock):
            turns = turns.for_hart(hart)
        return HartContext(self.stage2, self.mtime, self.mmio_exits, turns, shared=self._shared)

    @property
    def code_generation(self) -> int:
        """Bumped when the guest announces code other harts must see (``ecall_observer`` says
        when); each engine drops its translations when it sees a newer value."""
        return self._shared.code_generation

    @code_generation.setter
    def code_generation(self, value: int) -> None:
        self._shared.code_generation = value

    @property
    def mmio_handler(self) -> MmioHandler | None:
        return self._shared.mmio_handler

    @mmio_handler.setter
    def mmio_handler(self, handler: MmioHandler | None) -> None:
        self._shared.mmio_handler = handler

    @property
    def ecall_observer(self) -> EcallObserver | None:
        """Told of every ecall before its trap is entered; None: no ecall announces new code."""
        return self._shared.ecall_observer

    @ecall_observer.setter
    def ecall_observer(self, observer: EcallObserver | None) -> None:
        self._shared.ecall_observer = observer

    @property
    def mtimecmp_base(self) -> int | None:
        """Where hart 0's mtimecmp is (8 bytes per hart, CLINT layout) when the C engine takes
        the guest's writes to it; None: every access goes to the MMIO handler."""
        return self._shared.mtimecmp_base

    @mtimecmp_base.setter
    def mtimecmp_base(self, base: int | None) -> None:
        self._shared.mtimecmp_base = base

    @property
    def polled_uart(self) -> tuple[int, PolledUart] | None:
        """(base, UART) when the C engine serves that UART's polled LSR reads and THR writes."""
        return self._shared.polled_uart

    @polled_uart.setter
    def polled_uart(self, uart: tuple[int, PolledUart] | None) -> None:
        self._shared.polled_uart = uart
