"""Register semantics of the 16550A, including what Linux's 8250 driver probes for."""

import dataclasses

import pytest

from axdevice import RX_FIFO_SIZE, RecordingIrqLine, Uart16550, UartState
from axdevice import uart16550 as u

THR = RBR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7


def make(sink: list[bytes] | None = None) -> tuple[Uart16550, RecordingIrqLine, list[bytes]]:
    irq = RecordingIrqLine()
    out: list[bytes] = [] if sink is None else sink
    return Uart16550(irq, out.append), irq, out


def test_power_on_state() -> None:
    uart, irq, _ = make()
    assert uart.read(IER) == 0
    assert uart.read(IIR) == 0x01
    assert uart.read(LCR) == 0x03
    assert uart.read(MCR) == 0x08
    assert uart.read(LSR) == 0x60
    assert uart.read(MSR) == 0xB0
    assert uart.read(SCR) == 0
    assert uart.read(RBR) == 0
    assert irq.events == []


def test_thr_write_goes_to_output_and_sets_thre_temt() -> None:
    uart, _, out = make()
    for byte in b"hi\n":
        uart.write(THR, byte)
    assert out == [b"h", b"i", b"\n"]
    assert uart.read(LSR) & 0x60 == 0x60


def test_write_values_are_bytes() -> None:
    uart, _, out = make()
    uart.write(THR, 0x141)
    uart.write(SCR, 0x1FF)
    assert out == [b"A"]
    assert uart.read(SCR) == 0xFF


def test_dlab_divisor_latch_round_trip() -> None:
    uart, _, out = make()
    uart.write(IER, 0x05)
    uart.write(LCR, 0x83)
    uart.write(DLL, 0x01)
    uart.write(DLM, 0x02)
    assert uart.read(DLL) == 0x01
    assert uart.read(DLM) == 0x02
    assert uart.divisor == 0x0201
    uart.write(LCR, 0x03)
    assert uart.read(IER) == 0x05  # IER was not touched by the DLM write
    assert out == []  # the DLL write was not transmitted
    uart.write(LCR, 0x80)
    assert (uart.read(DLL), uart.read(DLM)) == (0x01, 0x02)


def test_ier_keeps_low_four_bits() -> None:
    uart, _, _ = make()
    uart.write(IER, 0xFF)
    assert uart.read(IER) == 0x0F
    uart.write(IER, 0xF0)
    assert uart.read(IER) == 0x00


def test_iir_fifo_bits_after_fcr_enable() -> None:
    uart, _, _ = make()
    assert uart.read(IIR) & 0xC0 == 0
    uart.write(FCR, 0x01)
    assert uart.read(IIR) == 0xC1
    uart.write(FCR, 0x00)
    assert uart.read(IIR) == 0x01


def test_fcr_clears_rx_fifo() -> None:
    uart, irq, _ = make()
    uart.write(FCR, 0x01)
    uart.write(IER, 0x01)
    uart.push_input(b"abc")
    assert irq.level
    uart.write(FCR, 0x03)  # enable + clear RX
    assert uart.read(LSR) & 0x01 == 0
    assert uart.read(RBR) == 0
    assert not irq.level


def test_toggling_fifo_enable_clears_rx() -> None:
    uart, _, _ = make()
    uart.push_input(b"x")
    uart.write(FCR, 0x01)
    assert uart.read(LSR) & 0x01 == 0


def test_fcr_clear_tx_makes_thre_pending() -> None:
    uart, irq, _ = make()
    uart.write(IER, 0x02)
    assert uart.read(IIR) == 0x02  # consume the pending from enabling
    assert not irq.level
    uart.write(FCR, 0x04)
    assert irq.level
    assert uart.read(IIR) == 0x02


def test_rx_data_available_and_interrupt() -> None:
    uart, irq, _ = make()
    assert uart.push_input(b"ok") == 2
    assert uart.read(LSR) & 0x01
    assert not irq.level  # not enabled yet
    uart.write(IER, 0x01)
    assert irq.level
    assert uart.read(IIR) == 0x04
    assert uart.read(RBR) == ord("o")
    assert irq.level
    assert uart.read(RBR) == ord("k")
    assert not irq.level
    assert uart.read(LSR) & 0x01 == 0
    assert uart.read(IIR) == 0x01
    assert irq.events == [("level", True), ("level", False)]


def test_push_input_bounded_by_fifo() -> None:
    uart, _, _ = make()
    data = bytes(range(40))
    assert uart.push_input(data) == RX_FIFO_SIZE
    assert uart.push_input(data[RX_FIFO_SIZE:]) == 0
    assert uart.rx_space == 0
    assert uart.read(RBR) == 0
    assert uart.push_input(data[RX_FIFO_SIZE:]) == 1
    got = bytes(uart.read(RBR) for _ in range(RX_FIFO_SIZE))
    assert got == data[1:RX_FIFO_SIZE] + data[RX_FIFO_SIZE : RX_FIFO_SIZE + 1]
    assert uart.read(LSR) & 0x03 == 0  # no overrun from the host side
    assert uart.push_input(b"") == 0


