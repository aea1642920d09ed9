from __future__ import annotations

import time

from axaddrspace import AccessWidth
from axdevice import CmosRtc, PciConfigPorts, PortBus

B = AccessWidth.BYTE
NOON = time.struct_time((2026, 11, 22, 13, 45, 7, 6, 326, 0))


def cmos(rtc: CmosRtc, index: int) -> int:
    rtc.handle_write(0x70, B, index | 0x80)  # NMI-disable bit set, as Linux does
    return rtc.handle_read(0x71, B)


def test_time_registers_are_bcd_by_default() -> None:
    rtc = CmosRtc(lambda: NOON)
    assert [cmos(rtc, i) for i in (0, 2, 4, 7, 8, 9, 0x32)] == [0x07, 0x45, 0x13, 0x22, 0x11, 0x26, 0x20]
    assert cmos(rtc, 0x0A) & 0x80 == 0  # no update in progress
    assert cmos(rtc, 0x0D) == 0x80  # valid RAM and time


def test_binary_and_12_hour_modes() -> None:
    rtc = CmosRtc(lambda: NOON)
    rtc.handle_write(0x70, B, 0x0B)
    rtc.handle_write(0x71, B, 0x04)  # binary, 12-hour
    assert cmos(rtc, 0) == 7 and cmos(rtc, 2) == 45
    assert cmos(rtc, 4) == 0x80 | 1  # 1 PM


def test_cmos_storage_and_read_only_status() -> None:
    rtc = CmosRtc(lambda: NOON)
    rtc.handle_write(0x70, B, 0x40)
    rtc.handle_write(0x71, B, 0x5A)
    assert cmos(rtc, 0x40) == 0x5A
    rtc.handle_write(0x70, B, 0x0D)
    rtc.handle_write(0x71, B, 0)
    assert cmos(rtc, 0x0D) == 0x80


def test_pci_type1_probe_and_no_devices() -> None:
    bus = PortBus()
    bus.add(PciConfigPorts())
    bus.write(0xCF8, AccessWidth.DWORD, 0x8000_0000)
    assert bus.read(0xCF8, AccessWidth.DWORD) == 0x8000_0000
    bus.write(0xCF8, AccessWidth.DWORD, 0x8000_0803)
    assert bus.read(0xCF8, AccessWidth.DWORD) == 0x8000_0800  # low two bits read 0
    assert bus.read(0xCFC, AccessWidth.DWORD) == 0xFFFF_FFFF
    assert bus.read(0xCFE, AccessWidth.WORD) == 0xFFFF
    assert bus.unhandled_reads == 0
