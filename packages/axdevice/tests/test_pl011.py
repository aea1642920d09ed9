"""The PL011: what Linux's amba-pl011 and U-Boot's pl01x drivers do with it, interrupts, bounds."""

import pytest

from axaddrspace import AccessWidth
from axdevice import MmioBus, Pl011, Pl011State, RecordingIrqLine
from axdevice import pl011 as p

B = p.PL011_BASE
D = AccessWidth.DWORD
H = AccessWidth.WORD


def make(enable: bool = True, fifo: bool = True) -> tuple[Pl011, RecordingIrqLine, list[bytes]]:
    irq = RecordingIrqLine()
    sent: list[bytes] = []
    uart = Pl011(irq, sent.append)
    if fifo:
        uart.write(p.UARTLCR_H, 0x70)  # 8 bits, FIFOs on (what both drivers write)
    if enable:
        uart.write(p.UARTCR, p.CR_UARTEN | p.CR_TXE | p.CR_RXE)
    return uart, irq, sent


def test_amba_ids_say_pl011_r1p5() -> None:
    uart, _, _ = make()
    ids = [uart.handle_read(B + 0xFE0 + 4 * n, D) for n in range(8)]
    assert ids == [0x11, 0x10, 0x34, 0x00, 0x0D, 0xF0, 0x05, 0xB1]
    periphid = ids[0] | ids[1] << 8 | ids[2] << 16 | ids[3] << 24
    cid = ids[4] | ids[5] << 8 | ids[6] << 16 | ids[7] << 24
    assert periphid & 0x000F_FFFF == 0x0004_1011  # Linux's amba-pl011 id table entry
    assert cid == 0xB105_F00D
    assert periphid >> 20 & 0xF == 3  # revision 3: Linux sizes the FIFOs at 32


def test_power_on_values() -> None:
    uart = Pl011(RecordingIrqLine())
    assert uart.read(p.UARTCR) == 0x0300
    assert uart.read(p.UARTIFLS) == 0x12
    assert uart.read(p.UARTFR) == p.FR_TXFE | p.FR_RXFE | p.FR_CONNECTED
    assert uart.read(p.UARTRIS) == 0 and uart.read(p.UARTIMSC) == 0
    assert uart.emu_type.name == "Console"
    assert uart.address_range.start == 0x0900_0000 and uart.address_range.size == 0x1000


def test_transmit_reaches_the_sink_at_every_width() -> None:
    uart, _, sent = make()
    bus = MmioBus()
    bus.add(uart)
    bus.write(B, AccessWidth.BYTE, ord("a"))  # Linux earlycon: writeb
    bus.write(B, H, ord("b"))  # Linux: writew
    bus.write(B, D, 0xFFFF_FF00 | ord("c"))  # U-Boot: writel; only the data bits go out
    assert sent == [b"a", b"b", b"c"]
    assert bus.read(B + p.UARTFR, D) & (p.FR_TXFF | p.FR_BUSY) == 0


def test_transmit_works_before_the_uart_is_enabled() -> None:
    uart, _, sent = make(enable=False)
    uart.write(p.UARTDR, ord("x"))
    assert sent == [b"x"]


def test_tx_interrupt_set_by_a_byte_and_cleared_by_icr() -> None:
    uart, irq, _ = make()
    uart.write(p.UARTIMSC, p.INT_TX)
    assert not irq.events
    uart.write(p.UARTDR, 0x41)
    assert irq.events == [("level", True)] and uart.read(p.UARTMIS) == p.INT_TX
    uart.write(p.UARTICR, p.INT_TX)
    assert irq.events == [("level", True), ("level", False)]


def test_receive_flags_and_data() -> None:
    uart, _, _ = make()
    assert uart.push_input(b"hi") == 2
    assert not uart.read(p.UARTFR) & p.FR_RXFE
    assert uart.read(p.UARTDR) == ord("h")
    assert uart.read(p.UARTDR) == ord("i")
    assert uart.read(p.UARTFR) & p.FR_RXFE
    assert uart.read(p.UARTDR) == 0  # empty FIFO reads 0


