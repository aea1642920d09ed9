"""The device trait every emulated device implements, as AxVisor's ``BaseDeviceOps``.

A bus finds the device by address and calls it with the absolute address of the access (as
AxVisor does); the device subtracts its own base. Devices answer from their state only: effects
leave through interfaces injected at construction (an IrqLine, an output sink, a VmControl).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from axaddrspace import AccessWidth, AddrRange, InclusiveRange

from .types import EmuDeviceType


class BaseDeviceOps(ABC):
    """An emulated device on an MMIO, port or system-register bus."""

    @property
    @abstractmethod
    def emu_type(self) -> EmuDeviceType:
        """What kind of device this is."""

    @property
    @abstractmethod
    def address_range(self) -> AddrRange | InclusiveRange:
        """Where it lives: half-open AddrRange for MMIO, InclusiveRange for ports and sysregs."""

    @abstractmethod
    def handle_read(self, addr: int, width: AccessWidth) -> int:
        """The value of a guest read of ``width`` bytes at absolute address ``addr``."""

    @abstractmethod
    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        """Apply a guest write of ``width`` bytes at absolute address ``addr``."""
