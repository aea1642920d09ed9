"""A soft riscv hart that has only waited for interrupts for a while gives its translated code
back (code_buffer.IdleRelease in RiscvSoftVCpu.wait_for_interrupt), once, and runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from axvcpu import Halt
from axvcpu.backends.soft import code_buffer

from .riscv_asm import requires_riscv_toolchain
from .soft_machine import DATA, SoftMachine

pytestmark = requires_riscv_toolchain

STEPS = 65536
PROGRAM = f"""
  li t0, DATA
  li a0, 0
  .rept {STEPS}
  addi a0, a0, 1
  sd a0, 0(t0)
  .endr
1: wfi
  j 1b
"""
"""~0.5 MiB of guest code (adds and stores): some MiB of host code in the translation buffer."""
MAX_WAITS = 3000
"""10 ms waits before giving up on a release that should come after IDLE_SECONDS (0.2 s)."""


def rwx_rss_kib() -> int:
    """Rss of this process's anonymous writable+executable mappings (the translation buffers)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0]:
            inside = head[1] == "rwxp" and len(head) == 5
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


def halted_machine(monkeypatch: pytest.MonkeyPatch, busy_gap: float) -> SoftMachine:
    """The program run to its wfi on a hart whose idle rule has these bounds."""
    monkeypatch.setattr(code_buffer, "IDLE_SECONDS", 0.2)
    monkeypatch.setattr(code_buffer, "BUSY_GAP", busy_gap)
    m = SoftMachine(PROGRAM)
    m.run_until_halt(max_runs=100_000)
    assert m.reg("a0") == STEPS
    return m


def test_an_idle_hart_gives_its_code_back_once_and_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    m = halted_machine(monkeypatch, busy_gap=60.0)  # a loaded test machine's gaps are not work
    try:
        filled = rwx_rss_kib()
        flushes = m.vcpu.translation_flushes
        for _ in range(MAX_WAITS):  # 10 ms waits, as the VMM's vCPU loop does
            m.vcpu.wait_for_interrupt(0.01)
            if m.vcpu.translation_flushes != flushes:
                break
        assert m.vcpu.translation_flushes == flushes + 1
        assert rwx_rss_kib() <= filled - 1024  # at least 1 MiB of host code handed back
        for _ in range(60):  # as long again and more: the same quiet stretch releases once
            m.vcpu.wait_for_interrupt(0.01)
        assert m.vcpu.translation_flushes == flushes + 1
        assert isinstance(m.vcpu.run(), Halt)  # translates its idle loop again and halts
        m.put_u64(DATA, 0)
        m.vcpu.set_register("pc", m.program.base)
        m.run_until_halt(max_runs=100_000)  # all of the code again, into the emptied buffer
        assert m.reg("a0") == STEPS and m.u64(DATA) == STEPS
    finally:
        m.close()


def test_a_hart_that_works_between_waits_keeps_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    m = halted_machine(monkeypatch, busy_gap=0.0)  # any time out of the waits is work
    try:
        flushes = m.vcpu.translation_flushes
        for _ in range(60):  # 0.6 s or more of 10 ms waits, each after a moment of "work"
            m.vcpu.wait_for_interrupt(0.01)
        assert m.vcpu.translation_flushes == flushes
    finally:
        m.close()
