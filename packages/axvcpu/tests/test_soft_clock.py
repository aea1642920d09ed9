"""The soft riscv backend's machine timer stands still while its VM is paused (GuestClock)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("unicorn", reason="the soft backend runs on unicorn")

from axvcpu.backends.soft import SoftRiscvBackend  # noqa: E402

TICK_NS = 100  # 10 MHz


def test_mtime_is_frozen_while_paused_and_resumes_without_a_jump() -> None:
    backend = SoftRiscvBackend(1)
    try:
        backend.pause_clock()
        frozen = backend.mtime()
        host_before = time.monotonic_ns()
        time.sleep(0.2)
        assert backend.mtime() == frozen  # no tick while paused
        backend.resume_clock()
        resumed = backend.mtime()
        paused_ticks = (time.monotonic_ns() - host_before) // TICK_NS
        assert frozen <= resumed < frozen + paused_ticks // 4  # the pause is not added on resume
        deadline = time.monotonic() + 5
        while backend.mtime() == resumed and time.monotonic() < deadline:
            time.sleep(0.001)
        assert backend.mtime() > resumed  # and it runs again
        # the timer deadline follows the clock: mtime reaches a value when the deadline says
        target = backend.mtime() + 10_000
        assert backend._mtime_deadline(target) > time.monotonic()
    finally:
        backend.close()


def test_pause_and_resume_are_idempotent() -> None:
    backend = SoftRiscvBackend(1)
    try:
        backend.pause_clock()
        first = backend.mtime()
        time.sleep(0.01)
        backend.pause_clock()  # a second pause keeps the first freeze
        assert backend.mtime() == first
        backend.resume_clock()
        backend.resume_clock()
        assert backend.mtime() >= first
    finally:
        backend.close()
