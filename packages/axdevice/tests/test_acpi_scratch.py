from __future__ import annotations

import pytest

from axaddrspace import AccessWidth
from axdevice import AcpiPmControl, MmioBus, PortBus, RecordingVmControl, ScratchRegisters
from axdevice.scratch import SCRATCH_ID


def test_slp_en_with_soft_off_powers_off_with_status_0() -> None:
    control = RecordingVmControl()
    bus = PortBus()
    bus.add(AcpiPmControl(control))
    bus.write(0x604, AccessWidth.WORD, 1 << 10 | 1 << 13)  # S1 sleep: ignored
    assert control.shutdowns == []
    bus.write(0x604, AccessWidth.WORD, 0x2000)
    assert control.shutdowns == [0]
    assert bus.read(0x604, AccessWidth.WORD) & 0x2000 == 0  # SLP_EN reads 0


def test_scratch_registers_read_back_every_width() -> None:
    bus = MmioBus()
    bus.add(ScratchRegisters(0xD000_0000, 0x1000))
    assert bus.read(0xD000_0000, AccessWidth.QWORD) == SCRATCH_ID
    bus.write(0xD000_0000, AccessWidth.QWORD, 0)
    assert bus.read(0xD000_0000, AccessWidth.QWORD) == SCRATCH_ID  # the id is read-only
    for offset, width, value in [(8, AccessWidth.QWORD, 0x1122334455667788), (0x10, AccessWidth.DWORD, 0xCAFEBABE),
                                 (0x16, AccessWidth.WORD, 0xBEEF), (0xFFF, AccessWidth.BYTE, 0x5A)]:
        bus.write(0xD000_0000 + offset, width, value)
        assert bus.read(0xD000_0000 + offset, width) == value
    assert bus.read(0xD000_0008, AccessWidth.BYTE) == 0x88  # little-endian bytes
    assert bus.read(0xD000_0FFC, AccessWidth.QWORD) == 0xFFFF_FFFF_FFFF_FFFF  # straddles the end: unhandled


def test_scratch_window_is_bounded() -> None:
    with pytest.raises(ValueError):
        ScratchRegisters(0, 1 << 30)
