"""``restore(state)`` on a device already built and wired (how a VM snapshot is restored): each
device's saved state, through plain data and JSON, put into another instance that was in a
different state leaves it equal to the saved one, with its interrupt line where the state says."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_virtio_driver import MMIO_BASE, VirtioDriver

from axaddrspace import AccessWidth
from axdevice import (
    Clint,
    ClintState,
    Gicv2,
    Pl011,
    Pl011State,
    Pl031,
    Pl031State,
    Plic,
    PlicState,
    RecordingHartTimers,
    RecordingIrqLine,
    Uart16550,
    UartState,
)
from axdevice import clint as c
from axdevice import plic as p
from axdevice.pl011 import CR_RXE, CR_TXE, CR_UARTEN, INT_RX, PL011_BASE, UARTCR, UARTIMSC
from axdevice.pl031 import PL031_BASE
from axdevice.virtio import (
    RawFileBackend,
    RecordingNetBackend,
    VirtioBlk,
    VirtioConsole,
    VirtioMmioState,
    VirtioMmioTransport,
    VirtioNet,
    VirtioRng,
)
from axdevice.virtio.serialize import from_dict, to_dict

D, Q = AccessWidth.DWORD, AccessWidth.QWORD


def through_json(state: object) -> object:
    return from_dict(type(state), json.loads(json.dumps(to_dict(state))))


def test_uart_restore_in_place_raises_and_lowers_its_line() -> None:
    line = RecordingIrqLine()
    uart = Uart16550(line)
    uart.write(1, 0x01)  # IER: received data
    uart.push_input(b"abc")
    saved = through_json(uart.state())
    assert isinstance(saved, UartState)
    other_line = RecordingIrqLine()
    other = Uart16550(other_line)
    other.restore(saved)
    assert other.state() == uart.state() and other_line.level
    other.restore(UartState())
    assert not other_line.level
    with pytest.raises(ValueError):
        other.restore(UartState(ier=0x100))


def test_plic_restore_in_place_follows_the_rule_both_ways() -> None:
    lines = [RecordingIrqLine(), RecordingIrqLine()]
    plic = Plic(p.PLIC_BASE, 8, lines)
    plic.handle_write(p.PLIC_BASE + 4 * 3, D, 5)  # source 3 priority 5
    plic.handle_write(p.PLIC_BASE + p.ENABLE_OFFSET + p.ENABLE_STRIDE, D, 1 << 3)  # context 1 enables it
    plic.source(3).set_level(True)
    assert lines[1].level
    saved = through_json(plic.state())
    assert isinstance(saved, PlicState)
    other_lines = [RecordingIrqLine(), RecordingIrqLine()]
    other = Plic(p.PLIC_BASE, 8, other_lines)
    other.restore(saved)
    assert other.state() == plic.state() and other_lines[1].level and not other_lines[0].level
    other.restore(PlicState((0,) * 9, (0, 0), (0, 0)))
    assert not other_lines[1].level  # a line the old state held high is lowered
    with pytest.raises(ValueError, match="sources"):
        other.restore(PlicState((0,) * 4, (0, 0), (0, 0)))


def test_clint_restore_in_place_sets_time_msip_and_timers() -> None:
    now = [100]
    clint = Clint(c.CLINT_BASE, 2, [RecordingIrqLine(), RecordingIrqLine()], RecordingHartTimers(), lambda: now[0])
    clint.handle_write(c.CLINT_BASE + 4, D, 1)
    clint.handle_write(c.CLINT_BASE + 0x4000, Q, 7777)
    saved = through_json(clint.state())
    assert isinstance(saved, ClintState)
    lines, timers, later = [RecordingIrqLine(), RecordingIrqLine()], RecordingHartTimers(), [9_000]
    other = Clint(c.CLINT_BASE, 2, lines, timers, lambda: later[0])
    other.restore(saved)
    assert other.state() == clint.state() and lines[1].level and not lines[0].level
    assert timers.deadlines == {0: 7777, 1: (1 << 64) - 1}
    with pytest.raises(ValueError, match="harts"):
        other.restore(ClintState(msip=(False,), mtimecmp=(0,)))


def _restored_transport(driver: VirtioDriver, device: object) -> tuple[VirtioMmioTransport, RecordingIrqLine]:
    """A second transport over the same guest memory, built fresh and then restored."""
    saved_device = through_json(driver.device.state())
    saved = through_json(driver.transport.state())
    assert isinstance(saved, VirtioMmioState)
    irq = RecordingIrqLine()
    transport = VirtioMmioTransport(MMIO_BASE, device, driver.memory, irq)  # type: ignore[arg-type]
    device.restore(saved_device)  # type: ignore[attr-defined]
    transport.restore(saved)
    assert transport.state() == driver.transport.state()
    assert device.state() == driver.device.state()  # type: ignore[attr-defined]
    return transport, irq


def test_virtio_rng_transport_restored_in_place_serves_the_next_request() -> None:
    driver = VirtioDriver(VirtioRng(lambda n: b"\xab" * n))
    driver.init()
    driver.post(0, writable=[4])
    driver.kick(0)
    device = VirtioRng(lambda n: b"\xcd" * n)
    transport, irq = _restored_transport(driver, device)
    assert irq.level and device.active and device.bytes_served == 4
    driver.transport, driver.device = transport, device
    _, (addr,) = driver.post(0, writable=[4])
    driver.kick(0)
    assert driver.used(0) == [(0, 4), (1, 4)] and driver.memory.read(addr, 4) == b"\xcd" * 4


def test_virtio_console_and_net_restore_counters_in_place() -> None:
    console = VirtioDriver(VirtioConsole(lambda data: None))
    console.init()
    console.device.bytes_sent = 12  # type: ignore[attr-defined]
    _restored_transport(console, VirtioConsole(lambda data: None))
    net = VirtioDriver(VirtioNet(RecordingNetBackend(), b"\x52\x54\x00\x00\x00\x01"))
    net.init()
    net.device.link_up = False  # type: ignore[attr-defined]
    net.device.rx_dropped = 3  # type: ignore[attr-defined]
    clone = VirtioNet(RecordingNetBackend(), b"\x52\x54\x00\x00\x00\x01")
    _restored_transport(net, clone)
    assert not clone.link_up and clone.rx_dropped == 3
    other_mac = VirtioNet(RecordingNetBackend(), b"\x52\x54\x00\x00\x00\x02")
    other_mac.restore(net.device.state())  # type: ignore[attr-defined]
    assert other_mac.mac == b"\x52\x54\x00\x00\x00\x02"  # a clone keeps its own address


def test_virtio_blk_restore_in_place_checks_the_disk(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(8 * 512))
    driver = VirtioDriver(VirtioBlk(RawFileBackend(image)))
    driver.init()
    driver.device.requests = 5  # type: ignore[attr-defined]
    copy = tmp_path / "copy.img"
    copy.write_bytes(image.read_bytes())
    _restored_transport(driver, VirtioBlk(RawFileBackend(copy)))
    bigger = tmp_path / "bigger.img"
    bigger.write_bytes(bytes(16 * 512))
    with pytest.raises(ValueError, match="sectors"):
        VirtioBlk(RawFileBackend(bigger)).restore(driver.device.state())  # type: ignore[attr-defined]


def test_pl011_restore_in_place_follows_its_interrupt() -> None:
    line = RecordingIrqLine()
    uart = Pl011(line)
    uart.handle_write(PL011_BASE + UARTCR, D, CR_UARTEN | CR_RXE | CR_TXE)
    uart.handle_write(PL011_BASE + UARTIMSC, D, INT_RX)
    uart.push_input(b"hi")
    saved = through_json(uart.state())
    assert isinstance(saved, Pl011State)
    other_line = RecordingIrqLine()
    other = Pl011(other_line)
    other.restore(saved)
    assert other.state() == uart.state() and other_line.level == line.level
    other.restore(Pl011State())
    assert not other_line.level


def test_pl031_restore_in_place_counts_on_from_the_saved_counter() -> None:
    now = [1000.0]
    rtc = Pl031(RecordingIrqLine(), lambda: int(now[0]))
    rtc.handle_write(PL031_BASE + 0x008, D, 5000)  # RTCLR: the counter reads 5000 from now
    saved = through_json(rtc.state())
    assert isinstance(saved, Pl031State) and saved.counter == 5000
    later = [77.0]
    other = Pl031(RecordingIrqLine(), lambda: int(later[0]))
    other.restore(saved)
    assert other.counter() == 5000
    later[0] += 3
    assert other.counter() == 5003


def test_gicv2_restore_in_place_raises_the_cpu_line_the_state_says() -> None:
    power_on = Gicv2(64, [RecordingIrqLine()]).state()
    cpu = dataclasses.replace(power_on.cpus[0], ctlr=1, pmr=0xF8)
    spi = 40
    state = dataclasses.replace(
        power_on, ctlr=1, cpus=(cpu,), enabled=1 << spi, pending=1 << spi
    )  # one CPU: no targets
    expected_line = RecordingIrqLine()
    Gicv2.from_state(state, [expected_line])  # the constructor's reading of the same state
    assert expected_line.level
    line = RecordingIrqLine()
    gic = Gicv2(64, [line])
    gic.restore(through_json(state))  # type: ignore[arg-type]
    assert gic.state() == Gicv2.from_state(state, [RecordingIrqLine()]).state() and line.level
    gic.restore(power_on)
    assert not line.level
    with pytest.raises(ValueError, match="INTIDs"):
        gic.restore(Gicv2(96, [RecordingIrqLine()]).state())