def test_receive_needs_uarten_and_rxe() -> None:
    uart, _, _ = make(enable=False)
    assert uart.push_input(b"x") == 0  # power-on CR has RXE but not UARTEN
    uart.write(p.UARTCR, p.CR_UARTEN | p.CR_TXE)
    assert uart.push_input(b"x") == 0
    uart.write(p.UARTCR, p.CR_UARTEN | p.CR_RXE)
    assert uart.push_input(b"x") == 1


def test_fifo_bound_is_32_then_partial_counts() -> None:
    uart, _, _ = make()
    assert uart.push_input(bytes(range(40))) == p.RX_FIFO_SIZE == 32
    assert uart.read(p.UARTFR) & p.FR_RXFF
    assert uart.push_input(b"more") == 0
    assert uart.read(p.UARTDR) == 0
    assert uart.push_input(b"more") == 1


def test_character_mode_holds_one_byte() -> None:
    uart, _, _ = make(fifo=False)
    assert uart.push_input(b"ab") == 1
    assert uart.read(p.UARTFR) & p.FR_RXFF
    assert uart.read(p.UARTDR) == ord("a")


def test_rx_interrupt_at_the_trigger_level_and_timeout_below_it() -> None:
    uart, irq, _ = make()
    uart.write(p.UARTIMSC, p.INT_RX)  # only RX: the timeout alone must not interrupt
    uart.push_input(b"x" * 15)  # trigger 1/2 of 32 = 16
    assert uart.read(p.UARTRIS) == p.INT_RT and not irq.level
    uart.push_input(b"y")
    assert uart.read(p.UARTRIS) == p.INT_RX | p.INT_RT and irq.level
    uart.read(p.UARTDR)  # 15 left: below the trigger, RXRIS falls
    assert uart.read(p.UARTRIS) == p.INT_RT and not irq.level
    uart.write(p.UARTIMSC, p.INT_RT)
    assert irq.level
    for _ in range(15):
        uart.read(p.UARTDR)
    assert uart.read(p.UARTRIS) == 0 and not irq.level  # empty: the timeout clears


def test_linux_interrupt_handler_loop_terminates() -> None:
    """pl011_int: read RIS & im, clear all but TX/RT/RX by ICR, drain on RX/RT, repeat."""
    uart, irq, _ = make()
    im = p.INT_RT | p.INT_RX
    uart.write(p.UARTIMSC, im)
    uart.write(p.UARTIFLS, 0x12)
    uart.push_input(b"ls\r")
    assert irq.level
    received = bytearray()
    for _ in range(4):
        status = uart.read(p.UARTRIS) & im
        if not status:
            break
        uart.write(p.UARTICR, status & ~(p.INT_TX | p.INT_RT | p.INT_RX))
        while not uart.read(p.UARTFR) & p.FR_RXFE:
            received.append(uart.read(p.UARTDR) & 0xFF)
    assert received == b"ls\r" and not irq.level


def test_trigger_levels_follow_ifls() -> None:
    for select, level in enumerate((4, 8, 16, 24, 28, 28, 28, 28)):
        uart, _, _ = make()
        uart.write(p.UARTIFLS, select << 3)
        uart.push_input(b"z" * (level - 1))
        assert not uart.read(p.UARTRIS) & p.INT_RX, select
        uart.push_input(b"z")
        assert uart.read(p.UARTRIS) & p.INT_RX, select


def test_icr_clears_rx_interrupt_until_the_level_is_reached_again() -> None:
    uart, _, _ = make()
    uart.push_input(b"a" * 16)
    uart.write(p.UARTICR, p.INT_RX | p.INT_RT)
    assert uart.read(p.UARTRIS) == 0
    uart.push_input(b"b")  # above the trigger: no new crossing; the line went idle again
    assert uart.read(p.UARTRIS) == p.INT_RT


def test_loopback_feeds_receiver_and_overruns_when_full() -> None:
    uart, _, sent = make()
    uart.write(p.UARTCR, p.CR_UARTEN | p.CR_TXE | p.CR_RXE | p.CR_LBE)
    assert uart.push_input(b"x") == 0  # the line is disconnected in loopback
    for n in range(33):
        uart.write(p.UARTDR, n)
    assert sent == []
    assert uart.read(p.UARTRSR_ECR) == p.RSR_OE
    assert uart.read(p.UARTRIS) & p.INT_OE
    entries = [uart.read(p.UARTDR) for _ in range(32)]
    assert entries[:31] == list(range(31))
    assert entries[31] == 31 | p.DR_OE  # the newest entry carries the overrun
    uart.write(p.UARTRSR_ECR, 0)
    assert uart.read(p.UARTRSR_ECR) == 0


