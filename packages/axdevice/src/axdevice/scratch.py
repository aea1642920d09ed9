"""A bank of scratch registers on the MMIO bus: what a guest writes, it reads back.

It is the device behind AxVisor's ``Dummy`` type here, and what the x86 "mmio" test guest
exercises: accesses of every width at any offset inside the window read back the bytes
written, and the first eight bytes hold a fixed identification value ("AXSCRATC") that writes
cannot change, so a guest can tell a real device from the bus's all-ones answer.
"""

from __future__ import annotations

from axaddrspace import AccessWidth, AddrRange

from .device import BaseDeviceOps
from .types import EmuDeviceType

SCRATCH_ID = int.from_bytes(b"AXSCRATC", "little")
ID_SIZE = 8
MAX_SCRATCH_SIZE = 1 << 20
"""The backing store is host memory; a config cannot make it larger than 1 MiB."""


class ScratchRegisters(BaseDeviceOps):
    def __init__(self, base: int, length: int = 0x1000) -> None:
        if not ID_SIZE < length <= MAX_SCRATCH_SIZE:
            raise ValueError(f"scratch window length {length:#x} must be in {ID_SIZE + 1:#x}..{MAX_SCRATCH_SIZE:#x}")
        self._base = base
        self._range = AddrRange.from_start_size(base, length)
        self._bytes = bytearray(SCRATCH_ID.to_bytes(ID_SIZE, "little")) + bytearray(length - ID_SIZE)

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Dummy

    @property
    def address_range(self) -> AddrRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        offset = addr - self._base
        return int.from_bytes(self._bytes[offset: offset + width.size], "little")

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        offset = addr - self._base
        data = (value & width.mask).to_bytes(width.size, "little")
        for index, byte in enumerate(data, start=offset):
            if index >= ID_SIZE:
                self._bytes[index] = byte
