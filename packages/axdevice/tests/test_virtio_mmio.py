"""The virtio-mmio transport: registers, the feature handshake, status order, interrupts, reset."""

from __future__ import annotations

import struct

import pytest
from test_virtio_driver import ALL_TRANSPORT, MMIO_BASE, RAM_BASE, VirtioDriver, make_memory

from axaddrspace import AccessWidth, AddrRange
from axdevice import EmuDeviceType, MmioBus, RecordingIrqLine
from axdevice.virtio import (
    DeviceStatus,
    RecordingNetBackend,
    VirtioMmioState,
    VirtioMmioTransport,
    VirtioNet,
    VirtioRng,
)
from axdevice.virtio import mmio as m
from axdevice.virtio.constants import VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1, bit
from axdevice.virtio.serialize import from_dict, to_dict

S = DeviceStatus


def rng_driver() -> VirtioDriver:
    return VirtioDriver(VirtioRng(lambda n: b"\xab" * n))


def test_identification_registers() -> None:
    driver = VirtioDriver(VirtioNet(RecordingNetBackend()))
    assert driver.read(m.MAGIC) == 0x74726976
    assert driver.read(m.VERSION_REG) == 2
    assert driver.read(m.DEVICE_ID) == 1
    assert driver.read(m.VENDOR) == 0x554D4551
    for sel, expected in ((0, 256), (1, 256), (2, 0), (0xFFFF_FFFF, 0)):
        driver.write(m.QUEUE_SEL, sel)
        assert driver.read(m.QUEUE_NUM_MAX) == expected
    assert driver.transport.emu_type == EmuDeviceType.VirtioNet
    assert driver.transport.address_range == AddrRange(MMIO_BASE, MMIO_BASE + 0x1000)


def test_offered_features_include_version_1_and_read_in_words() -> None:
    driver = rng_driver()
    assert driver.device_features() == ALL_TRANSPORT
    driver.write(m.DEVICE_FEATURES_SEL, 2)
    assert driver.read(m.DEVICE_FEATURES) == 0
    driver.write(m.DEVICE_FEATURES_SEL, 0xFFFF_FFFF)
    assert driver.read(m.DEVICE_FEATURES) == 0


@pytest.mark.parametrize(
    "features",
    [0, ALL_TRANSPORT & ~bit(VIRTIO_F_VERSION_1), ALL_TRANSPORT | bit(0), ALL_TRANSPORT | bit(63)],
)
def test_features_ok_refused_for_bad_feature_sets(features: int) -> None:
    driver = rng_driver()
    assert not driver.negotiate(features)
    assert driver.status == S.ACKNOWLEDGE | S.DRIVER
    assert driver.transport.refused_status_writes == 1


def test_features_beyond_64_bits_are_refused() -> None:
    driver = rng_driver()
    driver.write(m.STATUS, S.ACKNOWLEDGE | S.DRIVER)
    driver.write(m.DRIVER_FEATURES_SEL, 1)
    driver.write(m.DRIVER_FEATURES, 1)  # VERSION_1
    driver.write(m.DRIVER_FEATURES_SEL, 3)
    driver.write(m.DRIVER_FEATURES, 1)
    driver.write(m.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK)
    assert not driver.status & S.FEATURES_OK


def test_minimal_feature_set_and_frozen_features() -> None:
    driver = rng_driver()
    assert driver.negotiate(bit(VIRTIO_F_VERSION_1))
    driver.write(m.DRIVER_FEATURES_SEL, 0)
    driver.write(m.DRIVER_FEATURES, 0xFFFF_FFFF)  # after FEATURES_OK: dropped
    assert driver.transport.driver_features == bit(VIRTIO_F_VERSION_1)
    assert not any(q.event_idx or q.indirect for q in driver.transport.queues)


def test_status_bits_follow_the_table() -> None:
    driver = rng_driver()
    driver.write(m.STATUS, S.DRIVER)  # needs ACKNOWLEDGE
    assert driver.status == 0
    driver.write(m.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.DRIVER_OK)  # DRIVER_OK needs FEATURES_OK
    assert driver.status == S.ACKNOWLEDGE | S.DRIVER
    assert not driver.device.active
    driver.write(m.STATUS, S.ACKNOWLEDGE)  # clearing is not possible except by reset
    assert driver.status == S.ACKNOWLEDGE | S.DRIVER
    driver.write(m.STATUS, S.FAILED | S.DEVICE_NEEDS_RESET)  # NEEDS_RESET is the device's
    assert driver.status == S.ACKNOWLEDGE | S.DRIVER | S.FAILED


