"""virtio-console: output to the sink, input into posted buffers, bounded both ways."""

from __future__ import annotations

import pytest
from test_virtio_driver import VirtioDriver

from axaddrspace import AccessWidth
from axdevice.virtio import DeviceStatus, VirtioConsole, VirtioConsoleState
from axdevice.virtio import mmio as m
from axdevice.virtio.console import MAX_SINK_WRITE
from axdevice.virtio.console.device import RECEIVEQ, TRANSMITQ
from axdevice.virtio.serialize import from_dict, to_dict


def start(output=None, on_rx_buffers=None) -> VirtioDriver:
    driver = VirtioDriver(VirtioConsole(output, on_rx_buffers))
    driver.init()
    return driver


def test_identity_and_empty_config() -> None:
    driver = VirtioDriver(VirtioConsole())
    assert driver.read(m.DEVICE_ID) == 3
    assert [driver.config(i, AccessWidth.DWORD) for i in (0, 4, 8)] == [0, 0, 0]


def test_output_reaches_the_sink() -> None:
    sent: list[bytes] = []
    driver = start(sent.append)
    driver.post(TRANSMITQ, [b"hello ", b"world\n"])
    driver.post(TRANSMITQ, [b"again"], indirect=True)
    driver.kick(TRANSMITQ)
    assert sent == [b"hello world\n", b"again"]
    assert [used for _, used in driver.used(TRANSMITQ)] == [0, 0]
    assert driver.irq.level and driver.device.bytes_sent == 17


def test_large_output_is_handed_over_in_bounded_pieces() -> None:
    sent: list[bytes] = []
    driver = start(sent.append)
    driver.post(TRANSMITQ, [bytes(MAX_SINK_WRITE + 10)])
    driver.kick(TRANSMITQ)
    assert [len(piece) for piece in sent] == [MAX_SINK_WRITE, 10]


def test_failing_sink_loses_output_but_not_the_device() -> None:
    def sink(data: bytes) -> None:
        raise OSError("console closed")

    driver = start(sink)
    driver.post(TRANSMITQ, [b"lost"])
    driver.kick(TRANSMITQ)
    assert driver.device.lost_output_bytes == 4
    assert len(driver.used(TRANSMITQ)) == 1
    assert not driver.status & DeviceStatus.DEVICE_NEEDS_RESET


def test_input_fills_posted_buffers_and_reports_what_fit() -> None:
    wakeups: list[int] = []
    driver = start(on_rx_buffers=lambda: wakeups.append(1))
    console = driver.device
    assert console.push_input(b"early") == 0  # no buffers yet
    _, (a,) = driver.post(RECEIVEQ, writable=[4])
    _, (b,) = driver.post(RECEIVEQ, writable=[3])
    driver.kick(RECEIVEQ)
    assert wakeups == [1]
    assert console.push_input(b"abcdefghij") == 7
    assert driver.memory.read(a, 4) == b"abcd" and driver.memory.read(b, 3) == b"efg"
    assert sorted(used for _, used in driver.used(RECEIVEQ)) == [3, 4]
    assert driver.irq.level
    assert console.push_input(b"hij") == 0


def test_input_consumes_at_most_one_queue_of_chains_per_call() -> None:
    driver = VirtioDriver(VirtioConsole())
    driver.init(queue_size=4)
    for _ in range(4):
        driver.post(RECEIVEQ, writable=[0])  # useless buffers
    assert driver.device.push_input(b"data") == 0
    assert len(driver.used(RECEIVEQ)) == 4


def test_input_into_a_broken_ring_needs_reset() -> None:
    driver = start()
    q = driver.queues[RECEIVEQ]
    driver.write_desc(q.desc, 0, 0x1000, 8, 2)  # writable buffer outside RAM
    driver.make_available(RECEIVEQ, 0)
    assert driver.device.push_input(b"x") == 0
    assert driver.status & DeviceStatus.DEVICE_NEEDS_RESET
    assert driver.device.push_input(b"x") == 0


def test_failing_wakeup_hook_is_ignored() -> None:
    def hook() -> None:
        raise RuntimeError("vmm hook")

    driver = start(on_rx_buffers=hook)
    driver.post(RECEIVEQ, writable=[4])
    driver.kick(RECEIVEQ)
    assert driver.device.push_input(b"ok") == 2


def test_state_round_trip() -> None:
    driver = start(lambda data: None)
    driver.post(TRANSMITQ, [b"abc"])
    driver.kick(TRANSMITQ)
    saved = from_dict(VirtioConsoleState, to_dict(driver.device.state()))
    assert VirtioConsole.from_state(saved).state() == VirtioConsoleState(bytes_sent=3)
    saved.lost_output_bytes = -5
    with pytest.raises(ValueError):
        VirtioConsole.from_state(saved)