def test_uboot_getc_sees_no_error_bits_on_received_bytes() -> None:
    uart, _, _ = make()
    uart.push_input(b"\x7f")
    assert uart.handle_read(B + p.UARTDR, D) & 0xFFFF_FF00 == 0


def test_registers_keep_only_their_bits_and_read_only_ones_ignore_writes() -> None:
    uart, _, _ = make()
    uart.write(p.UARTIBRD, 0xFFFF_FFFF)
    uart.write(p.UARTFBRD, 0xFF)
    uart.write(p.UARTIMSC, 0xFFFF)
    uart.write(p.UARTDMACR, 0xFF)
    uart.write(p.UARTCR, 0xFFFF)
    assert uart.read(p.UARTIBRD) == 0xFFFF
    assert uart.read(p.UARTFBRD) == 0x3F
    assert uart.read(p.UARTIMSC) == 0x7FF
    assert uart.read(p.UARTDMACR) == 0x7
    assert uart.read(p.UARTCR) == 0xFF87
    uart.write(p.UARTFR, 0)
    uart.write(p.UARTRIS, 0x7FF)
    uart.write(p.UARTMIS, 0x7FF)
    uart.write(0xFE0, 0)
    assert uart.read(p.UARTRIS) == 0 and uart.read(0xFE0) == 0x11


@pytest.mark.parametrize("offset", [0x1, 0x2, 0x8, 0x4C, 0x80, 0xF00, 0xFDC, 0xFFD])
def test_unknown_and_unaligned_offsets_read_zero(offset: int) -> None:
    uart, _, sent = make()
    uart.push_input(b"q")
    assert uart.handle_read(B + offset, AccessWidth.BYTE) == 0
    uart.handle_write(B + offset, AccessWidth.BYTE, 0x41)
    assert sent == [] and uart.read(p.UARTDR) == ord("q")


def test_a_read_is_masked_to_its_width() -> None:
    uart, _, _ = make()
    uart.write(p.UARTCR, 0xFF01)
    assert uart.handle_read(B + p.UARTCR, AccessWidth.BYTE) == 0x01


def test_a_failing_sink_loses_the_byte_and_counts_it() -> None:
    def broken(data: bytes) -> None:
        raise OSError("console gone")

    uart = Pl011(RecordingIrqLine(), broken)
    uart.write(p.UARTIMSC, p.INT_TX)
    uart.write(p.UARTDR, 0x41)
    assert uart.lost_output_bytes == 1 and uart.irq_level


def test_state_round_trip_raises_the_line_and_reset_keeps_the_lost_count() -> None:
    uart, _, _ = make()
    uart.write(p.UARTIMSC, p.INT_RX | p.INT_RT)
    uart.push_input(b"abc")
    uart.lost_output_bytes = 2
    state = uart.state()
    line = RecordingIrqLine()
    twin = Pl011.from_state(state, line)
    assert twin.state() == state and line.events == [("level", True)]
    assert twin.read(p.UARTDR) == ord("a")
    twin.reset()
    assert twin.state() == Pl011State(lost_output_bytes=2) and line.events[-1] == ("level", False)


@pytest.mark.parametrize(
    "bad",
    [
        Pl011State(cr=0x10000),
        Pl011State(imsc=0x800),
        Pl011State(ris=-1),
        Pl011State(rx_fifo=(0,) * 33),
        Pl011State(rx_fifo=(0x1000,)),
        Pl011State(lost_output_bytes=-1),
        Pl011State(rsr=0x10),
    ],
)
def test_from_state_refuses_impossible_states(bad: Pl011State) -> None:
    with pytest.raises(ValueError, match="Pl011State"):
        Pl011.from_state(bad, RecordingIrqLine())


def test_window_smaller_than_the_registers_is_refused() -> None:
    with pytest.raises(ValueError, match="smaller"):
        Pl011(RecordingIrqLine(), size=0x100)