def test_thre_interrupt_set_by_thr_write_and_cleared_by_iir_read() -> None:
    uart, irq, out = make()
    uart.write(IER, 0x02)
    assert irq.level
    assert uart.read(IIR) == 0x02
    assert not irq.level
    assert uart.read(IIR) == 0x01  # the read acknowledged it
    uart.write(THR, ord("a"))
    assert out == [b"a"]
    assert irq.level
    assert uart.read(IIR) == 0x02
    assert not irq.level


def test_enabling_thri_reasserts_thre_linux_bug_thre_probe() -> None:
    """serial8250_do_startup: IER=THRI, read IIR, IER=0, IER=THRI, read IIR must be THRE again."""
    uart, _, _ = make()
    uart.write(IER, 0x02)
    assert uart.read(IIR) & 0x0F == 0x02
    uart.write(IER, 0x00)
    uart.write(IER, 0x02)
    assert uart.read(IIR) & 0x0F == 0x02
    uart.write(IER, 0x00)
    assert uart.read(IIR) & 0x01  # no interrupt once disabled


def test_thr_write_with_thri_disabled_then_enabled() -> None:
    uart, irq, _ = make()
    uart.write(THR, 0x41)
    assert not irq.level
    uart.write(IER, 0x02)
    assert irq.level


def test_iir_priority_order() -> None:
    uart, irq, _ = make()
    uart.write(MCR, 0x10)  # loopback, so the guest can overrun
    uart.write(IER, 0x0F)
    for _ in range(RX_FIFO_SIZE + 1):
        uart.write(THR, 0x55)
    uart.write(MCR, 0x13)  # modem lines change: MSR deltas pending
    assert uart.read(IIR) == 0x06  # line status first
    lsr = uart.read(LSR)
    assert lsr & 0x02 and lsr & 0x01
    assert uart.read(IIR) == 0x04  # then received data
    for _ in range(RX_FIFO_SIZE):
        uart.read(RBR)
    assert uart.read(IIR) == 0x02  # then THR empty (cleared by this read)
    assert uart.read(IIR) == 0x00  # then modem status
    assert irq.level
    uart.read(MSR)
    assert uart.read(IIR) == 0x01
    assert not irq.level


def test_overrun_in_loopback_sets_oe_cleared_by_lsr_read() -> None:
    uart, irq, out = make()
    uart.write(MCR, 0x10)
    uart.write(IER, 0x04)
    for i in range(RX_FIFO_SIZE + 2):
        uart.write(THR, i)
    assert out == []  # loopback never reaches the sink
    assert irq.level
    assert uart.read(LSR) & 0x02
    assert not irq.level
    assert uart.read(LSR) & 0x02 == 0
    got = [uart.read(RBR) for _ in range(RX_FIFO_SIZE)]
    assert got == list(range(RX_FIFO_SIZE))  # the overflowing bytes were dropped


def test_loopback_mirrors_mcr_into_msr() -> None:
    uart, _, _ = make()
    # Linux autoconfig: MCR = LOOP | OUT2 | RTS must read MSR status 0x90 (DCD | CTS).
    uart.write(MCR, 0x1A)
    assert uart.read(MSR) & 0xF0 == 0x90
    cases = {0x10: 0x00, 0x11: 0x20, 0x12: 0x10, 0x14: 0x40, 0x18: 0x80, 0x1F: 0xF0}
    for mcr, status in cases.items():
        uart.write(MCR, mcr)
        assert uart.read(MSR) & 0xF0 == status
    uart.write(MCR, 0x08)  # out of loopback: a connected line
    assert uart.read(MSR) & 0xF0 == 0xB0


def test_msr_delta_bits_and_clear_on_read() -> None:
    uart, _, _ = make()
    uart.write(MCR, 0x10)  # loopback, all lines off: CTS, DSR and DCD fall
    assert uart.read(MSR) == 0x00 | 0x01 | 0x02 | 0x08
    assert uart.read(MSR) == 0x00
    uart.write(MCR, 0x14)  # RI rises: no delta (TERI is the trailing edge only)
    assert uart.read(MSR) == 0x40
    uart.write(MCR, 0x10)  # RI falls
    assert uart.read(MSR) == 0x04
    uart.write(MCR, 0x13)
    assert uart.read(MSR) == 0x30 | 0x01 | 0x02


def test_modem_status_interrupt() -> None:
    uart, irq, _ = make()
    uart.write(IER, 0x08)
    assert not irq.level
    uart.write(MCR, 0x10)
    assert irq.level
    assert uart.read(IIR) == 0x00
    assert irq.level  # IIR read does not clear modem status
    uart.read(MSR)
    assert not irq.level


def test_loopback_thr_to_rx_and_input_disconnected() -> None:
    uart, irq, out = make()
    uart.write(MCR, 0x10)
    uart.write(IER, 0x01)
    assert uart.push_input(b"host") == 0  # receiver disconnected from the line
    uart.write(THR, 0xA5)
    assert out == []
    assert irq.level
    assert uart.read(RBR) == 0xA5
    uart.write(MCR, 0x08)
    assert uart.push_input(b"host") == 4


