"""``SoftAarch64Backend``: the unicorn software CPU for aarch64 guests, one engine per vCPU.

What a VM needs from an execution backend (axvm's ``VmBackend``, satisfied structurally): a
stage-2 mapper (the same ``SoftStage2`` riscv uses), vCPUs, and the wires the arm machine
drives. On arm the interrupt controller (the GIC) is a device, so the backend offers each
vCPU's IRQ input (``irq_input(cpu)``, driven by the GIC's CPU interface), a sink for the timer
outputs (``set_timer_sink``: the machine raises PPI 27/30 at the GIC), the VM's counter
(``counter()``, 62.5 MHz, paused with the VM) and ``set_mmio_handler`` for device windows served
inline. vCPUs take turns by default, as riscv harts do and for the same reason (unicorn runs
exclusives and atomics as plain loads and stores unless in "parallel" mode).
"""

from __future__ import annotations

import threading

from .aarch64 import Aarch64SoftVCpu
from .aarch64_irq import IrqInput
from .aarch64_timer import CNTFRQ_HZ, GenericTimers, GuestCounter, TimerSink
from .engine_ranges import page_windows
from .hart_context import HartContext, MmioHandler, TurnLock
from .stage2 import SoftStage2

DEFAULT_SLICE_INSTRUCTIONS = 100_000
"""Guest instructions per run(): slices are count-bounded on aarch64 (about 1 ms of guest time),
so this bounds how late an IRQ or a timer deadline is seen."""

__all__ = ["SoftAarch64Backend"]


class SoftAarch64Backend:
    """aarch64 vCPUs on unicorn engines that share one guest RAM."""

    name = "soft"
    arch = "aarch64"
    counter_hz = CNTFRQ_HZ

    def __init__(
        self,
        num_cpus: int,
        *,
        slice_instructions: int = DEFAULT_SLICE_INSTRUCTIONS,
        mmio_exits: bool = False,
        parallel: bool = False,
    ) -> None:
        """``mmio_exits``: with no MMIO handler set, a load or store to an address with neither
        RAM nor a device window leaves ``run()`` as ``MmioRead``/``MmioWrite`` (as on KVM)
        instead of an external abort in the guest."""
        if num_cpus < 1:
            raise ValueError(f"a soft aarch64 VM needs at least one vCPU, not {num_cpus}")
        if slice_instructions < 1:
            raise ValueError(f"slice_instructions must be positive, not {slice_instructions}")
        self.num_cpus = num_cpus
        self.slice_instructions = slice_instructions
        self._counter = GuestCounter()
        self._stage2 = SoftStage2()
        turns = TurnLock() if num_cpus > 1 and not parallel else None
        self._turns = turns
        self._context = HartContext(self._stage2, self._counter.virtual, mmio_exits, turns)
        self._irqs = [IrqInput(i) for i in range(num_cpus)]
        self._timers = [GenericTimers(i) for i in range(num_cpus)]
        self._vcpus: dict[int, Aarch64SoftVCpu] = {}
        self._windows: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    @property
    def stage2(self) -> SoftStage2:
        return self._stage2

    @property
    def mmio_handler(self) -> MmioHandler | None:
        return self._context.mmio_handler

    @property
    def turns(self) -> TurnLock | None:
        return self._turns

    def create_vcpu(self, vcpu_id: int) -> Aarch64SoftVCpu:
        """vCPU ``vcpu_id`` (MPIDR ``mpidr_of(vcpu_id)``) on a new engine with every RAM mapping so far."""
        self._check_cpu(vcpu_id)
        with self._lock:
            if vcpu_id in self._vcpus:
                raise ValueError(f"vCPU {vcpu_id} already exists")
            vcpu = Aarch64SoftVCpu(
                self._context,
                vcpu_id,
                self._irqs[vcpu_id],
                self._timers[vcpu_id],
                self._counter,
                self.slice_instructions,
            )
            try:
                self._stage2.attach(vcpu)
                vcpu.set_mmio_windows(self._windows)
            except BaseException:
                vcpu.close()
                raise
            self._vcpus[vcpu_id] = vcpu
            return vcpu

    def vcpu(self, vcpu_id: int) -> Aarch64SoftVCpu:
        return self._vcpus[vcpu_id]

    def set_mmio_handler(self, ranges: list[tuple[int, int]], handler: MmioHandler) -> None:
        """Serve ``(start, size)`` device windows inline with ``handler`` on every vCPU."""
        windows = page_windows(ranges)
        with self._lock:
            self._context.mmio_handler = handler
            self._windows = windows
            for vcpu in self._vcpus.values():
                vcpu.set_mmio_windows(windows)

    def irq_input(self, vcpu_id: int) -> IrqInput:
        """The IRQ input of vCPU ``vcpu_id``: the GIC's CPU interface sets its level."""
        self._check_cpu(vcpu_id)
        return self._irqs[vcpu_id]

    def set_timer_sink(self, sink: TimerSink | None) -> None:
        """``sink(vcpu_id, ppi, level)`` hears every change of a timer output (PPI 27 virtual,
        30 physical), on that vCPU's thread."""
        for timers in self._timers:
            timers.sink = sink

    def counter(self) -> int:
        """The VM's virtual count (CNTVCT): 62.5 MHz ticks run, less the time paused."""
        return self._counter.virtual()

    def pause_clock(self) -> None:
        """Stop the virtual count (axvm's GuestClock), with every vCPU out of the guest."""
        self._counter.pause()

    def resume_clock(self) -> None:
        self._counter.resume()

    def save_clock(self) -> int:
        """The guest clock for a snapshot: the virtual count now (stands still while paused)."""
        return self._counter.virtual()

    def restore_clock(self, ticks: int) -> None:
        """Make the virtual count read ``ticks`` now and count on from there (a snapshot restored)."""
        self._counter.restore(ticks)

    def close(self) -> None:
        with self._lock:
            vcpus = list(self._vcpus.values())
            self._vcpus.clear()
        for vcpu in vcpus:
            vcpu.close()

    def _check_cpu(self, vcpu_id: int) -> None:
        if not 0 <= vcpu_id < self.num_cpus:
            raise ValueError(f"vCPU {vcpu_id} does not exist (this VM has vCPUs 0..{self.num_cpus - 1})")

    def __repr__(self) -> str:
        return f"SoftAarch64Backend(cpus={self.num_cpus}, slice={self.slice_instructions})"
