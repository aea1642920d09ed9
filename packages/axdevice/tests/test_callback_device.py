"""CallbackDevice: a device from two functions, on a bus, with a script's mistakes contained."""

from __future__ import annotations

import pytest

from axaddrspace import AccessWidth
from axdevice import CallbackDevice, MmioBus


def test_reads_and_writes_reach_the_functions_with_offsets_and_sizes() -> None:
    written: list[tuple[int, int, int]] = []
    device = CallbackDevice(
        0x1000_0000,
        0x100,
        read=lambda offset, size: offset * 16 + size,
        write=lambda offset, size, value: written.append((offset, size, value)),
    )
    bus = MmioBus()
    bus.add(device)
    assert bus.read(0x1000_0008, AccessWidth.DWORD) == 8 * 16 + 4
    bus.write(0x1000_0010, AccessWidth.WORD, 0xBEEF)
    assert written == [(0x10, 2, 0xBEEF)]


def test_without_functions_reads_are_zero_and_writes_are_ignored() -> None:
    bus = MmioBus()
    bus.add(CallbackDevice(0x2000, 0x10))
    bus.write(0x2000, AccessWidth.BYTE, 7)
    assert bus.read(0x2000, AccessWidth.QWORD) == 0


@pytest.mark.parametrize("bad", [None, "7", -1, 1 << 32, 2.5, True])
def test_a_bad_read_result_is_the_devices_error_not_the_vmms(bad: object) -> None:
    bus = MmioBus()
    bus.add(CallbackDevice(0x3000, 0x10, read=lambda offset, size: bad, name="probe"))  # type: ignore[arg-type,return-value]
    assert bus.read(0x3000, AccessWidth.DWORD) == AccessWidth.DWORD.mask
    assert bus.device_errors == 1


def test_a_function_that_raises_is_counted_and_the_bus_goes_on() -> None:
    def explode(offset: int, size: int, value: int) -> None:
        raise RuntimeError("script bug")

    bus = MmioBus()
    bus.add(CallbackDevice(0x4000, 0x10, write=explode))
    bus.write(0x4000, AccessWidth.DWORD, 1)
    assert bus.device_errors == 1


def test_construction_checks_size_and_callables() -> None:
    with pytest.raises(ValueError, match="size"):
        CallbackDevice(0, 0)
    with pytest.raises(TypeError, match="read must be a function"):
        CallbackDevice(0, 0x10, read=42)  # type: ignore[arg-type]
