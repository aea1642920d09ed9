"""Random guest and host traffic: the UART never raises and its line always tells the truth."""

from hypothesis import given, settings
from hypothesis import strategies as st

from axdevice import RX_FIFO_SIZE, RecordingIrqLine, Uart16550, UartState
from axdevice import uart16550 as u

offsets = st.integers(min_value=-2, max_value=10)
ops = st.one_of(
    st.tuples(st.just("read"), offsets),
    st.tuples(st.just("write"), offsets, st.integers(min_value=0, max_value=0x3FF)),
    st.tuples(st.just("push"), st.binary(max_size=24)),
    # Bias towards the registers with the interesting interactions.
    st.tuples(st.just("write"), st.sampled_from([1, 2, 4]), st.integers(min_value=0, max_value=0xFF)),
)


def enabled_interrupt_pending(state: UartState) -> bool:
    """The datasheet's condition for the INTR pin, computed from the saved state."""
    return bool(
        (state.ier & u.IER_ELSI and state.lsr & u.LSR_OE)
        or (state.ier & u.IER_ERBFI and state.rx_fifo)
        or (state.ier & u.IER_ETBEI and state.thr_pending)
        or (state.ier & u.IER_EDSSI and state.msr & u.MSR_DELTAS)
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=60), st.booleans())
def test_random_traffic_keeps_invariants(program: list[tuple], sink_fails: bool) -> None:
    irq = RecordingIrqLine()
    sent: list[bytes] = []

    def sink(data: bytes) -> None:
        if sink_fails:
            raise OSError("sink down")
        sent.append(data)

    uart = Uart16550(irq, sink)
    for op in program:
        if op[0] == "read":
            assert 0 <= uart.read(op[1]) <= 0xFF
        elif op[0] == "write":
            uart.write(op[1], op[2])
        else:
            accepted = uart.push_input(op[1])
            assert 0 <= accepted <= len(op[1])
        state = uart.state()
        assert len(state.rx_fifo) <= RX_FIFO_SIZE
        assert state.ier <= 0x0F
        assert bool(state.lsr & u.LSR_DR) == bool(state.rx_fifo)
        assert state.lsr & 0x60 == 0x60
        assert irq.level == enabled_interrupt_pending(state) == uart.irq_level
    levels = [event[1] for event in irq.events]
    assert all(a != b for a, b in zip([False, *levels], levels, strict=False))  # only changes
    if sink_fails:
        assert sent == []
    else:
        assert uart.lost_output_bytes == 0
    twin = Uart16550.from_state(uart.state(), RecordingIrqLine())
    assert twin.state() == uart.state()
