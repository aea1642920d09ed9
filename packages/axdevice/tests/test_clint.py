"""The CLINT: MSIP lines, mtimecmp deadlines handed to the backend, mtime from the clock."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import AccessWidth
from axdevice import Clint, ClintState, MmioBus, RecordingHartTimers, RecordingIrqLine
from axdevice import clint as c

B = c.CLINT_BASE
D, Q = AccessWidth.DWORD, AccessWidth.QWORD


class FakeClock:
    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make(num_harts: int = 2, now: int = 0) -> tuple[Clint, list[RecordingIrqLine], RecordingHartTimers, FakeClock]:
    lines = [RecordingIrqLine() for _ in range(num_harts)]
    timers = RecordingHartTimers()
    clock = FakeClock(now)
    return Clint(B, num_harts, lines, timers, clock), lines, timers, clock


def test_layout_constants_match_qemu_virt() -> None:
    clint, *_ = make()
    assert clint.address_range.start == 0x0200_0000 and clint.address_range.size == 0x10000
    assert c.MTIME_FREQ_HZ == 10_000_000
    assert clint.emu_type.name == "Timer"


def test_msip_drives_the_hart_line_on_changes_only() -> None:
    clint, lines, _, _ = make()
    clint.handle_write(B + 4, D, 0xFFFF_FFFF)  # hart 1: only bit 0 counts
    assert lines[1].events == [("level", True)] and not lines[0].events
    assert clint.handle_read(B + 4, D) == 1 and clint.msip(1)
    clint.handle_write(B + 4, D, 1)
    assert lines[1].events == [("level", True)]
    clint.handle_write(B + 4, D, 2)  # bit 0 clear
    assert lines[1].events == [("level", True), ("level", False)]
    assert clint.handle_read(B + 4, D) == 0


def test_mtimecmp_resets_to_all_ones_and_reports_writes() -> None:
    clint, _, timers, _ = make()
    assert clint.mtimecmp(0) == clint.mtimecmp(1) == (1 << 64) - 1
    assert timers.calls == []  # reset value: nothing to arm
    clint.handle_write(B + 0x4008, Q, 0x1234_5678_9ABC_DEF0)
    assert timers.calls == [(1, 0x1234_5678_9ABC_DEF0)]
    assert clint.handle_read(B + 0x4008, D) == 0x9ABC_DEF0
    assert clint.handle_read(B + 0x400C, D) == 0x1234_5678
    assert clint.handle_read(B + 0x4008, Q) == 0x1234_5678_9ABC_DEF0


def test_mtimecmp_halves_as_rv32_software_writes_them() -> None:
    clint, _, timers, _ = make(1)
    clint.handle_write(B + 0x4004, D, 0xFFFF_FFFF)  # the usual sequence: high to max, low, high
    clint.handle_write(B + 0x4000, D, 0x100)
    clint.handle_write(B + 0x4004, D, 0x2)
    assert clint.mtimecmp(0) == 0x2_0000_0100
    assert timers.deadlines[0] == 0x2_0000_0100 and len(timers.calls) == 3


def test_mtime_follows_the_clock_and_writes_move_an_offset() -> None:
    clint, _, _, clock = make(now=1000)
    assert clint.handle_read(B + 0xBFF8, Q) == 1000 == clint.mtime()
    clock.now = 1500
    assert clint.handle_read(B + 0xBFF8, D) == 1500 and clint.handle_read(B + 0xBFFC, D) == 0
    clint.handle_write(B + 0xBFF8, Q, 0x1_0000_0000)
    assert clint.mtime() == 0x1_0000_0000
    clock.now = 1600
    assert clint.mtime() == 0x1_0000_0064
    clint.handle_write(B + 0xBFFC, D, 7)  # high half only
    assert clint.mtime() == 0x7_0000_0064
    clint.handle_write(B + 0xBFF8, D, 5)  # low half only
    clock.now = 1610
    assert clint.mtime() == 0x7_0000_000F


def test_mtime_wraps_at_64_bits() -> None:
    clint, _, _, clock = make()
    clint.handle_write(B + 0xBFF8, Q, (1 << 64) - 2)
    clock.now = 5
    assert clint.mtime() == 3


@pytest.mark.parametrize(
    ("offset", "width"),
    [
        (0x0, AccessWidth.BYTE),
        (0x0, AccessWidth.WORD),
        (0x0, Q),  # msip is a 32-bit register
        (0x2, D),  # misaligned
        (0x4004, Q),  # misaligned 64-bit
        (0x8, D),  # hart 2 does not exist
        (0x4010, Q),  # hart 2's mtimecmp
        (0x3FFC, D),  # the last msip slot, hart 4095
        (0xC000, D),  # past mtime
        (0xFFFC, D),
    ],
)
def test_unknown_or_bad_accesses_read_zero_and_drop_writes(offset: int, width: AccessWidth) -> None:
    clint, lines, timers, _ = make()
    before = clint.state()
    assert clint.handle_read(B + offset, width) == 0
    clint.handle_write(B + offset, width, width.mask)
    assert clint.state() == before
    assert not timers.calls and not any(line.events for line in lines)


def test_hart_count_is_bounded_by_the_aclint_spec() -> None:
    for bad in (0, c.MAX_HARTS + 1):
        with pytest.raises(ValueError, match="num_harts"):
            make(bad)
    with pytest.raises(ValueError, match="one MSIP line per hart"):
        Clint(B, 2, [RecordingIrqLine()], RecordingHartTimers(), FakeClock())
    clint, lines, timers, _ = make(c.MAX_HARTS)
    last = c.MAX_HARTS - 1
    clint.handle_write(B + 4 * last, D, 1)
    clint.handle_write(B + 0x4000 + 8 * last, Q, 42)
    assert lines[last].level and timers.deadlines == {last: 42}
    assert clint.handle_read(B + 0xBFF8, Q) == 0  # mtime, not a 4096th mtimecmp


def test_state_round_trip_resumes_on_a_new_clock() -> None:
    clint, _, _, clock = make(now=100)
    clint.handle_write(B + 0, D, 1)
    clint.handle_write(B + 0x4000, Q, 5000)
    clock.now = 400
    saved = clint.state()
    assert saved == ClintState(msip=(True, False), mtimecmp=(5000, (1 << 64) - 1), mtime=400)

    lines = [RecordingIrqLine(), RecordingIrqLine()]
    timers = RecordingHartTimers()
    new_clock = FakeClock(9_000_000)
    resumed = Clint.from_state(saved, B, lines, timers, new_clock)
    assert resumed.mtime() == 400
    new_clock.now += 10
    assert resumed.mtime() == 410
    assert lines[0].level and not lines[1].events
    assert timers.deadlines == {0: 5000, 1: (1 << 64) - 1}
    assert resumed.state().msip == saved.msip


@pytest.mark.parametrize(
    "state",
    [
        ClintState(msip=(), mtimecmp=()),
        ClintState(msip=(False,), mtimecmp=(1, 2)),
        ClintState(msip=(False,), mtimecmp=(1 << 64,)),
        ClintState(msip=(False,), mtimecmp=(0,), mtime=-1),
    ],
)
def test_from_state_rejects_impossible_states(state: ClintState) -> None:
    lines = [RecordingIrqLine() for _ in state.msip]
    with pytest.raises(ValueError):
        Clint.from_state(state, B, lines, RecordingHartTimers(), FakeClock())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=0xFFFF),
            st.sampled_from(list(AccessWidth)),
            st.integers(min_value=0, max_value=(1 << 64) - 1),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_random_guest_traffic_never_raises_and_stays_in_bounds(program: list) -> None:
    clint, lines, timers, clock = make(3)
    bus = MmioBus()
    bus.add(clint)
    for offset, width, value, is_read in program:
        clock.now += 3
        if is_read:
            assert 0 <= bus.read(B + offset, width) <= width.mask
        else:
            bus.write(B + offset, width, value)
        assert bus.device_errors == 0
        state = clint.state()
        assert all(line.level == msip for line, msip in zip(lines, state.msip, strict=True))
        assert all(0 <= v < 1 << 64 for v in state.mtimecmp)
        assert all(timers.deadlines.get(h, (1 << 64) - 1) == v for h, v in enumerate(state.mtimecmp))