def test_only_aligned_32_bit_register_accesses_count() -> None:
    driver = rng_driver()
    assert driver.read(m.MAGIC, AccessWidth.BYTE) == 0
    assert driver.read(m.MAGIC, AccessWidth.QWORD) == 0
    assert driver.read(m.MAGIC + 2, AccessWidth.DWORD) == 0
    driver.write(m.STATUS, S.ACKNOWLEDGE, AccessWidth.BYTE)
    driver.write(m.STATUS + 1, S.ACKNOWLEDGE)
    assert driver.status == 0


def test_write_only_and_absent_registers() -> None:
    driver = rng_driver()
    driver.write(m.QUEUE_SEL, 0)
    for offset in (m.QUEUE_SEL, m.QUEUE_NUM, m.QUEUE_NOTIFY, m.QUEUE_DESC_LOW, m.INTERRUPT_ACK, m.QUEUE_RESET, 0xF8):
        assert driver.read(offset) == 0
    for offset in (m.SHM_LEN_LOW, m.SHM_LEN_HIGH, m.SHM_BASE_LOW, m.SHM_BASE_HIGH):
        assert driver.read(offset) == 0xFFFF_FFFF
    driver.write(m.MAGIC, 0)
    assert driver.read(m.MAGIC) == 0x74726976


def test_config_space_any_width_and_beyond_its_end() -> None:
    mac = b"\x02\x11\x22\x33\x44\x55"
    driver = VirtioDriver(VirtioNet(RecordingNetBackend(), mac))
    assert bytes(driver.config(i, AccessWidth.BYTE) for i in range(6)) == mac
    assert driver.config(6, AccessWidth.WORD) == 1  # link up
    assert driver.config(0, AccessWidth.QWORD) == int.from_bytes(mac + b"\x01\x00", "little")
    assert driver.config(0x40, AccessWidth.DWORD) == 0
    assert driver.config(0xEFC, AccessWidth.DWORD) == 0
    driver.write(m.CONFIG, 0xFF, AccessWidth.BYTE)  # read-only config: dropped
    assert driver.config(0, AccessWidth.BYTE) == 2


def test_used_buffer_interrupt_is_a_level_until_acknowledged() -> None:
    driver = rng_driver()
    driver.init()
    _, (addr,) = driver.post(0, writable=[8])
    driver.kick(0)
    assert driver.read(m.INTERRUPT_STATUS) == m.INT_USED_BUFFER and driver.irq.level
    assert driver.used(0) == [(0, 8)]
    assert driver.memory.read(addr, 8) == b"\xab" * 8
    assert driver.ack() == 1
    assert not driver.irq.level and driver.read(m.INTERRUPT_STATUS) == 0
    assert driver.irq.events == [("level", True), ("level", False)]


def test_notify_before_driver_ok_or_for_absent_queue_is_ignored() -> None:
    driver = rng_driver()
    assert driver.negotiate()
    driver.setup_queue(0)
    driver.post(0, writable=[4])
    driver.kick(0)
    assert driver.used(0) == []
    driver.write(m.STATUS, driver.status | S.DRIVER_OK)
    driver.kick(5)
    driver.kick(0xFFFF_FFFF)
    assert driver.used(0) == []
    driver.kick(0)
    assert driver.used(0) == [(0, 4)]


def test_queue_settings_are_frozen_while_ready() -> None:
    driver = rng_driver()
    driver.init()
    queue = driver.transport.queues[0]
    before = queue.state()
    driver.write(m.QUEUE_SEL, 0)
    driver.write(m.QUEUE_NUM, 4)
    driver.write(m.QUEUE_DESC_LOW, 0)
    driver.write(m.QUEUE_DESC_HIGH, 0x1234)
    assert queue.state() == before
    driver.write(m.QUEUE_READY, 0)
    assert driver.read(m.QUEUE_READY) == 0
    driver.write(m.QUEUE_NUM, 4)
    assert queue.size == 4


def test_bad_queue_layout_sets_needs_reset() -> None:
    driver = rng_driver()
    assert driver.negotiate()
    driver.write(m.QUEUE_SEL, 0)
    driver.write(m.QUEUE_NUM, 3)  # not a power of two
    driver.write(m.QUEUE_READY, 1)
    assert driver.read(m.QUEUE_READY) == 0
    assert driver.status & S.DEVICE_NEEDS_RESET
    assert not driver.irq.level  # no config interrupt before DRIVER_OK
    driver.write(m.STATUS, driver.status | S.DRIVER_OK)
    assert not driver.status & S.DRIVER_OK and not driver.device.active


def test_ring_violation_needs_reset_then_reset_recovers() -> None:
    driver = rng_driver()
    driver.init()
    q = driver.queues[0]
    driver.write_desc(q.desc, 0, RAM_BASE, 4, 1 | 2, 0)  # loops onto itself
    driver.make_available(0, 0)
    driver.kick(0)
    assert driver.status & S.DEVICE_NEEDS_RESET
    assert driver.read(m.INTERRUPT_STATUS) == m.INT_CONFIG_CHANGE and driver.irq.level
    assert not driver.device.active and driver.transport.queue_errors == 1
    driver.kick(0)  # ignored now
    assert driver.transport.queue_errors == 1
    driver.write(m.STATUS, 0)
    assert driver.status == 0 and not driver.irq.level
    assert all(not queue.ready for queue in driver.transport.queues)
    driver.init()
    driver.post(0, writable=[2])
    driver.kick(0)
    assert driver.used(0) == [(0, 2)]


