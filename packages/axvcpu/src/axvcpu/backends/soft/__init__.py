"""The soft backend: riscv64 and aarch64 guests on the unicorn engine, one engine per vCPU, one shared RAM.

Each name is imported on first use (PEP 562), so a VM of one architecture loads that
architecture's modules only (``axvisor run`` of a riscv VM never imports the aarch64 ones).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

_MODULE_OF = {
    "CNTFRQ_HZ": "aarch64_timer",
    "PPI_PHYS": "aarch64_timer",
    "PPI_VIRT": "aarch64_timer",
    "Aarch64SoftVCpu": "aarch64",
    "IrqInput": "aarch64_irq",
    "SoftAarch64Backend": "aarch64_backend",
    "TimerSink": "aarch64_timer",
    "mpidr_of": "aarch64",
    "DEFAULT_SLICE_INSTRUCTIONS": "backend",
    "IRQ_MEIP": "riscv_irq",
    "IRQ_MSIP": "riscv_irq",
    "IRQ_MTIP": "riscv_irq",
    "IRQ_SEIP": "riscv_irq",
    "IRQ_SSIP": "riscv_irq",
    "IRQ_STIP": "riscv_irq",
    "MTIME_HZ": "backend",
    "HartContext": "hart_context",
    "HartIdError": "riscv_regs",
    "HartInterrupts": "riscv_irq",
    "HartLine": "riscv_irq",
    "MmioHandler": "backend",
    "RiscvSoftVCpu": "riscv64",
    "SoftRiscvBackend": "backend",
    "SoftStage2": "stage2",
    "TurnLock": "backend",
    "page_windows": "backend",
}

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


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value
