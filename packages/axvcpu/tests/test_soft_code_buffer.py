"""Releasing an idle engine's translation buffer (code_buffer): the buffer is found, released
pages leave the resident set, the prologue survives so the engine runs code after it, and the
idle rule releases once per quiet stretch."""

from __future__ import annotations

import ctypes
import mmap
from pathlib import Path

import pytest
from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV64, Uc
from unicorn import riscv_const as rc

from axvcpu.backends.soft import code_buffer
from axvcpu.backends.soft.code_buffer import PROLOGUE_SPARE, CodeBuffer, IdleRelease, locate

BASE = 0x8000_0000
STEP = (0x00150513).to_bytes(4, "little") + (0x00A2B023).to_bytes(4, "little")  # addi a0, a0, 1; sd a0, 0(t0)
STEPS = 1 << 17  # 1 MiB of code; each store is tens of bytes of host code: several MiB of the buffer


def rss_kib(address: int) -> int:
    """Rss of the mapping of this process that holds ``address``."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            start, end = (int(part, 16) for part in head.split("-"))
            inside = start <= address < end
        elif inside and line.startswith("Rss:"):
            return int(line.split()[1])
    raise AssertionError(f"no mapping holds {address:#x}")


def new_engine(buffer_bytes: int = 32 << 20) -> Uc:
    uc: Uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)  # type: ignore[call-arg]
    uc.ctl_set_tcg_buffer_size(buffer_bytes)
    return uc


def run_program(uc: Uc) -> int:
    uc.reg_write(rc.UC_RISCV_REG_A0, 0)
    uc.reg_write(rc.UC_RISCV_REG_T0, BASE + (1 << 20))
    uc.emu_start(BASE, BASE + len(STEP) * STEPS)
    return int(uc.reg_read(rc.UC_RISCV_REG_A0))


def loaded(uc: Uc) -> Uc:
    uc.mem_map(BASE, 2 << 20)
    uc.mem_write(BASE, STEP * STEPS)
    return uc


def test_locate_finds_the_buffer_of_a_new_engine() -> None:
    uc = new_engine()
    found = locate(uc)
    assert found is not None
    assert found.end - found.start == (32 << 20) - mmap.PAGESIZE
    before = rss_kib(found.start)
    assert run_program(loaded(uc)) == STEPS
    assert rss_kib(found.start) > before  # the translations went there


def test_locate_gives_none_for_an_engine_already_initialised() -> None:
    uc = new_engine()
    uc.reg_read(rc.UC_RISCV_REG_PC)  # initialises the engine: its buffer is no longer new
    assert locate(uc) is None


def test_release_drops_the_translations_pages_and_the_engine_runs_on() -> None:
    uc = new_engine()
    found = locate(uc)
    assert found is not None
    loaded(uc)
    assert run_program(uc) == STEPS
    filled = rss_kib(found.start)
    assert filled > PROLOGUE_SPARE >> 10
    uc.ctl_flush_tb()
    assert found.release()
    assert rss_kib(found.start) <= PROLOGUE_SPARE >> 10  # only the prologue's pages are left
    assert run_program(uc) == STEPS  # the prologue survived: unicorn translates and runs again
    uc.ctl_flush_tb()
    assert run_program(uc) == STEPS


def test_release_keeps_the_start_and_zeroes_the_rest() -> None:
    size = PROLOGUE_SPARE + (256 << 10)
    area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # like unicorn's buffer
    area.write(b"\xaa" * size)
    address = ctypes.addressof(ctypes.c_char.from_buffer(area))
    assert CodeBuffer(address, address + size).release()
    assert area[:PROLOGUE_SPARE] == b"\xaa" * PROLOGUE_SPARE
    assert area[PROLOGUE_SPARE:] == bytes(size - PROLOGUE_SPARE)


def test_release_reports_a_refusal() -> None:
    assert not CodeBuffer(0x1000, 0x1000 + PROLOGUE_SPARE).release()  # nothing past the prologue


class CountingBuffer(CodeBuffer):
    def release(self) -> bool:
        self.count = getattr(self, "count", 0) + 1
        return True


def waits(rule: IdleRelease, starts: list[float], length: float = 0.01) -> list[bool]:
    return [rule.waited(start, start + length) for start in starts]


def test_idle_rule_releases_once_per_quiet_stretch() -> None:
    rule = IdleRelease(CountingBuffer(0, 0), idle_seconds=1.0, busy_gap=0.05)
    ticks = [i * 0.011 for i in range(200)]  # 10 ms waits, 1 ms between: 2.2 s of idling
    due = waits(rule, ticks)
    first = due.index(True)
    assert 0.98 <= ticks[first] + 0.01 < 1.02
    assert rule.release()
    assert not any(waits(rule, [t + 2.3 for t in ticks]))  # the same stretch goes on: once only
    # work (100 ms out of the waits) starts a new stretch, which releases again a second later
    later = [5.0 + i * 0.011 for i in range(200)]
    assert any(waits(rule, later))


def test_idle_rule_ignores_the_gap_that_follows_a_release() -> None:
    rule = IdleRelease(CountingBuffer(0, 0), idle_seconds=1.0, busy_gap=0.05)
    assert waits(rule, [i * 0.011 for i in range(100)])[-1]  # ends at 1.099 s
    rule.release()
    assert not rule.waited(1.3, 1.31)  # 200 ms translating the idle loop again: not work
    assert not any(waits(rule, [1.32 + i * 0.011 for i in range(200)]))
    assert not rule.waited(4.0, 4.01)  # work: a new stretch
    assert waits(rule, [4.02 + i * 0.011 for i in range(100)])[-1]


def test_idle_rule_keeps_a_busy_hart() -> None:
    rule = IdleRelease(CountingBuffer(0, 0), idle_seconds=1.0, busy_gap=0.05)
    assert not any(waits(rule, [i * 0.1 for i in range(50)]))  # 90 ms of work between waits


def test_idle_rule_without_a_buffer_never_releases() -> None:
    rule = IdleRelease(None, idle_seconds=0.0)
    assert not rule.waited(0.0, 10.0)
    assert not rule.release()


def test_without_madvise_nothing_is_released(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoLibc:
        madvise = None
        malloc_trim = None

    monkeypatch.setattr(code_buffer, "_libc", NoLibc())
    assert not CodeBuffer(0x1000, 0x1000 + 2 * PROLOGUE_SPARE).release()


def test_idle_rule_takes_the_bounds_in_force_when_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code_buffer, "IDLE_SECONDS", 0.25)
    monkeypatch.setattr(code_buffer, "BUSY_GAP", 0.5)
    rule = IdleRelease(CountingBuffer(0, 0))
    assert (rule.idle_seconds, rule.busy_gap) == (0.25, 0.5)
