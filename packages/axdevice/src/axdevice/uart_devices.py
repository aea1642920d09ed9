"""Bus adapters that put a Uart16550 on the port bus (PC COM ports) or the MMIO bus.

The UART itself knows only register indexes; these turn an absolute bus address into one. An
access wider than a register reaches that one register (the value's low byte), as no guest
driver splits UART accesses and the bus already confines accesses to the device's range.
"""

from __future__ import annotations

from axaddrspace import AccessWidth, AddrRange, InclusiveRange, PortRange

from .device import BaseDeviceOps
from .types import EmuDeviceType
from .uart16550 import Uart16550

UART_REGISTERS = 8
COM1_PORT = 0x3F8


class Uart16550Port(BaseDeviceOps):
    """A UART on eight consecutive I/O ports (COM1 at 0x3f8 by default)."""

    def __init__(self, uart: Uart16550, base_port: int = COM1_PORT) -> None:
        self.uart = uart
        self.base_port = base_port
        self._range = PortRange(base_port, base_port + UART_REGISTERS - 1)

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Console

    @property
    def address_range(self) -> InclusiveRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        return self.uart.read(addr - self.base_port)

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.uart.write(addr - self.base_port, value)


class Uart16550Mmio(BaseDeviceOps):
    """A UART on the MMIO bus with registers ``1 << reg_shift`` bytes apart.

    QEMU's riscv and arm virt machines use reg_shift 0 and a 0x100-byte window; DesignWare
    UARTs use reg_shift 2. Bytes of a register above its low byte, and registers past the
    eighth, read 0 and drop writes.
    """

    def __init__(self, uart: Uart16550, base: int, reg_shift: int = 0, length: int | None = None) -> None:
        if not 0 <= reg_shift <= 3:
            raise ValueError(f"reg_shift {reg_shift} is not 0..3 (registers 1 to 8 bytes apart)")
        if length is None:
            length = UART_REGISTERS << reg_shift
        if length <= 0:
            raise ValueError(f"UART MMIO window length {length:#x} must be positive")
        self.uart = uart
        self.base = base
        self.reg_shift = reg_shift
        self._low_mask = (1 << reg_shift) - 1
        self._range = AddrRange.from_start_size(base, length)

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Console

    @property
    def address_range(self) -> AddrRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        offset = addr - self.base
        if offset & self._low_mask:
            return 0
        return self.uart.read(offset >> self.reg_shift)

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        offset = addr - self.base
        if not offset & self._low_mask:
            self.uart.write(offset >> self.reg_shift, value)
