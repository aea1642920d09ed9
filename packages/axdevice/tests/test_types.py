import pytest

from axdevice import EmuDeviceType
from axdevice.types import parse


def test_axvisor_values_are_kept() -> None:
    expected = {
        "Dummy": 0x0,
        "InterruptController": 0x1,
        "Console": 0x2,
        "IVCChannel": 0xA,
        "GPPTRedistributor": 0x20,
        "GPPTDistributor": 0x21,
        "GPPTITS": 0x22,
        "PPPTGlobal": 0x30,
        "VirtioBlk": 0xE1,
        "VirtioNet": 0xE2,
        "VirtioConsole": 0xE3,
    }
    for name, value in expected.items():
        assert EmuDeviceType[name] == value


def test_our_values_and_uniqueness() -> None:
    assert EmuDeviceType.DebugExit == 0x80
    assert EmuDeviceType.ResetControl == 0x81
    assert EmuDeviceType.PowerControl == 0x82
    assert EmuDeviceType.Rtc == 0x83
    assert EmuDeviceType.PciHost == 0x84
    assert EmuDeviceType.Timer == 0x85
    assert EmuDeviceType.VirtioRng == 0xE4
    assert len({m.value for m in EmuDeviceType}) == len(EmuDeviceType)


def test_parse_accepts_codes_and_names() -> None:
    assert EmuDeviceType.parse(0x2) is EmuDeviceType.Console
    assert parse(0xE1) is EmuDeviceType.VirtioBlk
    assert EmuDeviceType.parse("virtioblk") is EmuDeviceType.VirtioBlk
    assert EmuDeviceType.parse("Console") is EmuDeviceType.Console


@pytest.mark.parametrize("bad", [0x7, 0xFF, -1, "uart", True])
def test_parse_rejects_unknown_naming_value_and_known(bad: object) -> None:
    with pytest.raises(ValueError) as info:
        EmuDeviceType.parse(bad)  # type: ignore[arg-type]
    message = str(info.value)
    shown = f"{bad:#x}" if isinstance(bad, int) and not isinstance(bad, bool) else repr(bad)
    assert shown in message
    assert "Console=0x2" in message and "VirtioRng=0xe4" in message