def test_reset_forgets_everything_the_driver_set() -> None:
    driver = rng_driver()
    driver.init()
    driver.post(0, writable=[2])
    driver.kick(0)
    assert driver.irq.level
    driver.write(m.STATUS, 0)
    t = driver.transport
    assert (t.status, t.driver_features, t.interrupt_status, t.queue_sel) == (0, 0, 0, 0)
    assert not driver.irq.level and not driver.device.active and driver.device.driver_features == 0
    assert t.queues[0].state().next_avail == 0


def test_config_change_bumps_generation_and_interrupts() -> None:
    net = VirtioNet(RecordingNetBackend())
    driver = VirtioDriver(net)
    net.set_link(False)  # before DRIVER_OK: generation moves, no interrupt
    assert driver.read(m.CONFIG_GENERATION) == 1 and not driver.irq.level
    assert driver.config(6, AccessWidth.WORD) == 0
    driver.init()
    net.set_link(True)
    assert driver.read(m.CONFIG_GENERATION) == 2
    assert driver.read(m.INTERRUPT_STATUS) == m.INT_CONFIG_CHANGE and driver.irq.level


def test_transport_refuses_devices_it_cannot_carry() -> None:
    class Packed(VirtioRng):
        @property
        def features(self) -> int:
            return super().features | bit(VIRTIO_F_RING_PACKED)

    with pytest.raises(ValueError, match="not implemented"):
        VirtioMmioTransport(MMIO_BASE, Packed(bytes), make_memory(), RecordingIrqLine())
    with pytest.raises(ValueError, match="window"):
        VirtioMmioTransport(MMIO_BASE, VirtioNet(RecordingNetBackend()), make_memory(), RecordingIrqLine(), 0x100)


def test_on_the_mmio_bus() -> None:
    driver = rng_driver()
    bus = MmioBus()
    bus.add(driver.transport)
    assert bus.read(MMIO_BASE, AccessWidth.DWORD) == 0x74726976
    bus.write(MMIO_BASE + m.STATUS, AccessWidth.DWORD, S.ACKNOWLEDGE)
    assert driver.status == S.ACKNOWLEDGE


def test_state_round_trip_resumes_a_running_device() -> None:
    driver = rng_driver()
    driver.init()
    driver.post(0, writable=[4])
    driver.kick(0)  # interrupt pending
    saved = from_dict(VirtioMmioState, to_dict(driver.transport.state()))
    irq = RecordingIrqLine()
    device = VirtioRng(lambda n: b"\xcd" * n)
    resumed = VirtioMmioTransport.from_state(saved, MMIO_BASE, device, driver.memory, irq)
    assert resumed.state() == driver.transport.state()
    assert irq.level and device.active
    driver.transport = resumed
    driver.device = device
    assert driver.used(0) == [(0, 4)]
    _, (addr,) = driver.post(0, writable=[4])
    driver.kick(0)
    assert driver.used(0) == [(1, 4)] and driver.memory.read(addr, 4) == b"\xcd" * 4


@pytest.mark.parametrize(
    "change, message",
    [
        ({"status": 0x10}, "undefined bits"),
        ({"status": -1}, "32-bit"),
        ({"interrupt_status": 4}, "0..3"),
        ({"driver_features": bit(0)}, "not offered"),
        ({"queues": []}, "queues"),
    ],
)
def test_from_state_refuses_impossible_states(change: dict, message: str) -> None:
    driver = rng_driver()
    driver.init()
    state = driver.transport.state()
    for key, value in change.items():
        setattr(state, key, value)
    with pytest.raises(ValueError, match=message):
        VirtioMmioTransport.from_state(state, MMIO_BASE, VirtioRng(bytes), driver.memory, RecordingIrqLine())


def test_serialized_state_is_plain_data() -> None:
    driver = VirtioDriver(VirtioNet(RecordingNetBackend()))
    driver.init()
    data = to_dict(driver.transport.state())
    assert data["status"] == 15 and data["queues"][0]["size"] == 256
    assert to_dict(driver.device.state())["mac"] == "525400123456"
    with pytest.raises(ValueError, match="unknown fields"):
        from_dict(VirtioMmioState, {"bogus": 1})
    with pytest.raises(ValueError, match="expected an integer"):
        from_dict(VirtioMmioState, {"status": "1"})
    assert struct.calcsize("<QIHH") == 16
