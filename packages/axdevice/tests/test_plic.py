"""The PLIC: the output-line rule, claim/complete, thresholds, level gateways and bounds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import AccessWidth
from axdevice import MmioBus, Plic, PlicState, RecordingIrqLine
from axdevice import plic as p

B = p.PLIC_BASE
D = AccessWidth.DWORD


def make(num_sources: int = 8, num_contexts: int = 2) -> tuple[Plic, list[RecordingIrqLine]]:
    lines = [RecordingIrqLine() for _ in range(num_contexts)]
    return Plic(B, num_sources, lines), lines


def prio(n: int) -> int:
    return B + 4 * n


def enable(ctx: int, word: int = 0) -> int:
    return B + 0x2000 + 0x80 * ctx + 4 * word


def threshold(ctx: int) -> int:
    return B + 0x20_0000 + 0x1000 * ctx


def claim_reg(ctx: int) -> int:
    return threshold(ctx) + 4


def expected_level(state: PlicState, ctx: int) -> bool:
    """The spec's rule, computed source by source from the saved state."""
    for n in range(1, len(state.priorities)):
        bit = 1 << n
        if (
            state.pending & bit
            and not state.claimed & bit
            and state.enables[ctx] & bit
            and state.priorities[n] > state.thresholds[ctx]
        ):
            return True
    return False


def expected_claim(state: PlicState, ctx: int) -> int:
    best, best_prio = 0, state.thresholds[ctx]
    for n in range(1, len(state.priorities)):
        bit = 1 << n
        live = state.pending & bit and not state.claimed & bit and state.enables[ctx] & bit
        if live and state.priorities[n] > best_prio:
            best, best_prio = n, state.priorities[n]
    return best


def test_layout_matches_qemu_virt() -> None:
    plic, _ = make()
    assert plic.address_range.start == 0x0C00_0000 and plic.address_range.size == 0x60_0000
    assert plic.emu_type.name == "InterruptController"


def test_a_level_source_interrupts_only_when_enabled_and_above_threshold() -> None:
    plic, lines = make()
    uart = plic.source(3)
    uart.set_level(True)
    assert plic.handle_read(B + 0x1000, D) == 1 << 3  # pending, but priority 0: no interrupt
    assert not lines[1].events
    plic.handle_write(prio(3), D, 1)
    assert not lines[1].events  # not enabled yet
    plic.handle_write(enable(1), D, 1 << 3)
    assert lines[1].events == [("level", True)] and not lines[0].events
    plic.handle_write(threshold(1), D, 1)  # priority 1 is not > threshold 1
    assert lines[1].events == [("level", True), ("level", False)]
    assert plic.handle_read(claim_reg(1), D) == 0  # the claim honours the threshold too
    plic.handle_write(threshold(1), D, 0)
    assert lines[1].level


def test_claim_then_complete_with_level_retrigger() -> None:
    plic, lines = make()
    plic.handle_write(prio(5), D, 2)
    plic.handle_write(enable(1), D, 1 << 5)
    src = plic.source(5)
    src.set_level(True)
    assert lines[1].level
    assert plic.handle_read(claim_reg(1), D) == 5
    assert not lines[1].level  # in flight
    assert plic.handle_read(B + 0x1000, D) == 0  # the claim cleared the pending bit
    assert plic.handle_read(claim_reg(1), D) == 0  # nothing else to claim
    plic.handle_write(claim_reg(1), D, 5)  # complete while the device still asserts
    assert lines[1].level and plic.handle_read(B + 0x1000, D) == 1 << 5
    assert plic.handle_read(claim_reg(1), D) == 5
    src.set_level(False)  # the driver served the device during the handler
    plic.handle_write(claim_reg(1), D, 5)
    assert not lines[1].level and plic.handle_read(B + 0x1000, D) == 0


def test_claims_come_in_priority_order_ties_to_the_lowest_id() -> None:
    plic, _ = make()
    for n, priority in {1: 1, 2: 3, 4: 3, 6: 7, 7: 2}.items():
        plic.handle_write(prio(n), D, priority)
        plic.source(n).set_level(True)
    plic.handle_write(enable(0), D, 0xFF)
    order = [plic.handle_read(claim_reg(0), D) for _ in range(6)]
    assert order == [6, 2, 4, 7, 1, 0]


def test_a_claimed_source_is_hidden_from_other_contexts() -> None:
    plic, lines = make(num_contexts=4)
    plic.handle_write(prio(2), D, 1)
    plic.handle_write(enable(1), D, 1 << 2)
    plic.handle_write(enable(3), D, 1 << 2)
    plic.source(2).set_level(True)
    assert lines[1].level and lines[3].level
    assert plic.handle_read(claim_reg(3), D) == 2
    assert not lines[1].level and not lines[3].level
    assert plic.handle_read(claim_reg(1), D) == 0


