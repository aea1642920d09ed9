"""virtio-rng: buffers are filled from the injected source, within a bound."""

from __future__ import annotations

import pytest
from test_virtio_driver import VirtioDriver

from axdevice.virtio import MAX_RNG_REQUEST, DeviceStatus, VirtioRng, VirtioRngState
from axdevice.virtio import mmio as m
from axdevice.virtio.serialize import from_dict, to_dict


def counting_source(n: int) -> bytes:
    return bytes(i & 0xFF for i in range(n))


def test_fills_writable_buffers() -> None:
    driver = VirtioDriver(VirtioRng(counting_source))
    assert driver.read(m.DEVICE_ID) == 4 and driver.read(m.CONFIG) == 0
    driver.init()
    _, (a, b) = driver.post(0, writable=[3, 5])
    driver.kick(0)
    assert driver.used(0) == [(0, 8)]
    assert driver.memory.read(a, 3) + driver.memory.read(b, 5) == bytes(range(8))
    assert driver.device.bytes_served == 8


def test_each_request_is_bounded() -> None:
    asked: list[int] = []

    def source(n: int) -> bytes:
        asked.append(n)
        return bytes(n)

    driver = VirtioDriver(VirtioRng(source))
    driver.init()
    driver.post(0, writable=[MAX_RNG_REQUEST + 4096])
    driver.kick(0)
    assert asked == [MAX_RNG_REQUEST]
    assert driver.used(0) == [(0, MAX_RNG_REQUEST)]


@pytest.mark.parametrize("source", [lambda n: 1 / 0, lambda n: b"\x01\x02"])
def test_failing_or_short_source(source) -> None:
    driver = VirtioDriver(VirtioRng(source))
    driver.init()
    driver.post(0, writable=[16])
    driver.kick(0)
    ((_, used),) = driver.used(0)
    assert used in (0, 2) and driver.device.source_failures == 1
    assert not driver.status & DeviceStatus.DEVICE_NEEDS_RESET


def test_readable_only_chain_gets_nothing() -> None:
    driver = VirtioDriver(VirtioRng(counting_source))
    driver.init()
    driver.post(0, [b"abc"])
    driver.kick(0)
    assert driver.used(0) == [(0, 0)]


def test_state_round_trip() -> None:
    device = VirtioRng(counting_source)
    device.bytes_served = 9
    saved = from_dict(VirtioRngState, to_dict(device.state()))
    assert VirtioRng.from_state(saved, counting_source).state() == VirtioRngState(9, 0)
