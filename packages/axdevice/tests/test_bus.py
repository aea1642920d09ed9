import logging

import pytest

from axaddrspace import AccessWidth, AddrRange, InclusiveRange, PortRange, SysRegRange
from axdevice import BaseDeviceOps, DeviceOverlapError, EmuDeviceType, MmioBus, PortBus, SysRegBus


class Recorder(BaseDeviceOps):
    """Answers reads with a fixed value and records every access."""

    def __init__(self, rng: AddrRange | InclusiveRange, value: int = 0x1234_5678_9ABC_DEF0) -> None:
        self._rng = rng
        self.value = value
        self.reads: list[tuple[int, AccessWidth]] = []
        self.writes: list[tuple[int, AccessWidth, int]] = []

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Dummy

    @property
    def address_range(self) -> AddrRange | InclusiveRange:
        return self._rng

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        self.reads.append((addr, width))
        return self.value

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.writes.append((addr, width, value))


class Broken(Recorder):
    def handle_read(self, addr: int, width: AccessWidth) -> int:
        raise RuntimeError("device bug")

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        raise KeyError("device bug")


def mmio(start: int, size: int) -> Recorder:
    return Recorder(AddrRange.from_start_size(start, size))


def test_find_by_sorted_ranges() -> None:
    bus = MmioBus()
    a, b, c = mmio(0x3000, 0x100), mmio(0x1000, 0x1000), mmio(0x2000, 0x10)
    for device in (a, b, c):
        bus.add(device)
    assert bus.devices == (b, c, a)
    assert bus.find(0x0FFF) is None
    assert bus.find(0x1000) is b
    assert bus.find(0x1FFF) is b
    assert bus.find(0x2000) is c
    assert bus.find(0x200F) is c
    assert bus.find(0x2010) is None
    assert bus.find(0x30FF) is a
    assert bus.find(0x3100) is None


def test_dispatch_passes_absolute_address_and_masks() -> None:
    bus = MmioBus()
    dev = mmio(0x1000, 0x100)
    bus.add(dev)
    assert bus.read(0x1010, AccessWidth.WORD) == 0xDEF0
    assert bus.read(0x1010, AccessWidth.QWORD) == 0x1234_5678_9ABC_DEF0
    bus.write(0x1020, AccessWidth.BYTE, 0x1FF)
    assert dev.reads == [(0x1010, AccessWidth.WORD), (0x1010, AccessWidth.QWORD)]
    assert dev.writes == [(0x1020, AccessWidth.BYTE, 0xFF)]
    assert bus.unhandled_reads == bus.unhandled_writes == bus.device_errors == 0


@pytest.mark.parametrize(
    "start,size", [(0x1000, 0x100), (0x0F00, 0x101), (0x10FF, 1), (0x0800, 0x1000), (0x1080, 0x10)]
)
def test_overlap_rejected_naming_both(start: int, size: int) -> None:
    bus = MmioBus()
    first = mmio(0x1000, 0x100)
    bus.add(first)
    with pytest.raises(DeviceOverlapError) as info:
        bus.add(mmio(start, size))
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "[0x1000, 0x1100)" in message
    assert repr(AddrRange.from_start_size(start, size)) in message
    assert message.count("Recorder") == 2
    assert bus.devices == (first,)


def test_adjacent_ranges_do_not_overlap() -> None:
    bus = MmioBus()
    bus.add(mmio(0x1000, 0x100))
    bus.add(mmio(0x1100, 0x100))
    bus.add(mmio(0x0F00, 0x100))
    assert len(bus.devices) == 3

    ports = PortBus()
    ports.add(Recorder(PortRange(0x60, 0x64)))
    ports.add(Recorder(PortRange(0x65, 0x65)))
    with pytest.raises(DeviceOverlapError):
        ports.add(Recorder(PortRange(0x64, 0x64)))  # inclusive end is a member


def test_wrong_range_kind_and_empty_range_rejected() -> None:
    with pytest.raises(TypeError):
        MmioBus().add(Recorder(PortRange(0x3F8, 0x3FF)))
    with pytest.raises(TypeError):
        PortBus().add(mmio(0x1000, 8))
    with pytest.raises(ValueError):
        MmioBus().add(mmio(0x1000, 0))


def test_remove() -> None:
    bus = MmioBus()
    dev = mmio(0x1000, 0x100)
    bus.add(dev)
    bus.remove(dev)
    assert bus.devices == ()
    assert bus.find(0x1000) is None
    with pytest.raises(ValueError):
        bus.remove(dev)
    bus.add(mmio(0x1000, 0x100))  # the space is free again


@pytest.mark.parametrize("width", list(AccessWidth))
def test_unhandled_read_all_ones_and_counted(width: AccessWidth) -> None:
    bus = MmioBus()
    bus.add(mmio(0x1000, 0x100))
    assert bus.read(0x2000, width) == (1 << (8 * int(width))) - 1
    bus.write(0x2000, width, 0)
    bus.write(0x10, width, 0)
    assert bus.unhandled_reads == 1
    assert bus.unhandled_writes == 2


