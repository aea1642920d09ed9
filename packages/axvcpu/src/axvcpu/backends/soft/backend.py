"""``SoftRiscvBackend``: the unicorn software CPU for riscv64 guests, one engine per hart.

It is what a VM needs from an execution backend (axvm's ``VmBackend``, satisfied
structurally): a stage-2 mapper, vCPUs, and the wires devices drive. On riscv the interrupt
controllers are devices (the CLINT and the PLIC in axdevice), so it has no numbered IRQ lines
(no ``irq_line``: axvm's ``IrqLines`` capability is absent); it offers ``hart_line(hart, bit)``
for MIP bits (``HartLines``), ``set_mtimecmp`` for the CLINT's timer compare registers and
``mtime()`` as the one clock every hart and the CLINT read (``MachineClock``), and
``set_mmio_handler`` to serve device windows inline (``InlineMmio``).

Harts take turns. Unicorn generates LR/SC and AMOs as plain loads and stores unless it runs
"parallel" code, which it never does, so two engines running at once on shared RAM would
break the guest's atomics (spinlocks, reference counts). By default one hart runs a slice at a
time, in FIFO order except that a hart whose interrupt lines changed goes first and ends the
running slice (``TurnLock``); ``parallel=True`` lets them run at once, for guests that
do not share memory between harts, or for measurements.
"""

from __future__ import annotations

import functools
import threading
import time

from ...ecall import EcallObserver
from .engine_ranges import page_windows
from .fast_slice import FastClock, engine_choice
from .hart_context import HartContext, MmioHandler, PolledUart, TurnLock
from .riscv64 import RiscvSoftVCpu
from .riscv_irq import MIP_BITS, HartInterrupts, HartLine
from .stage2 import SoftStage2

__all__ = ["DEFAULT_SLICE_INSTRUCTIONS", "MTIME_HZ", "MmioHandler", "SoftRiscvBackend", "TurnLock", "page_windows"]

DEFAULT_SLICE_INSTRUCTIONS = 100_000
"""Guest instructions per run() on the Python engine: about 1 ms of guest time; bounds the
latency of M-level interrupts and timer checks (both happen between slices) against ~20 us of
Python per slice. The C engine ends slices on events and at the timer deadline, and takes this
as its bound in translation blocks (a quarter of it when harts take turns)."""

MTIME_HZ = 10_000_000
_NS_PER_TICK = 1_000_000_000 // MTIME_HZ
_ALL_ADDRESSES = 1 << 64
"""A range no hart can hold page by page: ``invalidate_code`` over it drops all the hart's code."""


