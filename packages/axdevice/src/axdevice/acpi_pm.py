"""The ACPI PM1a control register at port 0x604, where QEMU's PC machines place it.

Writing SLP_EN (bit 13) with SLP_TYP (bits 12-10) = 0 requests soft power-off (S5), as QEMU's
PIIX4/ICH9 power management does; other sleep types are ignored (no suspend here). It gives
x86 guests a way to power off with status 0, where isa-debug-exit can only report odd codes.
"""

from __future__ import annotations

from axaddrspace import AccessWidth, PortRange

from .control import VmControl
from .device import BaseDeviceOps
from .types import EmuDeviceType

PM1A_CNT_PORT = 0x604
SLP_EN = 1 << 13
SLP_TYP_SHIFT = 10
SLP_TYP_MASK = 0x7
SLP_TYP_SOFT_OFF = 0


class AcpiPmControl(BaseDeviceOps):
    def __init__(self, control: VmControl, port: int = PM1A_CNT_PORT) -> None:
        self._control = control
        self._port = port
        self._range = PortRange(port, port + 1)
        self._value = 0

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.PowerControl

    @property
    def address_range(self) -> PortRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        return (self._value >> (8 * (addr - self._port))) & width.mask

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        if addr != self._port:
            return
        self._value = value & ~SLP_EN & 0xFFFF
        if value & SLP_EN and (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK == SLP_TYP_SOFT_OFF:
            self._control.shutdown(0)
