"""The C engine takes a hart's writes to its own mtimecmp (``serve_mtimecmp_writes``) and
replays the last value to the MMIO handler: once per slice, and before the handler sees any
other access to the window."""

from __future__ import annotations

from axaddrspace import AccessWidth
from axvcpu import Halt

from .riscv_asm import requires_riscv_toolchain
from .soft_machine import FakeMmio, SoftMachine

pytestmark = requires_riscv_toolchain

CLINT = 0x0200_0000
MSIP0 = CLINT
MTIMECMP0 = CLINT + 0x4000
ALL_ONES = (1 << 64) - 1
INT = 1 << 63

SETUP = f"""
.equ MTIMECMP0, {MTIMECMP0:#x}
.equ MSIP0, {MSIP0:#x}
"""


def clint_machine(machines: list[SoftMachine], source: str, engine: str = "c", harts: int = 1) -> SoftMachine:
    if engine == "c":
        from .conftest import soft_engine_available

        soft_engine_available()
    mmio = FakeMmio()
    m = SoftMachine(SETUP + source, harts=harts, mmio=mmio, mmio_ranges=[(CLINT, 0x10000)], engine=engine)
    machines.append(m)
    m.backend.serve_mtimecmp_writes(MTIMECMP0)
    return m


def writes(m: SoftMachine) -> list[tuple[int, AccessWidth, int]]:
    assert m.mmio is not None
    return m.mmio.writes


HALVES_THEN_WHOLE = """
    li t0, MTIMECMP0
    li t1, 0x1234
    sw t1, 0(t0)                # low half
    li t1, 0x5678
    sw t1, 4(t0)                # high half
    li t1, 0x7000000000000000
    sd t1, 0(t0)                # the whole register
    ld a5, 0(t0)
    lwu a6, 4(t0)
    wfi
"""


def test_own_mtimecmp_writes_stay_in_c_and_reach_the_device_once_per_slice(machines: list[SoftMachine]) -> None:
    m = clint_machine(machines, HALVES_THEN_WHOLE)
    assert m.vcpu.run() == Halt()
    assert (m.reg("a5"), m.reg("a6")) == (0x7000000000000000, 0x70000000)  # read back in C
    assert writes(m) == [(MTIMECMP0, AccessWidth.QWORD, 0x7000000000000000)]  # the last value, once
    assert m.mmio is not None and m.mmio.reads == []
    assert m.vcpu.mtimecmp_writes == 4  # unicorn delivers the 8-byte store as two 4-byte halves


def test_the_python_engine_sends_every_access_to_the_device(machines: list[SoftMachine]) -> None:
    m = clint_machine(machines, HALVES_THEN_WHOLE, engine="python")
    m.run_until_halt()
    assert [(addr, value) for addr, _, value in writes(m)] == [
        (MTIMECMP0, 0x1234),
        (MTIMECMP0 + 4, 0x5678),
        (MTIMECMP0, 0),  # the 8-byte store, in the two halves unicorn delivers
        (MTIMECMP0 + 4, 0x70000000),
    ]
    assert m.mmio is not None and len(m.mmio.reads) == 3
    assert m.vcpu.mtimecmp_writes == 0


def test_a_posted_value_reaches_the_device_before_another_access_to_the_window(machines: list[SoftMachine]) -> None:
    m = clint_machine(
        machines,
        """
        li t0, MTIMECMP0
        li t1, 0x1234
        sw t1, 0(t0)            # low half: merged with the reset value, all ones
        li t0, MSIP0
        li t1, 1
        sw t1, 0(t0)
        wfi
        """,
    )
    assert m.vcpu.run() == Halt()
    assert writes(m) == [(MTIMECMP0, AccessWidth.QWORD, 0xFFFFFFFF00001234), (MSIP0, AccessWidth.DWORD, 1)]


def test_another_harts_mtimecmp_goes_to_the_device(machines: list[SoftMachine]) -> None:
    m = clint_machine(
        machines,
        """
        bnez a0, 1f
        li t0, MTIMECMP0
        li t1, 99
        sd t1, 8(t0)            # hart 1's register, written by hart 0
    1:  wfi
        """,
        harts=2,
    )
    assert m.vcpu.run() == Halt()
    assert writes(m) == [(MTIMECMP0 + 8, AccessWidth.DWORD, 99), (MTIMECMP0 + 12, AccessWidth.DWORD, 0)]
    assert m.vcpu.mtimecmp_writes == 0


def test_a_deadline_written_in_c_interrupts_the_hart(machines: list[SoftMachine]) -> None:
    m = clint_machine(
        machines,
        """
        la t0, mtrap
        csrw mtvec, t0
        li t0, 0x80
        csrs mie, t0            # MTIE
        csrsi mstatus, 0x8      # MIE
        rdtime t1
        li t2, 2000             # 200 us ahead
        add t1, t1, t2
        li t0, MTIMECMP0
        sd t1, 0(t0)
    spin:
        addi a4, a4, 1
        j spin
    .align 4
    mtrap:
        csrr a1, mcause
        csrw mie, zero
    2:  wfi
        j 2b
        """,
    )
    assert m.vcpu.run() == Halt()  # one slice: entered in C, then the handler's wfi
    assert m.reg("a1") == INT | 7
    assert m.reg("a4") > 0
    assert len(writes(m)) == 1
