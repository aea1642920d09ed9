"""PCI configuration mechanism #1 (ports 0xCF8-0xCFF) on a host bridge with no devices.

CONFIG_ADDRESS (0xCF8, 32-bit) latches what the guest writes, so Linux's probe (write
0x80000000, read it back) finds a type-1 host; every CONFIG_DATA read (0xCFC-0xCFF) answers
all-ones, which PCI defines as "no device at this bus/device/function", and writes are dropped.
"""

from __future__ import annotations

from axaddrspace import AccessWidth, PortRange

from .device import BaseDeviceOps
from .types import EmuDeviceType

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
ENABLE_BIT = 1 << 31
ADDRESS_MASK = 0x80FF_FFFC
"""Bit 31 enable, bus/device/function/register; bits 30-24 are reserved and bits 1-0 read 0."""


class PciConfigPorts(BaseDeviceOps):
    def __init__(self) -> None:
        self._range = PortRange(CONFIG_ADDRESS, CONFIG_DATA + 3)
        self.address = 0

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.PciHost

    @property
    def address_range(self) -> PortRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        if addr == CONFIG_ADDRESS and width is AccessWidth.DWORD:
            return self.address
        return width.mask

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        if addr == CONFIG_ADDRESS and width is AccessWidth.DWORD:
            self.address = value & ADDRESS_MASK
