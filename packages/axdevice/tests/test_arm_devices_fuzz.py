"""Random guest and host traffic on the arm virt devices: nothing raises, reads fit their width,
and every interrupt line agrees with the rule computed independently from the saved state."""

from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import AccessWidth
from axdevice import GicState, Gicv2, Pl011, Pl011State, Pl031, RecordingIrqLine
from axdevice import gicv2 as g
from axdevice import pl011 as u

widths = st.sampled_from(list(AccessWidth))
values = st.integers(min_value=0, max_value=(1 << 64) - 1)


def only_changes(line: RecordingIrqLine) -> bool:
    levels = [event[1] for event in line.events]
    return all(a != b for a, b in zip([False, *levels], levels, strict=False))


# -- PL011 ---------------------------------------------------------------------------------

uart_offsets = st.one_of(
    st.sampled_from([0x0, 0x4, 0x18, 0x24, 0x28, 0x2C, 0x30, 0x34, 0x38, 0x3C, 0x40, 0x44, 0x48]),
    st.integers(min_value=0, max_value=0x1003),
)
uart_ops = st.one_of(
    st.tuples(st.just("read"), uart_offsets, widths),
    st.tuples(st.just("write"), uart_offsets, widths, values),
    st.tuples(st.just("push"), st.binary(max_size=40)),
    # Bias towards enabling the UART, its FIFOs, loopback and interrupts.
    st.tuples(st.just("write"), st.sampled_from([0x2C, 0x30, 0x34, 0x38, 0x44]), st.just(AccessWidth.DWORD), values),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(uart_ops, max_size=60))
def test_pl011_random_traffic_keeps_invariants(program: list[tuple]) -> None:
    irq = RecordingIrqLine()
    uart = Pl011(irq, lambda data: None)
    for op in program:
        if op[0] == "read":
            assert 0 <= uart.handle_read(u.PL011_BASE + op[1], op[2]) <= op[2].mask
        elif op[0] == "write":
            uart.handle_write(u.PL011_BASE + op[1], op[2], op[3] & op[2].mask)
        else:
            assert 0 <= uart.push_input(op[1]) <= len(op[1])
        state: Pl011State = uart.state()
        assert len(state.rx_fifo) <= u.RX_FIFO_SIZE
        assert state.ris <= u.INT_MASK
        assert irq.level == bool(state.ris & state.imsc) == uart.irq_level
        assert bool(uart.read(u.UARTFR) & u.FR_RXFE) == (not state.rx_fifo)
        assert state.rx_fifo or not state.ris & u.INT_RT  # the timeout needs waiting data
    assert only_changes(irq)
    twin = Pl011.from_state(uart.state(), RecordingIrqLine())
    assert twin.state() == uart.state()


# -- GICv2 ---------------------------------------------------------------------------------

NUM_IRQS = 96
NUM_CPUS = 3
# Mostly a few INTIDs, so that inputs, priorities and acknowledgements meet on the same ones.
SPIS = st.one_of(st.sampled_from([32, 33, 34]), st.integers(min_value=32, max_value=NUM_IRQS - 1))
PPIS = st.one_of(st.just(27), st.integers(min_value=16, max_value=31))
CPUS = st.integers(min_value=0, max_value=NUM_CPUS - 1)

dist_offsets = st.one_of(
    st.sampled_from([0x000, 0x004, 0x008, 0xF00, 0xF10, 0xF20, 0xFE8]),
    st.integers(min_value=0x080, max_value=0x3FF).map(lambda o: o & ~3),
    st.integers(min_value=0x400, max_value=0xBFF),
    st.integers(min_value=0xC00, max_value=0xCFF).map(lambda o: o & ~3),
    st.integers(min_value=0, max_value=0x10003),
)
cpu_offsets = st.one_of(
    st.sampled_from([0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x28, 0xFC, 0x1000]),
    st.integers(min_value=0, max_value=0x10003),
)
gic_ops = st.one_of(
    st.tuples(st.just("dread"), CPUS, dist_offsets, widths),
    st.tuples(st.just("dwrite"), CPUS, dist_offsets, widths, values),
    st.tuples(st.just("cread"), CPUS, cpu_offsets, widths),
    st.tuples(st.just("cwrite"), CPUS, cpu_offsets, widths, values),
    st.tuples(st.just("spi"), SPIS, st.booleans()),
    st.tuples(st.just("spi_pulse"), SPIS),
    st.tuples(st.just("ppi"), CPUS, PPIS, st.booleans()),
    st.tuples(st.just("ack"), CPUS),
    st.tuples(st.just("ack"), CPUS),
    st.tuples(st.just("spi"), SPIS, st.just(True)),
    st.tuples(st.just("eoi"), CPUS, st.integers(min_value=0, max_value=7)),
    st.tuples(st.just("sgi"), CPUS, st.integers(min_value=0, max_value=0x3FF_FFFF)),
    st.tuples(
        st.just("priority"),
        CPUS,
        st.one_of(st.sampled_from([1, 27, 32, 33, 34]), st.integers(min_value=0, max_value=NUM_IRQS - 1)),
        st.one_of(st.sampled_from([0x00, 0x40, 0x80, 0x90, 0xF8]), st.integers(0, 0xFF)),
    ),
    # Bias towards turning things on: enables, priorities below the mask, CPU interfaces.
    st.tuples(st.just("setup"), CPUS),
)