def test_complete_is_ignored_for_ids_not_enabled_for_the_context() -> None:
    plic, lines = make()
    plic.handle_write(prio(2), D, 1)
    plic.handle_write(enable(1), D, 1 << 2)
    plic.source(2).set_level(True)
    assert plic.handle_read(claim_reg(1), D) == 2
    for bad in (2, 0, 9, 1023, 0xFFFF_FFFF):  # context 0 does not enable 2; others are no source
        plic.handle_write(claim_reg(0), D, bad)
    plic.handle_write(claim_reg(1), D, 3)  # enabled nowhere, never claimed
    assert plic.state().claimed == 1 << 2 and not lines[1].level
    plic.handle_write(claim_reg(1), D, 2)
    assert plic.state().claimed == 0 and lines[1].level


def test_an_edge_during_flight_waits_for_the_completion() -> None:
    plic, lines = make()
    plic.handle_write(prio(1), D, 1)
    plic.handle_write(enable(0), D, 1 << 1)
    src = plic.source(1)
    src.pulse()
    assert plic.handle_read(claim_reg(0), D) == 1
    src.pulse()
    assert not lines[0].level  # held back while in flight
    plic.handle_write(claim_reg(0), D, 1)
    assert lines[0].level and plic.handle_read(claim_reg(0), D) == 1
    plic.handle_write(claim_reg(0), D, 1)
    assert not lines[0].level


def test_a_level_dropping_before_the_claim_retracts_the_request() -> None:
    plic, lines = make()
    plic.handle_write(prio(4), D, 1)
    plic.handle_write(enable(0), D, 1 << 4)
    plic.source(4).set_level(True)
    plic.source(4).set_level(False)
    assert not lines[0].level and plic.handle_read(claim_reg(0), D) == 0


def test_priorities_and_thresholds_are_three_bit_warl() -> None:
    plic, _ = make()
    plic.handle_write(prio(1), D, 0xFFFF_FFFF)
    plic.handle_write(threshold(0), D, 0x1F)
    assert plic.handle_read(prio(1), D) == 7 and plic.handle_read(threshold(0), D) == 7


def test_source_zero_and_sources_past_ndev_do_not_exist() -> None:
    plic, _ = make(num_sources=40)
    plic.handle_write(prio(0), D, 5)
    plic.handle_write(prio(41), D, 5)
    assert plic.handle_read(prio(0), D) == 0 and plic.handle_read(prio(41), D) == 0
    plic.handle_write(enable(0, 0), D, 0xFFFF_FFFF)
    plic.handle_write(enable(0, 1), D, 0xFFFF_FFFF)
    assert plic.handle_read(enable(0, 0), D) == 0xFFFF_FFFE  # bit 0: source 0
    assert plic.handle_read(enable(0, 1), D) == 0x1FF  # sources 32..40
    assert plic.handle_read(enable(0, 2), D) == 0
    for bad in (0, 41, -1):
        with pytest.raises(ValueError, match="source"):
            plic.source(bad)


def test_pending_bits_are_read_only() -> None:
    plic, _ = make()
    plic.handle_write(B + 0x1000, D, 0xFFFF_FFFF)
    assert plic.handle_read(B + 0x1000, D) == 0


@pytest.mark.parametrize(
    ("addr", "width"),
    [
        (enable(2), D),  # context 2 does not exist
        (threshold(2), D),
        (claim_reg(2), D),
        (threshold(0) + 8, D),  # a hole in a context block
        (B + 0x1FFC, D),  # unused enable space below context 0
        (B + 0x5F_FFFC, D),  # the top of the window
        (prio(1), AccessWidth.BYTE),
        (prio(1), AccessWidth.QWORD),
        (prio(1) + 2, AccessWidth.WORD),
    ],
)
def test_out_of_range_or_odd_accesses_read_zero_and_drop_writes(addr: int, width: AccessWidth) -> None:
    plic, _ = make()
    plic.source(1).set_level(True)
    before = plic.state()
    assert plic.handle_read(addr, width) == 0
    plic.handle_write(addr, width, width.mask)
    assert plic.state() == before


def test_construction_bounds() -> None:
    for bad in (0, p.MAX_SOURCES + 1):
        with pytest.raises(ValueError, match="num_sources"):
            make(num_sources=bad)
    with pytest.raises(ValueError, match="contexts"):
        Plic(B, 8, [])
    with pytest.raises(ValueError, match="contexts"):
        Plic(B, 8, [RecordingIrqLine()] * 1025)  # 0x60_0000 holds 1024 contexts
    plic = Plic(B, p.MAX_SOURCES, [RecordingIrqLine()] * 1024)
    assert plic.handle_read(claim_reg(1023), D) == 0