@pytest.mark.parametrize("width", list(AccessWidth))
def test_unhandled_on_port_and_sysreg_buses(width: AccessWidth) -> None:
    for bus in (PortBus(), SysRegBus()):
        assert bus.read(0x80, width) == width.mask
        bus.write(0x80, width, 1)
        assert (bus.unhandled_reads, bus.unhandled_writes) == (1, 1)


def test_unhandled_logged_once_per_address(caplog: pytest.LogCaptureFixture) -> None:
    bus = PortBus()
    with caplog.at_level(logging.WARNING, logger="axdevice.bus"):
        for _ in range(5):
            bus.read(0x80, AccessWidth.BYTE)
            bus.write(0x80, AccessWidth.BYTE, 0)
        bus.read(0x81, AccessWidth.BYTE)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "0x80" in messages[0] and "0x81" in messages[1]
    assert bus.unhandled_reads == 6 and bus.unhandled_writes == 5


def test_unhandled_logging_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    from axdevice.bus import MAX_LOGGED_ADDRESSES

    bus = MmioBus()
    with caplog.at_level(logging.WARNING, logger="axdevice.bus"):
        for addr in range(MAX_LOGGED_ADDRESSES + 100):
            bus.read(addr * 8, AccessWidth.QWORD)
    assert bus.unhandled_reads == MAX_LOGGED_ADDRESSES + 100
    assert len(caplog.records) == MAX_LOGGED_ADDRESSES + 1
    assert "no longer logging" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("width", [AccessWidth.WORD, AccessWidth.DWORD, AccessWidth.QWORD])
def test_access_straddling_device_end_is_unhandled(width: AccessWidth) -> None:
    bus = MmioBus()
    dev = mmio(0x1000, 0x10)
    bus.add(dev)
    last = 0x1010 - int(width)
    assert bus.read(last, width) == dev.value & width.mask  # wholly inside: handled
    assert bus.read(last + 1, width) == width.mask
    bus.write(last + 1, width, 0)
    assert dev.reads == [(last, width)]
    assert dev.writes == []
    assert (bus.unhandled_reads, bus.unhandled_writes) == (1, 1)


def test_straddle_on_inclusive_bus() -> None:
    bus = PortBus()
    dev = Recorder(PortRange(0x3F8, 0x3FF), value=0xAB)
    bus.add(dev)
    assert bus.read(0x3FE, AccessWidth.WORD) == 0xAB
    assert bus.read(0x3FF, AccessWidth.WORD) == 0xFFFF
    assert bus.read(0x3FF, AccessWidth.BYTE) == 0xAB
    assert bus.unhandled_reads == 1


def test_raising_device_does_not_escape(caplog: pytest.LogCaptureFixture) -> None:
    bus = MmioBus()
    broken = Broken(AddrRange.from_start_size(0x1000, 0x100))
    fine = mmio(0x2000, 0x100)
    bus.add(broken)
    bus.add(fine)
    with caplog.at_level(logging.WARNING, logger="axdevice.bus"):
        assert bus.read(0x1000, AccessWidth.DWORD) == 0xFFFF_FFFF
        assert bus.read(0x1004, AccessWidth.BYTE) == 0xFF
        bus.write(0x1000, AccessWidth.DWORD, 5)
    assert bus.device_errors == 3
    assert bus.unhandled_reads == bus.unhandled_writes == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and "Broken" in errors[0].getMessage()
    assert bus.read(0x2000, AccessWidth.BYTE) == 0xF0  # the rest of the bus still works


def test_device_errors_are_counted_per_device_and_survive_removal() -> None:
    bus = PortBus()
    first, second = Broken(PortRange(0x60, 0x64)), Broken(PortRange(0x70, 0x71))
    fine = Recorder(PortRange(0x80, 0x80))
    for device in (first, second, fine):
        bus.add(device)
    bus.read(0x60, AccessWidth.BYTE)
    bus.write(0x64, AccessWidth.BYTE, 1)
    bus.read(0x70, AccessWidth.WORD)
    bus.read(0x80, AccessWidth.BYTE)
    bus.remove(first)
    assert bus.device_error_counts == {
        f"port bus: Broken (Dummy) at {PortRange(0x60, 0x64)!r}": 2,
        f"port bus: Broken (Dummy) at {PortRange(0x70, 0x71)!r}": 1,
    }
    assert bus.device_errors == 3


def test_device_returning_garbage_is_a_device_error() -> None:
    bus = SysRegBus()
    dev = Recorder(SysRegRange(0x300, 0x3FF), value=None)  # type: ignore[arg-type]
    bus.add(dev)
    assert bus.read(0x305, AccessWidth.QWORD) == AccessWidth.QWORD.mask
    assert bus.device_errors == 1


def test_many_devices_lookup() -> None:
    bus = PortBus()
    devices = [Recorder(PortRange(base, base + 3), value=base) for base in range(0x1000, 0, -8)]
    for device in devices:
        bus.add(device)
    for device in devices:
        base = device.address_range.start
        assert bus.find(base + 3) is device
        assert bus.find(base + 4) is None
        assert bus.read(base + 2, AccessWidth.BYTE) == base & 0xFF