def setup(gic: Gicv2, cpu: int) -> None:
    gic.distributor_write(cpu, g.GICD_CTLR, AccessWidth.DWORD, 3)
    gic.cpu_write(cpu, g.GICC_CTLR, AccessWidth.DWORD, 3)
    gic.cpu_write(cpu, g.GICC_PMR, AccessWidth.DWORD, 0xF0)
    for word in range(NUM_IRQS // 32):
        gic.distributor_write(cpu, g.GICD_ISENABLER + 4 * word, AccessWidth.DWORD, 0xFFFF_FFFF)
    for intid in range(0, NUM_IRQS, 4):  # Linux's default priority, so others can preempt
        gic.distributor_write(cpu, g.GICD_IPRIORITYR + intid, AccessWidth.DWORD, 0xA0A0_A0A0)
    for intid in range(32, NUM_IRQS, 4):
        gic.distributor_write(cpu, g.GICD_ITARGETSR + intid, AccessWidth.DWORD, 0x0101_0101 * ((1 << NUM_CPUS) - 1))


def expected_signal(state: GicState, cpu: int) -> bool:
    """The spec's rule, INTID by INTID, from the saved state alone."""
    me = state.cpus[cpu]
    best = None
    for intid in range(NUM_IRQS):
        bit = 1 << intid
        private = intid < 32
        bank = me if private else state
        if intid < 16:
            pending = me.sgi_sources[intid] != 0
        else:
            pending = bool(bank.pending & bit or (bank.levels & bit and not bank.edge & bit))
        group = 1 if bank.group & bit else 0
        targeted = private or state.targets[intid - 32] >> cpu & 1
        if not (pending and bank.enabled & bit and not bank.active & bit and targeted):
            continue
        if not (state.ctlr >> group & 1 and me.ctlr >> group & 1):
            continue
        priority = me.priorities[intid] if private else state.priorities[intid - 32]
        if best is None or priority < best:
            best = priority
    if best is None or best >= me.pmr:
        return False
    if not me.running:
        return True
    mask = (0xFF << (me.bpr + 1)) & 0xFF
    return best & mask < me.running[-1][2] & mask


def run_gic(program: list[tuple], booted: bool) -> Gicv2:
    """Run ``program`` on a 3-CPU GIC, checking the invariants after every step."""
    lines = [RecordingIrqLine() for _ in range(NUM_CPUS)]
    gic = Gicv2(NUM_IRQS, lines)
    if booted:  # start from a configured GIC, where interrupts get through
        for cpu in range(NUM_CPUS):
            setup(gic, cpu)
    acked: list[list[int]] = [[] for _ in range(NUM_CPUS)]
    for op in program:
        kind = op[0]
        if kind == "dread":
            assert 0 <= gic.distributor_read(op[1], op[2], op[3]) <= op[3].mask
        elif kind == "dwrite":
            gic.distributor_write(op[1], op[2], op[3], op[4])
        elif kind == "cread":
            assert 0 <= gic.cpu_read(op[1], op[2], op[3]) <= op[3].mask
        elif kind == "cwrite":
            gic.cpu_write(op[1], op[2], op[3], op[4])
        elif kind == "spi":
            gic.set_spi_level(op[1], op[2])
        elif kind == "spi_pulse":
            gic.spi_line(op[1]).pulse()
        elif kind == "ppi":
            gic.set_ppi_level(op[1], op[2], op[3])
        elif kind == "ack":
            running = gic.cpu_read(op[1], g.GICC_RPR, AccessWidth.DWORD)
            value = gic.acknowledge(op[1])
            assert value == g.SPURIOUS or (value & 0x3FF < NUM_IRQS and value >> 13 == 0)
            if value != g.SPURIOUS:
                acked[op[1]].append(value)
                assert gic.cpu_read(op[1], g.GICC_RPR, AccessWidth.DWORD) < running  # it preempted
        elif kind == "eoi":
            if acked[op[1]]:  # usually the latest, as the spec asks; sometimes out of order
                gic.end_of_interrupt(op[1], acked[op[1]].pop(-1 - op[2] % len(acked[op[1]])))
        elif kind == "sgi":
            gic.distributor_write(op[1], g.GICD_SGIR, AccessWidth.DWORD, op[2])
        elif kind == "priority":
            gic.distributor_write(op[1], g.GICD_IPRIORITYR + op[2], AccessWidth.BYTE, op[3])
        else:
            setup(gic, op[1])
        state = gic.state()
        for cpu in range(NUM_CPUS):
            assert lines[cpu].level == gic.cpu_irq_level(cpu) == expected_signal(state, cpu), cpu
            assert len(state.cpus[cpu].running) <= 32
    assert all(only_changes(line) for line in lines)
    twin = Gicv2.from_state(gic.state(), [RecordingIrqLine() for _ in range(NUM_CPUS)])
    assert twin.state() == gic.state()
    return gic


@settings(max_examples=200, deadline=None)
@given(st.lists(gic_ops, max_size=50), st.booleans())
def test_gicv2_random_register_traffic_keeps_invariants(program: list[tuple], booted: bool) -> None:
    run_gic(program, booted)


HOT = st.sampled_from([27, 32, 33, 34])
protocol_ops = st.one_of(
    st.tuples(st.just("spi"), st.sampled_from([32, 33, 34]), st.booleans()),
    st.tuples(st.just("spi_pulse"), st.sampled_from([32, 33, 34])),
    st.tuples(st.just("ppi"), CPUS, st.just(27), st.booleans()),
    st.tuples(st.just("sgi"), CPUS, st.integers(min_value=0, max_value=0x3FF_FFFF)),
    st.tuples(st.just("priority"), CPUS, HOT, st.sampled_from([0x00, 0x40, 0x80, 0x90, 0xA0, 0xF8])),
    st.tuples(st.just("ack"), CPUS),
    st.tuples(st.just("ack"), CPUS),
    st.tuples(st.just("eoi"), CPUS, st.integers(min_value=0, max_value=7)),
    st.tuples(st.just("cwrite"), CPUS, st.sampled_from([0x00, 0x04, 0x08, 0x1000]), st.just(AccessWidth.DWORD), values),
)


@settings(max_examples=100, deadline=None)  # long programs: about 6 s
@given(st.lists(protocol_ops, min_size=25, max_size=60))
def test_gicv2_nested_acknowledgements_keep_invariants(program: list[tuple]) -> None:
    """A configured GIC and a few INTIDs, so acknowledgements nest and preempt."""
    run_gic(program, booted=True)


# -- PL031 ---------------------------------------------------------------------------------

rtc_ops = st.one_of(
    st.tuples(st.just("read"), st.integers(min_value=0, max_value=0x1003), widths),
    st.tuples(st.just("write"), st.integers(min_value=0, max_value=0x1003), widths, values),
    st.tuples(st.just("write"), st.sampled_from([0x4, 0x8, 0x10, 0x1C]), st.just(AccessWidth.DWORD), values),
    st.tuples(st.just("tick"), st.floats(min_value=0, max_value=100, allow_nan=False)),
    st.tuples(st.just("poll")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(rtc_ops, max_size=40), st.floats(min_value=0, max_value=2**33, allow_nan=False))
def test_pl031_random_traffic_keeps_invariants(program: list[tuple], start: float) -> None:
    now = [start]
    irq = RecordingIrqLine()
    rtc = Pl031(irq, lambda: now[0])
    for op in program:
        if op[0] == "read":
            assert 0 <= rtc.handle_read(0x0901_0000 + op[1], op[2]) <= op[2].mask
        elif op[0] == "write":
            rtc.handle_write(0x0901_0000 + op[1], op[2], op[3] & op[2].mask)
        elif op[0] == "tick":
            now[0] += op[1]
        else:
            rtc.poll()
        state = rtc.state()
        assert 0 <= state.counter <= 0xFFFF_FFFF
        assert irq.level == bool(state.ris & state.imsc) == rtc.irq_level
        assert rtc.deadline > now[0] - 1  # a passed deadline was noticed by state()'s poll
    assert only_changes(irq)
    twin = Pl031.from_state(rtc.state(), RecordingIrqLine(), lambda: now[0])
    assert twin.state() == rtc.state()
