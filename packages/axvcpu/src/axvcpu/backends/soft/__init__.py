"""The soft backend: riscv64 and aarch64 guests on the unicorn engine, one engine per vCPU, one shared RAM."""

from .aarch64 import Aarch64SoftVCpu, mpidr_of
from .aarch64_backend import SoftAarch64Backend
from .aarch64_irq import IrqInput
from .aarch64_timer import CNTFRQ_HZ, PPI_PHYS, PPI_VIRT, TimerSink
from .backend import DEFAULT_SLICE_INSTRUCTIONS, MTIME_HZ, MmioHandler, SoftRiscvBackend, TurnLock, page_windows
from .hart_context import HartContext
from .riscv64 import RiscvSoftVCpu
from .riscv_irq import (
    IRQ_MEIP,
    IRQ_MSIP,
    IRQ_MTIP,
    IRQ_SEIP,
    IRQ_SSIP,
    IRQ_STIP,
    HartInterrupts,
    HartLine,
)
from .riscv_regs import HartIdError
from .stage2 import SoftStage2

__all__ = [
    "CNTFRQ_HZ",
    "PPI_PHYS",
    "PPI_VIRT",
    "Aarch64SoftVCpu",
    "IrqInput",
    "SoftAarch64Backend",
    "TimerSink",
    "mpidr_of",
    "DEFAULT_SLICE_INSTRUCTIONS",
    "IRQ_MEIP",
    "IRQ_MSIP",
    "IRQ_MTIP",
    "IRQ_SEIP",
    "IRQ_SSIP",
    "IRQ_STIP",
    "MTIME_HZ",
    "HartContext",
    "HartIdError",
    "HartInterrupts",
    "HartLine",
    "MmioHandler",
    "RiscvSoftVCpu",
    "SoftRiscvBackend",
    "SoftStage2",
    "TurnLock",
    "page_windows",
]
