"""``CallbackDevice``: an MMIO device made of two plain functions.

For scripting a VM: a register bank, a probe or a fake peripheral in a few lines, without a
class. The functions see offsets into the window, not absolute addresses, and the access size
in bytes. The guest is untrusted and so is a script written in a hurry: a read function that
returns something other than an int, or a value wider than the access, is the device's error
(the bus answers all ones and counts it, as for any device that raises), never the VMM's.
"""

from __future__ import annotations

from collections.abc import Callable

from axaddrspace import AccessWidth, AddrRange

from .device import BaseDeviceOps
from .types import EmuDeviceType

ReadFunction = Callable[[int, int], int]
"""``read(offset, size) -> value``: the value of a guest read of ``size`` bytes at ``offset``."""
WriteFunction = Callable[[int, int, int], object]
"""``write(offset, size, value)``: a guest write of ``size`` bytes at ``offset``."""


class CallbackDevice(BaseDeviceOps):
    """``[base, base + size)`` served by ``read``/``write``; without ``read`` reads return 0,
    without ``write`` writes are ignored."""

    def __init__(
        self,
        base: int,
        size: int,
        read: ReadFunction | None = None,
        write: WriteFunction | None = None,
        name: str = "callback",
    ) -> None:
        if size <= 0:
            raise ValueError(f"{name}: window size {size:#x} must be positive")
        for label, function in (("read", read), ("write", write)):
            if function is not None and not callable(function):
                raise TypeError(f"{name}: {label} must be a function, not {type(function).__name__}")
        self.name = name
        self._base = base
        self._range = AddrRange.from_start_size(base, size)
        self._read = read
        self._write = write

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Dummy

    @property
    def address_range(self) -> AddrRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        if self._read is None:
            return 0
        value = self._read(addr - self._base, width.size)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= width.mask:
            raise ValueError(f"{self.name}: read returned {value!r}; expected an int in 0..{width.mask:#x}")
        return value

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        if self._write is not None:
            self._write(addr - self._base, width.size, value & width.mask)

    def __repr__(self) -> str:
        return f"CallbackDevice({self.name!r}, {self._range})"
