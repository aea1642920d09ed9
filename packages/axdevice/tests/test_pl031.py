"""The PL031: counter from the injected clock, load, match alarm and its interrupt, bounds, state."""

import pytest

from axaddrspace import AccessWidth
from axdevice import Pl031, Pl031State, RecordingIrqLine
from axdevice import pl031 as p

B = p.PL031_BASE
D = AccessWidth.DWORD


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(now: float = 1_700_000_000.25) -> tuple[Pl031, RecordingIrqLine, FakeClock, list[float]]:
    clock = FakeClock(now)
    irq = RecordingIrqLine()
    deadlines: list[float] = []
    return Pl031(irq, clock, deadlines.append), irq, clock, deadlines


def test_counter_follows_the_clock_and_ids_match_linux() -> None:
    rtc, _, clock, _ = make()
    assert rtc.handle_read(B + p.RTCDR, D) == 1_700_000_000
    clock.now += 2.9
    assert rtc.handle_read(B + p.RTCDR, D) == 1_700_000_003
    ids = [rtc.handle_read(B + 0xFE0 + 4 * n, D) for n in range(8)]
    periphid = ids[0] | ids[1] << 8 | ids[2] << 16 | ids[3] << 24
    assert periphid & 0x000F_FFFF == 0x0004_1031  # Linux's rtc-pl031 id table (ARM)
    assert ids[4:] == [0x0D, 0xF0, 0x05, 0xB1]
    assert rtc.read(p.RTCCR) == 1 and rtc.emu_type.name == "Rtc"


def test_load_sets_the_counter_and_reads_back() -> None:
    rtc, _, clock, _ = make()
    rtc.write(p.RTCLR, 100)
    assert rtc.read(p.RTCDR) == 100 and rtc.read(p.RTCLR) == 100
    clock.now += 5
    assert rtc.read(p.RTCDR) == 105 and rtc.read(p.RTCLR) == 100


def test_counter_wraps_at_32_bits() -> None:
    rtc, _, clock, _ = make()
    rtc.write(p.RTCLR, 0xFFFF_FFFF)
    clock.now += 1
    assert rtc.read(p.RTCDR) == 0


def test_alarm_fires_at_the_match_and_is_masked_and_cleared() -> None:
    rtc, irq, clock, deadlines = make(now=1000.5)
    rtc.write(p.RTCMR, 10)
    rtc.write(p.RTCLR, 0)  # (with the power-on match value 0 this load would match at once)
    rtc.write(p.RTCIMSC, 1)
    assert deadlines[-1] == 1010.0 and rtc.deadline == 1010.0
    clock.now = 1009.99
    rtc.poll()
    assert not irq.events and rtc.read(p.RTCRIS) == 0
    clock.now = 1010.0
    rtc.poll()
    assert irq.events == [("level", True)] and rtc.read(p.RTCMIS) == 1
    assert rtc.deadline == 1010.0 + 2**32  # the next match is a wrap away
    rtc.write(p.RTCICR, 1)
    assert irq.events[-1] == ("level", False) and rtc.read(p.RTCRIS) == 0


def test_a_register_read_notices_a_passed_match_without_poll() -> None:
    rtc, _, clock, _ = make(now=50.0)
    rtc.write(p.RTCMR, 52)
    clock.now = 60.0
    assert rtc.read(p.RTCRIS) == 1 and rtc.read(p.RTCMIS) == 0


def test_match_equal_to_the_counter_when_written_fires_at_once() -> None:
    rtc, irq, _, _ = make(now=77.0)
    rtc.write(p.RTCIMSC, 1)
    rtc.write(p.RTCMR, 77)
    assert irq.level


def test_power_on_does_not_match_a_zero_clock() -> None:
    rtc, irq, _, _ = make(now=0.0)
    rtc.write(p.RTCIMSC, 1)
    assert rtc.read(p.RTCRIS) == 0 and not irq.events


def test_control_and_read_only_registers_ignore_writes() -> None:
    rtc, _, _, _ = make()
    before = rtc.state()
    for offset in (p.RTCDR, p.RTCCR, p.RTCRIS, p.RTCMIS, 0xFE0, 0x20):
        rtc.write(offset, 0)
    assert rtc.state() == before and rtc.read(p.RTCCR) == 1


@pytest.mark.parametrize("offset", [0x1, 0x6, 0x20, 0x100, 0xFDC, 0xFFE])
def test_unknown_and_unaligned_offsets_read_zero(offset: int) -> None:
    rtc, _, _, _ = make()
    assert rtc.handle_read(B + offset, AccessWidth.BYTE) == 0


def test_reads_are_masked_to_their_width() -> None:
    rtc, _, _, _ = make()
    rtc.write(p.RTCLR, 0x1234_5678)
    assert rtc.handle_read(B + p.RTCLR, AccessWidth.WORD) == 0x5678
    rtc.handle_write(B + p.RTCMR, AccessWidth.BYTE, 0x1FF)
    assert rtc.read(p.RTCMR) == 0xFF


def test_state_round_trip_continues_on_a_new_clock() -> None:
    rtc, _, _, _ = make()
    rtc.write(p.RTCLR, 500)
    rtc.write(p.RTCMR, 510)
    rtc.write(p.RTCIMSC, 1)
    state = rtc.state()
    assert state == Pl031State(counter=500, load=500, match=510, imsc=1, ris=0)
    clock = FakeClock(42.0)
    line = RecordingIrqLine()
    twin = Pl031.from_state(state, line, clock)
    assert twin.state() == state and twin.deadline == 52.0
    clock.now = 52.0
    twin.poll()
    assert line.level
    raised = Pl031.from_state(Pl031State(imsc=1, ris=1), RecordingIrqLine(), clock)
    assert raised.irq_level


def test_reset_clears_registers_but_not_the_time() -> None:
    rtc, irq, _, _ = make(now=77.0)
    rtc.write(p.RTCLR, 1000)
    rtc.write(p.RTCIMSC, 1)
    rtc.write(p.RTCMR, 1000)
    assert irq.level
    rtc.reset()
    assert rtc.state() == Pl031State(counter=1000) and irq.events[-1] == ("level", False)


@pytest.mark.parametrize(
    "bad",
    [Pl031State(counter=-1), Pl031State(match=1 << 32), Pl031State(load=1.5), Pl031State(imsc=2), Pl031State(ris=-1)],  # type: ignore[arg-type]
)
def test_from_state_refuses_impossible_states(bad: Pl031State) -> None:
    with pytest.raises(ValueError, match="Pl031State"):
        Pl031.from_state(bad, RecordingIrqLine(), FakeClock())
