"""QEMU's isa-debug-exit: a port a test guest writes to end the VM with a status.

A write of value v stops the VM with exit code ``(v << 1) | 1``, exactly as QEMU, so test
harnesses written for QEMU (where 0 can never mean success) read our codes the same way. The
code is not truncated here; a VMM that turns it into a process exit status keeps its low 8 bits.
"""

from __future__ import annotations

from axaddrspace import AccessWidth, InclusiveRange, PortRange

from .control import VmControl
from .device import BaseDeviceOps
from .types import EmuDeviceType

DEBUG_EXIT_PORT = 0xF4


class DebugExit(BaseDeviceOps):
    """``iobase``/``iosize`` as QEMU's ``-device isa-debug-exit``; any write in range exits."""

    def __init__(self, control: VmControl, port: int = DEBUG_EXIT_PORT, width: AccessWidth | int = 1) -> None:
        self.control = control
        self.width = AccessWidth.from_size(int(width))
        self._range = PortRange(port, port + self.width - 1)

    @staticmethod
    def exit_code(value: int) -> int:
        """The VM exit code QEMU reports for a write of ``value``."""
        return (value << 1) | 1

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.DebugExit

    @property
    def address_range(self) -> InclusiveRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        return width.mask

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.control.shutdown(self.exit_code(value & width.mask))
