"""The PC's MC146818 CMOS real-time clock, enough for Linux and firmware to read the time.

Ports 0x70 (index; bit 7 is the NMI mask and is ignored) and 0x71 (data). Time registers
(0x00 seconds ... 0x09 year, 0x32 century) come from an injected wall clock, in BCD unless the
guest sets Status B's DM bit, in 24-hour mode unless it clears bit 1. Status A reports no
update in progress, Status D reports a valid battery. Other CMOS bytes are plain storage, so
firmware that keeps settings there reads back what it wrote. The clock is injected so the
device stays sans-IO and tests choose the time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from axaddrspace import AccessWidth, PortRange

from .device import BaseDeviceOps
from .types import EmuDeviceType

RTC_PORT = 0x70
CMOS_SIZE = 128
"""The MC146818 has 128 bytes; the index is masked to 7 bits, so a guest cannot index past it."""

REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
REG_B_24H = 0x02
REG_B_BINARY = 0x04
REG_D_VALID_RAM = 0x80
CENTURY = 0x32

WallClock = Callable[[], time.struct_time]


def _bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


class CmosRtc(BaseDeviceOps):
    """CMOS RTC on ports 0x70-0x71."""

    def __init__(self, clock: WallClock = time.gmtime, port: int = RTC_PORT) -> None:
        self._clock = clock
        self._port = port
        self._range = PortRange(port, port + 1)
        self._index = 0
        self._cmos = bytearray(CMOS_SIZE)
        self._cmos[REG_A] = 0x26  # 32.768 kHz time base, 1024 Hz periodic rate; UIP clear
        self._cmos[REG_B] = REG_B_24H
        self._cmos[REG_D] = REG_D_VALID_RAM

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Rtc

    @property
    def address_range(self) -> PortRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        if addr == self._port:
            return self._index
        return self._read_register(self._index)

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        if addr == self._port:
            self._index = value & (CMOS_SIZE - 1)
            return
        if self._index in (REG_C, REG_D):
            return  # read-only status registers
        self._cmos[self._index] = value & 0xFF

    def _read_register(self, index: int) -> int:
        if index == REG_C:
            return 0  # no interrupt flags: periodic, alarm and update interrupts are not raised
        fields = self._time_fields()
        if index in fields:
            return self._encode(index, fields[index])
        return self._cmos[index]

    def _time_fields(self) -> dict[int, int]:
        now = self._clock()
        return {
            0x00: now.tm_sec % 60,
            0x02: now.tm_min,
            0x04: now.tm_hour,
            0x06: (now.tm_wday + 1) % 7 + 1,  # CMOS counts 1 = Sunday; Python 0 = Monday
            0x07: now.tm_mday,
            0x08: now.tm_mon,
            0x09: now.tm_year % 100,
            CENTURY: now.tm_year // 100,
        }

    def _encode(self, index: int, value: int) -> int:
        reg_b = self._cmos[REG_B]
        pm = 0
        if index == 0x04 and not reg_b & REG_B_24H:
            pm = 0x80 if value >= 12 else 0
            value = value % 12 or 12
        encoded = value if reg_b & REG_B_BINARY else _bcd(value)
        return encoded | pm
