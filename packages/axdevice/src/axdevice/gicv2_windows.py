"""Bus-facing pieces of the GICv2: its input lines and its CPU-banked register windows.

The GIC's registers are banked by the accessing CPU, but the device trait's ``handle_read(addr,
width)`` carries no CPU. A window binds the GIC to a ``current_cpu`` callable: a constant for a
per-vCPU view, or whatever the VM uses to know which vCPU thread is dispatching the access.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from axaddrspace import AccessWidth, AddrRange

from .device import BaseDeviceOps
from .types import EmuDeviceType


class Gicv2(Protocol):
    """What the windows and input lines need of the GIC (``gicv2.Gicv2`` satisfies it); a
    Protocol here, so this module does not import the GIC that imports it."""

    def set_spi_level(self, intid: int, level: bool) -> None: ...

    def set_ppi_level(self, cpu: int, intid: int, level: bool) -> None: ...

    def pulse_spi(self, intid: int) -> None: ...

    def pulse_ppi(self, cpu: int, intid: int) -> None: ...

    def distributor_read(self, cpu: int, offset: int, width: AccessWidth) -> int: ...

    def distributor_write(self, cpu: int, offset: int, width: AccessWidth, value: int) -> None: ...

    def cpu_read(self, cpu: int, offset: int, width: AccessWidth) -> int: ...

    def cpu_write(self, cpu: int, offset: int, width: AccessWidth, value: int) -> None: ...


def fixed_cpu(cpu: int) -> Callable[[], int]:
    """A ``current_cpu`` that always names ``cpu``."""
    return lambda: cpu


class GicInputLine:
    """An ``IrqLine`` into the GIC: an SPI (``cpu`` None) or one CPU's PPI."""

    __slots__ = ("_gic", "cpu", "intid")

    def __init__(self, gic: Gicv2, cpu: int | None, intid: int) -> None:
        self._gic = gic
        self.cpu = cpu
        self.intid = intid

    def set_level(self, level: bool) -> None:
        if self.cpu is None:
            self._gic.set_spi_level(self.intid, bool(level))
        else:
            self._gic.set_ppi_level(self.cpu, self.intid, bool(level))

    def pulse(self) -> None:
        if self.cpu is None:
            self._gic.pulse_spi(self.intid)
        else:
            self._gic.pulse_ppi(self.cpu, self.intid)

    def __repr__(self) -> str:
        where = "SPI" if self.cpu is None else f"CPU {self.cpu} PPI"
        return f"GicInputLine({where} {self.intid})"


class _GicWindow(BaseDeviceOps):
    def __init__(self, gic: Gicv2, current_cpu: Callable[[], int], base: int, size: int) -> None:
        self.gic = gic
        self.base = base
        self._current_cpu = current_cpu
        self._range = AddrRange.from_start_size(base, size)

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.InterruptController

    @property
    def address_range(self) -> AddrRange:
        return self._range


class GicDistributorWindow(_GicWindow):
    """The distributor's register window, banked by the CPU ``current_cpu()`` names."""

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        return self.gic.distributor_read(self._current_cpu(), addr - self.base, width)

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.gic.distributor_write(self._current_cpu(), addr - self.base, width, value)


class GicCpuInterfaceWindow(_GicWindow):
    """The CPU interface window of the CPU ``current_cpu()`` names."""

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        return self.gic.cpu_read(self._current_cpu(), addr - self.base, width)

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.gic.cpu_write(self._current_cpu(), addr - self.base, width, value)