def test_the_highest_source_works() -> None:
    plic, lines = make(num_sources=p.MAX_SOURCES)
    plic.handle_write(prio(1023), D, 1)
    plic.handle_write(enable(1, 31), D, 1 << 31)
    plic.source(1023).set_level(True)
    assert plic.handle_read(B + 0x1000 + 4 * 31, D) == 1 << 31
    assert lines[1].level and plic.handle_read(claim_reg(1), D) == 1023


def test_state_round_trip_raises_the_lines_it_implies() -> None:
    plic, _ = make()
    plic.handle_write(prio(3), D, 4)
    plic.handle_write(enable(1), D, 1 << 3)
    plic.source(3).set_level(True)
    saved = plic.state()
    lines = [RecordingIrqLine(), RecordingIrqLine()]
    resumed = Plic.from_state(saved, B, lines)
    assert resumed.state() == saved
    assert lines[1].events == [("level", True)] and not lines[0].events
    assert resumed.handle_read(claim_reg(1), D) == 3


@pytest.mark.parametrize(
    "changes",
    [
        {"priorities": (0, 8)},
        {"priorities": (1, 0)},
        {"thresholds": (0,)},
        {"enables": (1, 0)},  # source 0
        {"pending": 1 << 2},  # past num_sources
        {"claimed": -1},
    ],
)
def test_from_state_rejects_impossible_states(changes: dict) -> None:
    base = {"priorities": (0, 0), "thresholds": (0, 0), "enables": (0, 0)}
    state = PlicState(**{**base, **changes})
    with pytest.raises(ValueError):
        Plic.from_state(state, B, [RecordingIrqLine(), RecordingIrqLine()])


NUM_SOURCES = 40  # spans two enable words
NUM_CONTEXTS = 3
sources = st.integers(min_value=1, max_value=NUM_SOURCES)
contexts = st.integers(min_value=0, max_value=NUM_CONTEXTS)  # one past the last
ops = st.one_of(
    st.tuples(st.just("level"), sources, st.booleans()),
    st.tuples(st.just("pulse"), sources),
    st.tuples(st.just("prio"), st.integers(min_value=0, max_value=NUM_SOURCES + 1), st.integers(0, 15)),
    st.tuples(st.just("enable"), contexts, st.integers(0, 2), st.integers(0, 0xFFFF_FFFF)),
    st.tuples(st.just("threshold"), contexts, st.integers(0, 15)),
    st.tuples(st.just("claim"), contexts),
    st.tuples(st.just("complete"), contexts, st.integers(0, NUM_SOURCES + 2)),
    st.tuples(st.just("read"), st.integers(0, p.PLIC_SIZE // 4 - 1)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=80))
def test_lines_always_follow_the_spec_rule(program: list[tuple]) -> None:
    lines = [RecordingIrqLine() for _ in range(NUM_CONTEXTS)]
    plic = Plic(B, NUM_SOURCES, lines)
    bus = MmioBus()
    bus.add(plic)
    for op in program:
        kind = op[0]
        if kind == "level":
            plic.source(op[1]).set_level(op[2])
        elif kind == "pulse":
            plic.source(op[1]).pulse()
        elif kind == "prio":
            bus.write(prio(op[1]), D, op[2])
        elif kind == "enable":
            bus.write(enable(op[1], op[2]), D, op[3])
        elif kind == "threshold":
            bus.write(threshold(op[1]), D, op[2])
        elif kind == "claim":
            before = plic.state()
            got = bus.read(claim_reg(op[1]), D)
            assert got == (expected_claim(before, op[1]) if op[1] < NUM_CONTEXTS else 0)
        elif kind == "complete":
            bus.write(claim_reg(op[1]), D, op[2])
        else:
            assert 0 <= bus.read(B + 4 * op[1], D) <= 0xFFFF_FFFF
        assert bus.device_errors == 0
        state = plic.state()
        for ctx in range(NUM_CONTEXTS):
            assert lines[ctx].level == expected_level(state, ctx) == plic.context_level(ctx)
        assert not state.pending & 1 and not state.claimed & 1
        # A high level source that is not in flight is always pending (the gateway forwards it).
        assert state.levels & ~state.claimed & ~state.pending == 0
    for line in lines:
        levels = [event[1] for event in line.events]
        assert all(a != b for a, b in zip([False, *levels], levels, strict=False))  # changes only
