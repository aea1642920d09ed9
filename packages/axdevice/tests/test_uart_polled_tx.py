"""The polled-transmit shortcut a CPU engine may take (``polled_tx_lsr``/``transmit``): it is
offered only where LSR reads and THR writes have no effect beyond the bytes and LSR's value,
and ``transmit`` leaves the state the same THR writes leave."""

from __future__ import annotations

import pytest

from axdevice import RecordingIrqLine, Uart16550

THR, IER, LCR, MCR, LSR = 0, 1, 3, 4, 5
LSR_DR, LSR_OE, THRE_TEMT = 0x01, 0x02, 0x60


def make() -> tuple[Uart16550, list[bytes]]:
    out: list[bytes] = []
    return Uart16550(RecordingIrqLine(), out.append), out


def test_a_polled_uart_offers_its_lsr() -> None:
    uart, _ = make()
    assert uart.polled_tx_lsr() == THRE_TEMT == uart.read(LSR)
    uart.push_input(b"x")
    assert uart.polled_tx_lsr() == THRE_TEMT | LSR_DR  # input pending shows; RBR reads go to the model


@pytest.mark.parametrize(
    ("register", "value"),
    [(IER, 0x02), (LCR, 0x83), (MCR, 0x10)],
    ids=["thr-empty interrupts", "divisor latch", "loopback"],
)
def test_no_shortcut_where_thr_writes_do_more(register: int, value: int) -> None:
    uart, _ = make()
    uart.write(register, value)
    assert uart.polled_tx_lsr() == 0


def test_no_shortcut_while_an_overrun_waits_to_be_read() -> None:
    uart, _ = make()
    uart.write(MCR, 0x10)  # loopback: fill the receiver past its FIFO
    for _ in range(20):
        uart.write(THR, 0x41)
    uart.write(MCR, 0x00)
    assert uart.read(LSR) & LSR_OE  # this read clears it
    uart.write(MCR, 0x10)
    for _ in range(20):
        uart.write(THR, 0x41)
    uart.write(MCR, 0x00)
    assert uart.polled_tx_lsr() == 0


def test_transmit_leaves_what_the_thr_writes_leave() -> None:
    batched, batched_out = make()
    one_by_one, single_out = make()
    batched.transmit(b"hello\n")
    for byte in b"hello\n":
        one_by_one.write(THR, byte)
    assert batched_out == [b"hello\n"]
    assert b"".join(single_out) == b"hello\n"
    assert batched.state() == one_by_one.state()