class SoftRiscvBackend:
    """riscv64 harts on unicorn engines that share one guest RAM."""

    name = "soft"

    def __init__(
        self,
        num_harts: int,
        *,
        slice_instructions: int = DEFAULT_SLICE_INSTRUCTIONS,
        mmio_exits: bool = False,
        parallel: bool = False,
        engine: str | None = None,
    ) -> None:
        """``mmio_exits``: with no MMIO handler set, an access that hits neither RAM nor a device
        window comes back from ``run()`` as ``MmioRead``/``MmioWrite`` (as on KVM) instead of
        an access fault in the guest. ``engine``: ``"c"`` or ``"python"`` (``fast_slice``);
        default ``$AXVISOR_SOFT_ENGINE``, else C where it builds."""
        if num_harts < 1:
            raise ValueError(f"a soft riscv64 VM needs at least one hart, not {num_harts}")
        if slice_instructions < 1:
            raise ValueError(f"slice_instructions must be positive, not {slice_instructions}")
        self.num_harts = num_harts
        self.slice_instructions = slice_instructions
        self._t0_ns = time.monotonic_ns()
        self._paused_ns: int | None = None
        """While the VM is paused: the monotonic time the clock stopped at (``pause_clock``)."""
        self.engine = engine_choice(engine)
        self._fast_clock = FastClock(self._t0_ns, _NS_PER_TICK) if self.engine == "c" else None
        self._stage2 = SoftStage2()
        turns = TurnLock(self._end_slice_of) if num_harts > 1 and not parallel else None
        self._turns = turns
        self._context = HartContext(self._stage2, self.mtime, mmio_exits, turns)
        self._irqs = [HartInterrupts(self.mtime, self._mtime_deadline) for _ in range(num_harts)]
        if turns is not None:
            for hart, irqs in enumerate(self._irqs):
                irqs.on_wake = functools.partial(turns.hasten, hart)
        self._lines: dict[tuple[int, int], HartLine] = {}
        self._lines_lock = threading.Lock()  # not _lock: device handlers may ask for lines mid-slice
        self._vcpus: dict[int, RiscvSoftVCpu] = {}
        self._windows: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    @property
    def stage2(self) -> SoftStage2:
        return self._stage2

    @property
    def mmio_exits(self) -> bool:
        return self._context.mmio_exits

    @property
    def turns(self) -> TurnLock | None:
        return self._turns

    @property
    def code_generation(self) -> int:
        """Bumped by a hart when the guest announces code other harts must see (the ecall
        observer says when)."""
        return self._context.code_generation

    @property
    def mmio_handler(self) -> MmioHandler | None:
        return self._context.mmio_handler

    def create_vcpu(self, vcpu_id: int) -> RiscvSoftVCpu:
        """Hart ``vcpu_id`` (mhartid reads it), on a new engine with every RAM mapping so far."""
        self._check_hart(vcpu_id)
        with self._lock:
            if vcpu_id in self._vcpus:
                raise ValueError(f"hart {vcpu_id} already has a vCPU")
            vcpu = RiscvSoftVCpu(
                self._context.for_hart(vcpu_id),
                vcpu_id,
                self._irqs[vcpu_id],
                self.slice_instructions,
                fast_clock=self._fast_clock,
                slice_blocks=self.slice_instructions // (4 if self.turns is not None else 1),
            )
            try:
                self._stage2.attach(vcpu)
                vcpu.set_mmio_windows(self._windows)
            except BaseException:
                vcpu.close()
                raise
            self._vcpus[vcpu_id] = vcpu
            return vcpu

    def vcpu(self, hart: int) -> RiscvSoftVCpu:
        return self._vcpus[hart]

    def set_mmio_handler(self, ranges: list[tuple[int, int]], handler: MmioHandler) -> None:
        """Serve ``(start, size)`` device windows inline with ``handler`` on every hart."""
        windows = page_windows(ranges)
        with self._lock:
            self._context.mmio_handler = handler
            self._windows = windows
            for vcpu in self._vcpus.values():
                vcpu.set_mmio_windows(windows)

    def serve_mtimecmp_writes(self, base: int) -> None:
        """Take the guest's writes to each hart's own mtimecmp (8 bytes per hart from ``base``,
        the CLINT's layout) in the C engine, without a Python call each. The hart replays the
        last value to the MMIO handler (an 8-byte write) at the end of its slice, before the
        handler sees any other access to that window and before Python takes a trap, so the
        device reads back what the hart runs with. No effect on the Python engine."""
        with self._lock:
            self._context.mtimecmp_base = base
            for vcpu in self._vcpus.values():
                vcpu.set_mmio_windows(self._windows)

    def serve_uart_tx(self, base: int, uart: PolledUart) -> None:
        """Serve the 16550 at ``base`` (byte registers) in the C engine while the guest only
        polls LSR and writes THR and ``uart.polled_tx_lsr()`` allows it: firmware and Linux's
        console cost two Python calls per byte otherwise. THR bytes reach ``uart.transmit`` at
        each newline, from a full buffer, and at the end of the slice; every other access to
        the window reaches the MMIO handler after them. No effect on the Python engine."""
        with self._lock:
            self._context.polled_uart = (base, uart)
            for vcpu in self._vcpus.values():
                vcpu.set_mmio_windows(self._windows)

    def set_ecall_observer(self, observer: EcallObserver | None) -> None:
        """Tell ``observer`` of every guest ecall (None: no one); when it answers True, every hart
        drops its translated code. The riscv machine installs the SBI-aware one, ``SbiCodeFence``."""
        self._context.ecall_observer = observer

    def drop_code(self, hart: int) -> None:
        """From any thread: hart ``hart`` drops all its translated code on its own thread before
        its next slice (a hart started by another, which may have just written its code); the
        other harts keep theirs. ``hart`` comes from the guest: one that does not exist is ignored."""
        vcpu = self._vcpus.get(hart)
        if vcpu is not None:
            vcpu.invalidate_code(0, _ALL_ADDRESSES)

    @property
    def ecall_observer(self) -> EcallObserver | None:
        return self._context.ecall_observer

    def hart_line(self, hart: int, bit: int) -> HartLine:
        """The line driving MIP bit ``bit`` (1 SSIP, 3 MSIP, 5 STIP, 7 MTIP, 9 SEIP, 11 MEIP) of ``hart``."""
        self._check_hart(hart)
        if bit not in MIP_BITS:
            raise ValueError(f"MIP bit {bit} is not an interrupt line; use one of {sorted(MIP_BITS)}")
        with self._lines_lock:
            return self._lines.setdefault((hart, bit), HartLine(self._irqs[hart], bit, hart))

    def set_mtimecmp(self, hart: int, value: int) -> None:
        """Hart ``hart`` takes MTIP while mtime() >= ``value`` (checked between slices and in wfi)."""
        self._check_hart(hart)
        self._irqs[hart].set_mtimecmp(value)

    def mtime(self) -> int:
        """Ticks of the 10 MHz machine timer the guest has run for (the backend's lifetime less
        the time it was paused); rdtime and the CLINT read it."""
        paused = self._paused_ns
        return ((time.monotonic_ns() if paused is None else paused) - self._t0_ns) // _NS_PER_TICK

    def pause_clock(self) -> None:
        """Stop mtime where it is (axvm's GuestClock): called with every hart out of the guest."""
        if self._paused_ns is None:
            self._paused_ns = time.monotonic_ns()
            self._sync_clock()

    def _sync_clock(self) -> None:
        """Give the C engine's rdtime the clock's new origin and pause state (same arithmetic)."""
        if self._fast_clock is not None:
            self._fast_clock.update(self._t0_ns, self._paused_ns)

    def _end_slice_of(self, hart: int) -> None:
        """The turn lock's preemption: a hart whose lines changed (an IPI) waits for its turn, so
        the slice of ``hart``, which holds it, ends at its next block (``TurnLock.hasten``)."""
        vcpu = self._vcpus.get(hart)
        if vcpu is not None:
            vcpu.end_slice()

    def invalidate_code(self, gpa: int, size: int) -> None:
        """Guest RAM ``[gpa, +size)`` was written from outside the harts (device DMA, the VMM):
        every hart drops the translations of those pages before its next slice."""
        for vcpu in list(self._vcpus.values()):
            vcpu.invalidate_code(gpa, size)

    def resume_clock(self) -> None:
        """Let mtime count on from where it stopped: the paused time is added to the origin
        before the clock is released, so no reader sees a jump forward."""
        paused = self._paused_ns
        if paused is not None:
            self._t0_ns += time.monotonic_ns() - paused
            self._paused_ns = None
            self._sync_clock()

    def save_clock(self) -> int:
        """The guest clock for a snapshot: mtime now (stands still while paused)."""
        return self.mtime()

    def restore_clock(self, ticks: int) -> None:
        """Make mtime read ``ticks`` now and count on from there (a snapshot restored), paused
        or not."""
        now = self._paused_ns if self._paused_ns is not None else time.monotonic_ns()
        self._t0_ns = now - ticks * _NS_PER_TICK
        self._sync_clock()

    def _mtime_deadline(self, ticks: int) -> float:
        """The time.monotonic() value at which mtime() reaches ``ticks``."""
        return (self._t0_ns + ticks * _NS_PER_TICK) / 1e9 + 1e-6

    def close(self) -> None:
        with self._lock:
            vcpus = list(self._vcpus.values())
            self._vcpus.clear()
        for vcpu in vcpus:
            vcpu.close()

    def _check_hart(self, hart: int) -> None:
        if not 0 <= hart < self.num_harts:
            raise ValueError(f"hart {hart} does not exist (this VM has harts 0..{self.num_harts - 1})")

    def __repr__(self) -> str:
        return f"SoftRiscvBackend(harts={self.num_harts}, slice={self.slice_instructions}, engine={self.engine})"
