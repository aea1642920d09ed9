"""virtio-net: frames out through the backend, frames in through posted buffers, drops counted."""

from __future__ import annotations

import struct

import pytest
from test_virtio_driver import VirtioDriver

from axaddrspace import AccessWidth
from axdevice.virtio import (
    MAX_FRAME_SIZE,
    DeviceStatus,
    RecordingNetBackend,
    RxResult,
    VirtioNet,
    VirtioNetState,
)
from axdevice.virtio import mmio as m
from axdevice.virtio.net import device as net
from axdevice.virtio.net.device import RECEIVEQ, TRANSMITQ
from axdevice.virtio.serialize import from_dict, to_dict

HDR = bytes(12)
FRAME = bytes.fromhex("ffffffffffff525400123456 0806") + b"arp payload"


def start(backend=None, **kwargs) -> VirtioDriver:
    driver = VirtioDriver(VirtioNet(backend or RecordingNetBackend(), **kwargs))
    driver.init()
    return driver


def test_identity_features_and_config() -> None:
    driver = VirtioDriver(VirtioNet(RecordingNetBackend(), b"\x02\x00\x00\xaa\xbb\xcc"))
    assert driver.read(m.DEVICE_ID) == 1
    features = driver.device_features()
    assert features & (1 << net.VIRTIO_NET_F_MAC) and features & (1 << net.VIRTIO_NET_F_STATUS)
    assert not features & ((1 << 0) | (1 << 15) | (1 << 17))  # no CSUM, MRG_RXBUF, CTRL_VQ
    assert bytes(driver.config(i, AccessWidth.BYTE) for i in range(6)) == b"\x02\x00\x00\xaa\xbb\xcc"
    assert driver.config(6, AccessWidth.WORD) == net.VIRTIO_NET_S_LINK_UP
    with pytest.raises(ValueError):
        VirtioNet(RecordingNetBackend(), b"\x01\x00\x00\x00\x00\x00")  # multicast


def test_transmit_strips_the_header() -> None:
    backend = RecordingNetBackend()
    driver = start(backend)
    driver.post(TRANSMITQ, [HDR + FRAME[:6], FRAME[6:]])
    driver.post(TRANSMITQ, [HDR[:4], HDR[4:] + FRAME], indirect=True)
    driver.kick(TRANSMITQ)
    assert backend.frames == [FRAME, FRAME]
    assert [used for _, used in driver.used(TRANSMITQ)] == [0, 0]
    assert driver.device.tx_frames == 2 and driver.irq.level


def test_oversized_or_failed_transmit_is_counted() -> None:
    class Down:
        def send(self, frame: bytes) -> None:
            raise OSError("tap gone")

    driver = start(Down())
    driver.post(TRANSMITQ, [HDR + bytes(MAX_FRAME_SIZE + 1)])
    driver.post(TRANSMITQ, [HDR + FRAME])
    driver.kick(TRANSMITQ)
    assert (driver.device.tx_dropped, driver.device.tx_errors) == (1, 1)
    assert len(driver.used(TRANSMITQ)) == 2
    assert not driver.status & DeviceStatus.DEVICE_NEEDS_RESET


def test_transmit_without_header_needs_reset() -> None:
    driver = start()
    driver.post(TRANSMITQ, [b"short"])
    driver.kick(TRANSMITQ)
    assert driver.status & DeviceStatus.DEVICE_NEEDS_RESET


def test_receive_writes_header_and_frame() -> None:
    driver = start()
    _, (a, b) = driver.post(RECEIVEQ, writable=[10, 1526])
    driver.kick(RECEIVEQ)
    assert driver.device.receive_frame(FRAME) is RxResult.DELIVERED
    assert driver.used(RECEIVEQ) == [(0, 12 + len(FRAME))]
    data = driver.memory.read(a, 10) + driver.memory.read(b, 2 + len(FRAME))
    assert struct.unpack("<BBHHHHH", data[:12]) == (0, 0, 0, 0, 0, 0, 1)
    assert data[12:] == FRAME and driver.irq.level and driver.device.rx_frames == 1


def test_receive_drops_without_buffer_too_big_or_link_down() -> None:
    driver = start()
    rx = driver.device
    assert rx.receive_frame(FRAME) is RxResult.NO_BUFFER  # nothing posted: not taken, not counted
    assert rx.rx_dropped == 0
    driver.post(RECEIVEQ, writable=[20])
    assert rx.receive_frame(bytes(MAX_FRAME_SIZE + 1)) is RxResult.DROPPED  # never taken a buffer
    assert rx.receive_frame(FRAME) is RxResult.DROPPED  # buffer too small: returned empty
    assert driver.used(RECEIVEQ) == [(0, 0)]
    driver.post(RECEIVEQ, writable=[1600])
    rx.set_link(False)
    assert rx.receive_frame(FRAME) is RxResult.NO_BUFFER  # the buffer stays the driver's
    rx.set_link(True)
    assert rx.receive_frame(FRAME) is RxResult.DELIVERED
    assert rx.rx_dropped == 2 and rx.rx_frames == 1


def test_receive_before_driver_ok_or_after_reset() -> None:
    driver = VirtioDriver(VirtioNet(RecordingNetBackend()))
    assert driver.device.receive_frame(FRAME) is RxResult.NO_BUFFER
    driver.init()
    driver.post(RECEIVEQ, writable=[1600])
    driver.write(m.STATUS, 0)
    assert driver.device.receive_frame(FRAME) is RxResult.NO_BUFFER
    assert driver.device.rx_dropped == 0


def test_receive_into_broken_ring_needs_reset() -> None:
    driver = start()
    q = driver.queues[RECEIVEQ]
    driver.write_desc(q.desc, 0, 0, 64, 2)
    driver.make_available(RECEIVEQ, 0)
    assert driver.device.receive_frame(FRAME) is RxResult.DROPPED
    assert driver.status & DeviceStatus.DEVICE_NEEDS_RESET and driver.device.rx_dropped == 1


def test_loopback_between_two_devices() -> None:
    wire = RecordingNetBackend()
    a, b = start(wire), start()
    b.post(RECEIVEQ, writable=[1600])
    a.post(TRANSMITQ, [HDR + FRAME])
    a.kick(TRANSMITQ)
    for frame in wire.frames:
        assert b.device.receive_frame(frame) is RxResult.DELIVERED
    ((_, used),) = b.used(RECEIVEQ)
    assert used == 12 + len(FRAME)


def test_state_round_trip() -> None:
    device = VirtioNet(RecordingNetBackend(), b"\x02\x01\x02\x03\x04\x05")
    device.set_link(False)
    saved = from_dict(VirtioNetState, to_dict(device.state()))
    again = VirtioNet.from_state(saved, RecordingNetBackend())
    assert again.state() == device.state() and again.mac == b"\x02\x01\x02\x03\x04\x05"
    saved.mac = b"\x00"
    with pytest.raises(ValueError, match="MAC"):
        VirtioNet.from_state(saved, RecordingNetBackend())
