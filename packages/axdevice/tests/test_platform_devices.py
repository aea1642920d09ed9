import pytest

from axaddrspace import AccessWidth, AddrRange, PortRange
from axdevice import I8042, DebugExit, EmuDeviceType, MmioBus, PortBus, RecordingVmControl, SifiveTest

B, W, D, Q = AccessWidth.BYTE, AccessWidth.WORD, AccessWidth.DWORD, AccessWidth.QWORD


@pytest.mark.parametrize("value,code", [(0, 1), (1, 3), (0x10, 0x21), (0x7F, 0xFF), (0xFF, 0x1FF)])
def test_debug_exit_status(value: int, code: int) -> None:
    control = RecordingVmControl()
    bus = PortBus()
    bus.add(DebugExit(control))
    bus.write(0xF4, B, value)
    assert control.shutdowns == [code]
    assert control.resets == 0


def test_debug_exit_wider_iosize_and_reads() -> None:
    control = RecordingVmControl()
    device = DebugExit(control, port=0x501, width=2)
    assert device.emu_type is EmuDeviceType.DebugExit
    assert device.address_range == PortRange(0x501, 0x502)
    bus = PortBus()
    bus.add(device)
    assert bus.read(0x501, W) == 0xFFFF
    assert bus.read(0x501, B) == 0xFF
    bus.write(0x501, W, 0x1234)
    assert control.shutdowns == [0x2469]
    with pytest.raises(ValueError):
        DebugExit(control, width=3)


def test_i8042_reset_and_status() -> None:
    control = RecordingVmControl()
    device = I8042(control)
    assert device.emu_type is EmuDeviceType.ResetControl
    assert device.address_range == PortRange(0x60, 0x64)
    bus = PortBus()
    bus.add(device)
    assert bus.read(0x64, B) == 0x04  # buffers empty, system flag
    assert bus.read(0x60, B) == 0
    bus.write(0x64, B, 0xAA)  # self-test command: ignored
    bus.write(0x60, B, 0xFE)  # data byte, not a command
    bus.write(0x61, B, 0xFE)
    assert control.resets == 0
    bus.write(0x64, B, 0xFE)
    assert control.resets == 1
    assert control.shutdowns == []
    assert bus.read(0x61, B) == 0xFF


@pytest.mark.parametrize("width", [W, D])
def test_sifive_test_pass_reset_fail(width: AccessWidth) -> None:
    control = RecordingVmControl()
    device = SifiveTest(control)
    assert device.emu_type is EmuDeviceType.PowerControl
    assert device.address_range == AddrRange(0x100000, 0x101000)
    bus = MmioBus()
    bus.add(device)
    bus.write(0x100000, width, 0x5555)
    bus.write(0x100000, width, 0x7777)
    assert control.shutdowns == [0]
    assert control.resets == 1


def test_sifive_test_fail_code_and_ignored_values() -> None:
    control = RecordingVmControl()
    bus = MmioBus()
    bus.add(SifiveTest(control))
    bus.write(0x100000, D, (42 << 16) | 0x3333)
    bus.write(0x100000, D, (0xFFFF << 16) | 0x3333)
    bus.write(0x100000, W, 0x3333)  # OpenSBI's FAIL: a 16-bit write, code 0, still a failure
    assert control.shutdowns == [42, 0xFFFF, 1]
    bus.write(0x100000, D, 0x1234)
    bus.write(0x100000, B, 0x55)  # byte writes are not valid for the finisher
    bus.write(0x100004, D, 0x5555)  # only offset 0 acts
    bus.write(0x100000, Q, 0x5555)
    assert control.shutdowns == [42, 0xFFFF, 1]
    assert control.resets == 0
    assert bus.read(0x100000, D) == 0
    assert bus.read(0x100FFC, D) == 0


def test_sifive_test_other_base() -> None:
    control = RecordingVmControl()
    device = SifiveTest(control, base=0x5000, length=0x10)
    device.handle_write(0x5000, D, 0x5555)
    assert control.shutdowns == [0]