def test_scr_and_readonly_registers() -> None:
    uart, _, _ = make()
    uart.write(SCR, 0x5A)
    assert uart.read(SCR) == 0x5A
    uart.write(LSR, 0x00)
    uart.write(MSR, 0x00)
    assert uart.read(LSR) == 0x60
    assert uart.read(MSR) == 0xB0


def test_mcr_keeps_low_five_bits() -> None:
    uart, _, _ = make()
    uart.write(MCR, 0xFF)
    assert uart.read(MCR) == 0x1F


@pytest.mark.parametrize("offset", [-1, 8, 9, 0x100])
def test_unknown_offsets_read_zero_and_drop_writes(offset: int) -> None:
    uart, irq, out = make()
    before = uart.state()
    uart.write(offset, 0xFF)
    assert uart.read(offset) == 0
    assert uart.state() == before
    assert out == [] and irq.events == []


def test_failing_output_is_counted_and_thre_still_raised() -> None:
    irq = RecordingIrqLine()
    sent: list[bytes] = []

    def sink(data: bytes) -> None:
        if data == b"x":
            raise BrokenPipeError("console went away")
        sent.append(data)

    uart = Uart16550(irq, sink)
    uart.write(IER, 0x02)
    uart.read(IIR)
    uart.write(THR, ord("x"))
    assert uart.lost_output_bytes == 1
    assert irq.level
    assert uart.read(LSR) & 0x60 == 0x60
    uart.write(THR, ord("y"))
    uart.write(THR, ord("x"))
    assert sent == [b"y"]
    assert uart.lost_output_bytes == 2


def test_no_output_sink_discards() -> None:
    irq = RecordingIrqLine()
    uart = Uart16550(irq)
    uart.write(IER, 0x02)
    uart.read(IIR)
    uart.write(THR, 0x41)
    assert uart.lost_output_bytes == 0
    assert irq.level


def test_irq_set_level_called_only_on_change() -> None:
    uart, irq, _ = make()
    uart.write(IER, 0x01)
    uart.push_input(b"a")
    uart.push_input(b"b")
    uart.write(IER, 0x03)  # THRE pending too: the line is already high
    uart.read(RBR)
    uart.read(RBR)  # RX drained, THRE still pending
    assert irq.events == [("level", True)]
    assert uart.read(IIR) == 0x02
    assert irq.events == [("level", True), ("level", False)]


def test_state_round_trip() -> None:
    uart, _, _ = make()
    uart.write(LCR, 0x83)
    uart.write(DLL, 0x03)
    uart.write(DLM, 0x01)
    uart.write(LCR, 0x1B)
    uart.write(FCR, 0xC1)
    uart.write(MCR, 0x1B)
    uart.write(THR, 0x33)  # loopback into RX
    uart.write(SCR, 0x77)
    uart.write(IER, 0x0B)
    uart.write(MCR, 0x0B)
    uart.push_input(b"more")
    state = uart.state()
    assert state.rx_fifo == b"\x33more"
    assert state.fcr == 0xC1

    irq2 = RecordingIrqLine()
    out2: list[bytes] = []
    twin = Uart16550.from_state(state, irq2, out2.append)
    assert twin.state() == state
    assert irq2.level and irq2.events == [("level", True)]  # pending RX data re-asserted
    for offset in (IER, LCR, MCR, SCR, LSR, MSR, IIR):
        assert twin.read(offset) == uart.read(offset)
    assert bytes(twin.read(RBR) for _ in range(5)) == b"\x33more"
    twin.write(THR, 0x21)
    assert out2 == [b"!"]


def test_state_is_a_plain_dataclass_with_power_on_defaults() -> None:
    uart, _, _ = make()
    assert dataclasses.is_dataclass(UartState)
    assert uart.state() == UartState()


@pytest.mark.parametrize(
    "change",
    [
        {"ier": 0x10},
        {"lcr": 0x100},
        {"mcr": 0x20},
        {"dll": -1},
        {"rx_fifo": bytes(RX_FIFO_SIZE + 1)},
        {"lost_output_bytes": -1},
    ],
)
def test_from_state_rejects_impossible_states(change: dict[str, object]) -> None:
    state = dataclasses.replace(UartState(), **change)
    with pytest.raises(ValueError, match="UartState"):
        Uart16550.from_state(state, RecordingIrqLine())


def test_from_state_recomputes_derived_bits() -> None:
    state = UartState(lsr=0x00, rx_fifo=b"z", msr=0x0F, mcr=0x08)
    uart = Uart16550.from_state(state, RecordingIrqLine())
    assert uart.read(LSR) == 0x61
    assert uart.read(MSR) == 0xBF


def test_reset_returns_to_power_on_and_lowers_line() -> None:
    uart, irq, _ = make()
    uart.write(IER, 0x01)
    uart.push_input(b"a")
    assert irq.level
    uart.reset()
    assert not irq.level
    assert uart.state() == UartState()


def test_module_is_sans_io() -> None:
    source = open(u.__file__, encoding="utf-8").read()
    for module in ("os", "socket", "select", "threading"):
        assert f"import {module}" not in source
        assert f"from {module}" not in source
