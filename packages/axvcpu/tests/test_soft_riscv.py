"""The soft backend running small riscv64 programs: MMIO, traps, page faults, time, interrupts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from axaddrspace import AccessWidth, AddrSpaceError, GuestMemoryRegion, GuestPhysAddr, MappingFlags
from axvcpu import Halt, Hypercall, Nothing
from axvcpu.riscv_sbi import EID_HVC, SbiCodeFence

from .riscv_asm import RAM_BASE, assemble, encode, requires_riscv_toolchain
from .soft_machine import DATA, U64, UART, FakeMmio, SoftMachine, build

pytestmark = requires_riscv_toolchain

INT = 1 << 63
HALT_LOOP = "1: wfi\n j 1b\n"

# An M-mode trap handler that records mcause, mepc, mtval in a1..a3 and halts.
M_HANDLER = """
.align 4
mtrap:
  csrr a1, mcause
  csrr a2, mepc
  csrr a3, mtval
  csrw mie, zero
2: wfi
  j 2b
"""

S_HANDLER = """
.align 4
strap:
  csrr a4, scause
  csrr a5, sepc
  csrr a6, stval
  csrw sie, zero
3: wfi
  j 3b
"""


# -- 1: MMIO through the handler ---------------------------------------------------------------


def test_mmio_store_reaches_the_handler_and_loads_get_its_values(machines: list[SoftMachine]) -> None:
    bus = FakeMmio({UART + 4: 0x1234_5678, UART + 8: 0x80, UART + 16: 0x8000})
    m = build(
        machines,
        """
        li t0, UART
        li t1, 0x41
        sb t1, 0(t0)
        lw a1, 4(t0)
        lb a2, 8(t0)
        lhu a3, 16(t0)
        sd a1, 24(t0)
        """
        + HALT_LOOP,
        mmio=bus,
    )
    m.run_until_halt()
    # unicorn's mmio_map splits 8-byte accesses into two 4-byte ones, low half first
    assert bus.writes == [
        (UART, AccessWidth.BYTE, 0x41),
        (UART + 24, AccessWidth.DWORD, 0x1234_5678),
        (UART + 28, AccessWidth.DWORD, 0),
    ]
    assert bus.reads == [(UART + 4, AccessWidth.DWORD), (UART + 8, AccessWidth.BYTE), (UART + 16, AccessWidth.WORD)]
    assert m.reg("a1") == 0x1234_5678
    assert m.reg("a2") == -0x80 & U64  # lb sign-extends the handler's 0x80
    assert m.reg("a3") == 0x8000  # lhu does not


def test_mmio_accesses_at_block_edges_happen_exactly_once(machines: list[SoftMachine]) -> None:
    bus = FakeMmio({UART: 7})
    m = build(
        machines,
        """
        li t0, UART
        li t2, 3
    loop:
        sw t2, 0(t0)          # first instruction of a translation block
        addi t2, t2, -1
        lw t1, 0(t0)
        bnez t2, loop
        c.sw a0, 4(s0)        # compressed store, s0 = UART
        """
        + HALT_LOOP,
        mmio=bus,
    )
    m.vcpu.set_register("s0", UART)
    m.vcpu.set_register("a0", 0x99)
    m.run_until_halt()
    assert bus.writes == [
        (UART, AccessWidth.DWORD, 3),
        (UART, AccessWidth.DWORD, 2),
        (UART, AccessWidth.DWORD, 1),
        (UART + 4, AccessWidth.DWORD, 0x99),
    ]
    assert len(bus.reads) == 3


# -- 2: ecall and delegation -----------------------------------------------------------------------


ECALL_PROGRAM = (
    """
    la t0, mtrap
    csrw mtvec, t0
    la t0, strap
    csrw stvec, t0
    """
    + HALT_LOOP
    + """
ecall_site:
    ecall
    """
    + HALT_LOOP
    + M_HANDLER
    + S_HANDLER
)


def _ecall_from(machines: list[SoftMachine], priv: int, medeleg: int = 0) -> tuple[SoftMachine, int]:
    m = build(machines, ECALL_PROGRAM)
    m.run_until_halt()  # mtvec and stvec set
    ecall_pc = m.sym("ecall_site")
    m.vcpu.set_register("medeleg", medeleg)
    m.vcpu.set_register("priv", priv)
    m.vcpu.set_register("pc", ecall_pc)
    m.run_until_halt()
    return m, ecall_pc


@pytest.mark.parametrize(("priv", "cause"), [(0, 8), (1, 9), (3, 11)])
def test_ecall_reaches_the_m_handler_with_the_cause_of_its_privilege(
    machines: list[SoftMachine], priv: int, cause: int
) -> None:
    m, ecall_pc = _ecall_from(machines, priv)
    assert m.reg("a1") == cause
    assert m.reg("a2") == ecall_pc
    assert m.reg("priv") == 3
    assert (m.reg("mstatus") >> 11) & 3 == priv  # MPP records where the trap came from


@pytest.mark.parametrize("priv", [0, 1])
def test_an_ecall_with_axvisors_hypercall_eid_is_a_hypercall_exit_not_a_trap(
    machines: list[SoftMachine], priv: int
) -> None:
    m = build(machines, ECALL_PROGRAM)
    m.run_until_halt()
    ecall_pc = m.sym("ecall_site")
    m.vcpu.set_register("priv", priv)
    m.vcpu.set_register("pc", ecall_pc)
    for n, name in enumerate(("a0", "a1", "a2", "a3", "a4", "a5")):
        m.vcpu.set_register(name, 0x100 + n)
    m.vcpu.set_register("a6", 2)
    m.vcpu.set_register("a7", EID_HVC)
    exits = []
    while not isinstance(exit_reason := m.vcpu.run(), Hypercall):
        assert isinstance(exit_reason, Nothing), exit_reason
        exits.append(exit_reason)
    assert exit_reason == Hypercall(2, (0x100, 0x101, 0x102, 0x103, 0x104, 0x105))
    assert m.reg("pc") == ecall_pc + 4  # the VMM writes a0/a1 and the guest goes on after the ecall
    assert m.reg("priv") == priv and m.reg("a1") == 0x101  # no trap was entered


def test_an_m_mode_ecall_with_the_hypercall_eid_still_traps(machines: list[SoftMachine]) -> None:
    m = build(machines, ECALL_PROGRAM)
    m.run_until_halt()
    m.vcpu.set_register("priv", 3)
    m.vcpu.set_register("pc", m.sym("ecall_site"))
    m.vcpu.set_register("a7", EID_HVC)
    m.run_until_halt()
    assert m.reg("a1") == 11  # the M handler saw an ecall from M


def test_ecall_from_u_delegated_by_medeleg_goes_to_the_s_handler(machines: list[SoftMachine]) -> None:
    m, ecall_pc = _ecall_from(machines, priv=0, medeleg=1 << 8)
    assert m.reg("priv") == 1
    assert m.reg("a4") == 8 and m.reg("a5") == ecall_pc
    assert m.reg("a1") == 0  # the M handler never ran
    assert m.reg("sstatus") & (1 << 8) == 0  # SPP = U


@pytest.mark.parametrize(
    ("priv", "a7", "a6", "announces"),
    [
        (1, 0x5246_4E43, 0, True),  # SBI RFENCE remote_fence_i
        (1, 0x0048_534D, 0, True),  # SBI HSM hart_start
        (1, 0x05, 0, True),  # legacy remote_fence_i
        (1, 0x5246_4E43, 1, False),  # remote_sfence_vma: no code change
        (1, 0x5449_4D45, 0, False),  # TIME set_timer
        (0, 0x5246_4E43, 0, False),  # from U mode it is not an SBI call
    ],
)
def test_sbi_calls_that_announce_new_code_make_every_hart_drop_translations(
    machines: list[SoftMachine], priv: int, a7: int, a6: int, announces: bool
) -> None:
    m = build(machines, ECALL_PROGRAM)
    m.backend.set_ecall_observer(SbiCodeFence())  # what the riscv virt machine installs
    m.run_until_halt()
    before, flushes = m.backend.code_generation, m.vcpu.translation_flushes
    m.vcpu.set_register("a7", a7)
    m.vcpu.set_register("a6", a6)
    m.vcpu.set_register("priv", priv)
    m.vcpu.set_register("pc", m.sym("ecall_site"))
    m.run_until_halt()
    assert m.backend.code_generation == before + int(announces)
    # Every hart, the caller included, compares generations between slices (here at its wfi).
    assert m.vcpu.translation_flushes == flushes + int(announces)


class RecordingObserver:
    """An ecall observer that notes what it was shown and answers as told."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list[tuple[int, int, int, int]] = []

    def on_ecall(self, hart: int, priv: int, gpr: Callable[[int], int]) -> bool:
        self.calls.append((hart, priv, gpr(17), gpr(0)))
        return self.answer


@pytest.mark.parametrize("answer", [True, False])
def test_the_ecall_observer_sees_the_hart_its_privilege_and_registers_and_decides_the_flush(
    machines: list[SoftMachine], answer: bool
) -> None:
    m = build(machines, ECALL_PROGRAM, harts=2)
    observer = RecordingObserver(answer)
    m.backend.set_ecall_observer(observer)
    m.run_until_halt(hart=1)
    m.vcpus[1].set_register("a7", 0x1234)
    m.vcpus[1].set_register("priv", 1)
    m.vcpus[1].set_register("pc", m.sym("ecall_site"))
    m.run_until_halt(hart=1)
    assert observer.calls == [(1, 1, 0x1234, 0)]
    assert m.reg("a1", 1) == 9  # the trap is entered whatever the observer says
    assert m.backend.code_generation == int(answer)
    m.run_until_halt(hart=0)  # the other hart compares generations between slices
    assert m.vcpus[0].translation_flushes == int(answer)


def test_without_an_ecall_observer_no_ecall_drops_translations(machines: list[SoftMachine]) -> None:
    """The CPU model knows no firmware ABI: an SBI remote fence.i is just an ecall to it."""
    m = build(machines, ECALL_PROGRAM)
    m.run_until_halt()
    assert m.backend.ecall_observer is None
    m.vcpu.set_register("a7", 0x5246_4E43)  # SBI RFENCE
    m.vcpu.set_register("a6", 0)  # remote_fence_i
    m.vcpu.set_register("priv", 1)
    m.vcpu.set_register("pc", m.sym("ecall_site"))
    m.run_until_halt()
    assert m.reg("a1") == 9
    assert (m.backend.code_generation, m.vcpu.translation_flushes) == (0, 0)


def test_ecall_from_s_is_not_delegated_by_the_u_bit(machines: list[SoftMachine]) -> None:
    m, _ = _ecall_from(machines, priv=1, medeleg=1 << 8)
    assert m.reg("priv") == 3 and m.reg("a1") == 9


# -- 3: page faults with the right stval ------------------------------------------------------------

PT_ROOT = RAM_BASE + 0x20_0000
PT_L1 = PT_ROOT + 0x1000
PT_L0 = PT_ROOT + 0x2000
DATA_PAGE = RAM_BASE + 0x30_0000
V, R, W, X, U_, A, D = 1, 2, 4, 8, 16, 64, 128


def _sv39_tables(m: SoftMachine) -> int:
    """RAM identity-mapped by a gigapage; VA 0x4000_0000 -> DATA_PAGE; 0x4000_1000 unmapped."""
    m.put_u64(PT_ROOT + 8 * 2, (RAM_BASE >> 12) << 10 | V | R | W | X | A | D)
    m.put_u64(PT_ROOT + 8 * 1, (PT_L1 >> 12) << 10 | V)
    m.put_u64(PT_L1 + 8 * 0, (PT_L0 >> 12) << 10 | V)
    m.put_u64(PT_L0 + 8 * 0, (DATA_PAGE >> 12) << 10 | V | R | W | A | D)
    m.put_u64(DATA_PAGE, 0x1122_3344_5566_7788)
    return 8 << 60 | PT_ROOT >> 12


PAGING_PROGRAM = (
    """
    la t0, strap
    csrw stvec, t0
    """
    + HALT_LOOP
    + """
access_site:
    ld a1, 0(t0)
    """
    + HALT_LOOP
    + S_HANDLER
)


@pytest.mark.parametrize(
    ("insn", "base", "expected_stval", "cause"),
    [
        ("ld a1, 0(t0)", 0x4000_0000, None, None),  # mapped: loads the value
        ("ld a1, 8(t0)", 0x4000_1000, 0x4000_1008, 13),
        ("lw a1, -4(t0)", 0x4000_2004, 0x4000_2000, 13),
        ("ld a1, 0(t0)", 0x4000_0FFC, 0x4000_1000, 13),  # crosses into the unmapped page
        ("c.ld a1, 16(s0)", 0x4000_1000, 0x4000_1010, 13),  # compressed form, base in s0
        ("sd a1, 0(t0)", 0x4000_1000, 0x4000_1000, 15),
        ("amoadd.d a1, a1, (t0)", 0x4000_1000, 0x4000_1000, 15),
        ("ld a1, 0(t0)", 0x0000_4000_0000_0000, 0x0000_4000_0000_0000, 13),  # not sign-extended
    ],
)
def test_page_fault_reports_the_faulting_address(
    machines: list[SoftMachine], insn: str, base: int, expected_stval: int | None, cause: int | None
) -> None:
    m = build(machines, PAGING_PROGRAM.replace("ld a1, 0(t0)", insn))
    m.run_until_halt()
    satp = _sv39_tables(m)
    access_pc = m.sym("access_site")
    m.vcpu.set_register("medeleg", 1 << 13 | 1 << 15)
    m.vcpu.set_register("satp", satp)
    m.vcpu.set_register("priv", 1)
    m.vcpu.set_register("t0", base)
    m.vcpu.set_register("s0", base)
    m.vcpu.set_register("pc", access_pc)
    m.run_until_halt()
    if cause is None:
        assert m.reg("a1") == 0x1122_3344_5566_7788 and m.reg("a4") == 0
        return
    assert m.reg("a4") == cause
    assert m.reg("a5") == access_pc
    assert m.reg("a6") == expected_stval


def test_instruction_page_fault_reports_the_pc(machines: list[SoftMachine]) -> None:
    m = build(machines, "la t0, strap\n csrw stvec, t0\n" + HALT_LOOP + S_HANDLER)
    m.run_until_halt()
    m.vcpu.set_register("medeleg", 1 << 12)
    m.vcpu.set_register("satp", _sv39_tables(m))
    m.vcpu.set_register("priv", 1)
    m.vcpu.set_register("pc", 0x4000_1000)  # unmapped page
    m.run_until_halt()
    assert (m.reg("a4"), m.reg("a5"), m.reg("a6")) == (12, 0x4000_1000, 0x4000_1000)


# -- 4: rdtime ----------------------------------------------------------------------------------------


def test_rdtime_returns_increasing_mtime_without_entering_the_guest_handler(machines: list[SoftMachine]) -> None:
    m = build(
        machines,
        """
        la t0, mtrap
        csrw mtvec, t0
        rdtime a4
        li t1, 200000
    spin:
        addi t1, t1, -1
        bnez t1, spin
        csrr a5, time
        """
        + HALT_LOOP
        + M_HANDLER,
    )
    before = m.backend.mtime()
    m.run_until_halt()
    after = m.backend.mtime()
    first, second = m.reg("a4"), m.reg("a5")
    assert before <= first < second <= after
    assert m.reg("a1") == 0  # the guest's trap handler never ran
    assert m.vcpu.time_reads == 2


def test_writing_time_is_an_illegal_instruction_with_its_bits_in_mtval(machines: list[SoftMachine]) -> None:
    m = build(machines, "la t0, mtrap\n csrw mtvec, t0\n csrw time, t0\n" + HALT_LOOP + M_HANDLER)
    m.run_until_halt()
    assert m.reg("a1") == 2
    assert m.reg("a3") == 0xC012_9073  # csrrw x0, time, t0


def test_rdtime_in_s_mode_under_sv39(machines: list[SoftMachine]) -> None:
    m = build(machines, "rdtime a1\n" + HALT_LOOP)
    m.vcpu.set_register("satp", _sv39_tables(m))
    m.vcpu.set_register("priv", 1)
    m.run_until_halt()
    assert 0 < m.reg("a1") <= m.backend.mtime()


# -- 5: the machine timer interrupt -----------------------------------------------------------------

TIMER_PROGRAM = (
    """
    la t0, mtrap
    csrw mtvec, t0
    li t0, 0x80
    csrs mie, t0
    csrsi mstatus, MSTATUS_MIE
spin:
    addi a7, a7, 1
    j spin
"""
    + M_HANDLER
)


def test_mtimecmp_in_the_past_raises_the_machine_timer_interrupt(machines: list[SoftMachine]) -> None:
    m = build(machines, TIMER_PROGRAM, slice_instructions=20_000)
    m.vcpu.run()  # mtvec and mie set, spinning; no timer armed yet
    assert m.reg("a1") == 0
    m.backend.set_mtimecmp(0, m.backend.mtime())
    m.run_until_halt()
    assert m.reg("a1") == INT | 7
    assert m.sym("spin") <= m.reg("a2") <= m.sym("spin") + 2
    mstatus = m.reg("mstatus")
    assert mstatus & 0x8 == 0 and mstatus & 0x80  # MIE cleared, MPIE holds the old MIE


def test_vectored_mtvec_sends_interrupts_to_their_slot_and_exceptions_to_the_base(
    machines: list[SoftMachine],
) -> None:
    m = build(
        machines,
        """
        la t0, vectors
        ori t0, t0, 1             # mode: Vectored
        csrw mtvec, t0
        li t0, 0x80
        csrs mie, t0
        csrsi mstatus, MSTATUS_MIE
    spin:
        addi a7, a7, 1
        j spin
    .align 6
    .option push
    .option norvc                 # 4-byte slots
    vectors:
        j on_exception            # slot 0: every synchronous exception
        .rept 6
        j bad_slot
        .endr
        j on_timer                # slot 7: MTI
    .option pop
    bad_slot:
        li a1, -1
        j halt
    on_timer:
        csrr a1, mcause
        ecall                     # and an exception from the handler
    halt:
        csrw mie, zero
    1:  wfi
        j 1b
    on_exception:
        csrr a2, mcause
        j halt
        """,
        slice_instructions=10_000,
    )
    m.backend.set_mtimecmp(0, 0)
    m.run_until_halt()
    assert m.reg("a1") == INT | 7
    assert m.reg("a2") == 11


def test_a_future_mtimecmp_wakes_a_hart_in_wfi_at_its_deadline(machines: list[SoftMachine]) -> None:
    m = build(
        machines,
        """
        la t0, mtrap
        csrw mtvec, t0
        li t0, 0x80
        csrs mie, t0
        csrsi mstatus, MSTATUS_MIE
        wfi
        """
        + HALT_LOOP
        + M_HANDLER,
    )
    deadline = m.backend.mtime() + 300_000  # 30 ms ahead
    m.backend.set_mtimecmp(0, deadline)
    assert isinstance(m.vcpu.run(), Halt)
    assert m.vcpu.wait_for_interrupt(60.0)  # woken by the timer; False: the 60 s timeout ended the wait
    assert m.backend.mtime() >= deadline  # it slept until the timer was due, not less
    m.run_until_halt()
    assert m.reg("a1") == INT | 7


def test_raising_mtimecmp_above_mtime_clears_the_pending_timer(machines: list[SoftMachine]) -> None:
    m = build(machines, TIMER_PROGRAM, slice_instructions=20_000)
    m.vcpu.run()
    m.backend.set_mtimecmp(0, m.backend.mtime())
    m.backend.set_mtimecmp(0, m.backend.mtime() + 10**9)
    for _ in range(3):
        assert isinstance(m.vcpu.run(), Nothing)
    assert m.reg("a1") == 0


# -- 6: an IPI from another thread wakes a hart in wfi ------------------------------------------------


def test_msip_from_another_thread_wakes_a_hart_blocked_in_wfi(machines: list[SoftMachine]) -> None:
    m = build(
        machines,
        """
        la t0, mtrap
        csrw mtvec, t0
        li t0, 0x8
        csrs mie, t0
        csrsi mstatus, MSTATUS_MIE
        wfi
        """
        + HALT_LOOP
        + M_HANDLER,
    )
    assert isinstance(m.vcpu.run(), Halt)
    line = m.backend.hart_line(0, 3)
    raised: list[bool] = []

    def raise_msip() -> None:
        raised.append(True)
        line.set_level(True)

    timer = threading.Timer(0.05, raise_msip)
    timer.start()
    assert m.vcpu.wait_for_interrupt(60.0)  # woken by the line; False: the 60 s timeout ended the wait
    assert raised  # woken by the line, not before it rose
    timer.join()
    m.run_until_halt()
    assert m.reg("a1") == INT | 3


# Firmware parked with interrupts masked (mstatus.MIE clear) waits as OpenSBI 1.1's secondary
# harts wait for the cold-boot hart: wfi, then look in mip for the IPI. Unicorn's own mip never
# holds the M-level bits, so the backend must answer that read.
MIP_AFTER_WFI = (
    """
    li t0, 0x888              # MSIE, MTIE, MEIE: wfi wakes for them, none is taken
    csrs mie, t0
1:  wfi
read_mip:
    READ_MIP
    and a1, a1, t0
    beqz a1, 1b
    csrw mie, zero
"""
    + HALT_LOOP
)


@pytest.mark.parametrize("read_mip", ["csrr a1, mip", "csrrsi a1, mip, 2"])
@pytest.mark.parametrize("irq", [3, 7, 11])
def test_a_read_of_mip_after_wfi_sees_the_pending_m_level_interrupt(
    machines: list[SoftMachine], irq: int, read_mip: str
) -> None:
    m = build(machines, MIP_AFTER_WFI.replace("READ_MIP", read_mip))
    assert m.vcpu.run() == Halt()
    if irq == 7:
        m.backend.set_mtimecmp(0, 0)
    else:
        m.backend.hart_line(0, irq).set_level(True)
    m.run_until_halt()
    assert m.reg("a1") == 1 << irq
    assert m.reg("pc") > m.sym("read_mip")
    assert m.reg("mcause") == 0  # waited for, never taken
    assert m.reg("mip") & 2 == (2 if "csrrsi" in read_mip else 0)  # the instruction's write happened


def test_wait_for_interrupt_times_out_when_nothing_comes(machines: list[SoftMachine]) -> None:
    m = build(machines, "li t0, 0x8\n csrs mie, t0\n" + HALT_LOOP)
    assert isinstance(m.vcpu.run(), Halt)
    m.backend.hart_line(0, 9).set_level(True)  # SEIP: not enabled in mie, must not wake
    before = m.backend.mtime()
    assert m.vcpu.wait_for_interrupt(0.1) is False  # the timeout ended it
    assert m.backend.mtime() - before >= 900_000  # the whole 0.1 s on the 10 MHz clock: no early wake
    assert isinstance(m.vcpu.run(), Halt)  # and nothing is pending for the hart


# -- 7: SEIP delivered to S mode through delegation ----------------------------------------------------


def test_seip_from_a_hart_line_reaches_the_s_handler(machines: list[SoftMachine]) -> None:
    m = build(
        machines,
        """
        la t0, strap
        csrw stvec, t0
        li t0, 0x200
        csrw mideleg, t0
        csrs mie, t0
        li t0, MPP_MASK
        csrc mstatus, t0
        li t0, MPP_S
        csrs mstatus, t0
        la t0, s_spin
        csrw mepc, t0
        mret
    s_spin:
        csrsi sstatus, MSTATUS_SIE
    1:  addi a7, a7, 1
        j 1b
        """
        + S_HANDLER,
        slice_instructions=10_000,
    )
    assert isinstance(m.vcpu.run(), Nothing)
    assert m.reg("priv") == 1 and m.reg("a4") == 0
    m.backend.hart_line(0, 9).set_level(True)
    m.run_until_halt()
    assert m.reg("a4") == INT | 9
    assert m.reg("priv") == 1
    assert m.reg("mcause") == 0  # M mode never saw it


# -- 8: wfi ---------------------------------------------------------------------------------------------


def test_wfi_returns_halt_with_the_pc_after_it(machines: list[SoftMachine]) -> None:
    m = build(machines, "li a1, 5\n wfi\nafter_wfi:\n li a1, 6\n" + HALT_LOOP)
    assert m.vcpu.run() == Halt()
    assert m.reg("a1") == 5
    assert m.reg("pc") == m.sym("after_wfi")
    assert m.vcpu.run() == Halt()
    assert m.reg("a1") == 6


def test_wfi_with_an_enabled_pending_interrupt_does_not_halt(machines: list[SoftMachine]) -> None:
    # MSIE enabled in mie but mstatus.MIE clear: wfi completes, the interrupt is not taken.
    m = build(machines, "li t0, 0x8\n csrs mie, t0\n wfi\n li a1, 6\n" + HALT_LOOP)
    m.backend.hart_line(0, 3).set_level(True)
    assert m.vcpu.run() == Nothing()
    m.backend.hart_line(0, 3).set_level(False)
    m.run_until_halt()
    assert m.reg("a1") == 6 and m.reg("mcause") == 0


# -- 9: unmapped addresses are access faults in the guest -----------------------------------------------


@pytest.mark.parametrize(
    ("insn", "cause", "tval"),
    [
        ("sw t1, 8(t0)", 7, 0x2000_0008),
        ("lw t1, 8(t0)", 5, 0x2000_0008),
        ("c.sd a0, 8(s0)", 7, 0x2000_0008),
        ("amoswap.w t1, t1, (t0)", 7, 0x2000_0000),
        ("jr t0", 1, 0x2000_0000),
    ],
)
def test_unmapped_access_is_an_access_fault_in_the_guest(
    machines: list[SoftMachine], insn: str, cause: int, tval: int
) -> None:
    m = build(
        machines,
        f"""
        la t1, mtrap
        csrw mtvec, t1
        li t0, 0x20000000
        mv s0, t0
        li a7, 1
    site:
        {insn}
        li a7, 2
        """
        + HALT_LOOP
        + M_HANDLER,
    )
    m.run_until_halt()
    assert m.reg("a1") == cause
    assert m.reg("a3") == tval
    assert m.reg("a7") == 1  # nothing after the faulting instruction ran
    assert m.reg("a2") == (m.sym("site") if cause != 1 else 0x2000_0000)


# -- 10: two harts share RAM ----------------------------------------------------------------------------

TWO_HARTS = (
    """
    csrr t0, mhartid
    li t1, DATA
    slli t2, t0, 3
    add t2, t1, t2
    addi t3, t0, 0x40
    sd t3, 0(t2)            # my slot: 0x40 + hartid
    xori t4, t0, 1
    slli t4, t4, 3
    add t4, t1, t4
wait_peer:
    ld t5, 0(t4)            # the other hart's slot
    beqz t5, wait_peer
    mv a1, t5
    li t6, 10000
count:
    li s1, 1
    amoadd.w zero, s1, 16(t1)
    addi t6, t6, -1
    bnez t6, count
"""
    + HALT_LOOP
)


def _run_hart(m: SoftMachine, hart: int, errors: list[BaseException]) -> None:
    try:
        m.run_until_halt(hart, max_runs=5000)
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def test_two_harts_see_each_others_writes_and_atomics_stay_atomic(machines: list[SoftMachine]) -> None:
    # amoadd needs an aligned address: 16(t1) is DATA + 16
    m = build(
        machines,
        TWO_HARTS.replace("amoadd.w zero, s1, 16(t1)", "addi s2, t1, 16\n amoadd.w zero, s1, (s2)"),
        harts=2,
        slice_instructions=5_000,
    )
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_run_hart, args=(m, hart, errors)) for hart in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    assert m.reg("a1", 0) == 0x41 and m.reg("a1", 1) == 0x40
    assert m.u64(DATA) == 0x40 and m.u64(DATA + 8) == 0x41
    assert m.u64(DATA + 16) & 0xFFFF_FFFF == 20_000


def test_ipi_through_an_mmio_clint_wakes_the_other_hart(machines: list[SoftMachine]) -> None:
    clint = 0x0200_0000
    bus = FakeMmio()
    m = build(
        machines,
        f"""
        csrr t0, mhartid
        bnez t0, hart1
        li t1, {clint:#x}
        li t2, 1
        sw t2, 4(t1)              # msip[1] = 1
        """
        + HALT_LOOP
        + """
    hart1:
        la t0, ipi
        csrw mtvec, t0
        li t0, 0x8
        csrs mie, t0
        csrsi mstatus, MSTATUS_MIE
    4:  wfi
        j 4b
    .align 4
    ipi:
        csrr a1, mcause
        li t1, 0x2000000
        sw zero, 4(t1)            # msip[1] = 0
        csrw mie, zero
    5:  wfi
        j 5b
        """,
        harts=2,
        mmio=bus,
        mmio_ranges=[(clint, 0x10000)],
    )
    line = m.backend.hart_line(1, 3)
    bus.on_write[clint + 4] = lambda value: line.set_level(bool(value & 1))
    assert isinstance(m.vcpus[1].run(), Halt)  # hart 1 waits in wfi
    woke: list[bool] = []  # what wait_for_interrupt returned: True for a wake-up, False for its timeout

    def hart1() -> None:
        woke.append(m.vcpus[1].wait_for_interrupt(30.0))

    waiter = threading.Thread(target=hart1)
    waiter.start()
    time.sleep(0.05)
    assert not woke
    m.run_until_halt(0)
    waiter.join(30)  # the wake-up is immediate; 30 s is only the bound of a broken one
    assert woke == [True]
    m.run_until_halt(1)
    assert m.reg("a1", 1) == INT | 3
    assert bus.writes == [(clint + 4, AccessWidth.DWORD, 1), (clint + 4, AccessWidth.DWORD, 0)]


# -- misc ------------------------------------------------------------------------------------------------


def test_ebreak_is_a_breakpoint_trap(machines: list[SoftMachine]) -> None:
    m = build(machines, "la t0, mtrap\n csrw mtvec, t0\n ebreak\n" + HALT_LOOP + M_HANDLER)
    m.run_until_halt()
    assert m.reg("a1") == 3
    assert m.reg("a2") == m.reg("a3")


def test_harts_report_their_own_mhartid(machines: list[SoftMachine]) -> None:
    m = build(machines, "csrr a1, mhartid\n" + HALT_LOOP, harts=3)
    for hart in range(3):
        m.run_until_halt(hart)
        assert m.reg("a1", hart) == hart
    assert m.vcpus[2].get_register("mhartid") == 2


def test_registers_by_name(machines: list[SoftMachine]) -> None:
    m = build(machines, HALT_LOOP)
    vcpu = m.vcpu
    vcpu.set_register("x10", 0x1234)
    assert vcpu.get_register("a0") == 0x1234
    vcpu.set_register("fp", 7)
    assert vcpu.get_register("s0") == 7 == vcpu.get_register("x8")
    vcpu.set_register("zero", 5)
    assert vcpu.get_register("x0") == 0
    vcpu.set_register("priv", 1)
    assert vcpu.get_register("priv") == 1
    vcpu.set_register("mscratch", 0xABC)  # an M CSR from S mode: the backend switches PRIV itself
    assert vcpu.get_register("mscratch") == 0xABC
    assert vcpu.get_register("priv") == 1
    assert vcpu.get_register("misa") & (1 << 7) == 0  # no H extension
    with pytest.raises(KeyError, match="no-such"):
        vcpu.get_register("no-such")
    with pytest.raises(ValueError):
        vcpu.set_register("priv", 2)


def test_backend_rejects_bad_requests(machines: list[SoftMachine]) -> None:
    m = build(machines, HALT_LOOP)
    assert not hasattr(m.backend, "irq_line")  # no numbered lines: device interrupts reach harts via hart_line
    with pytest.raises(ValueError, match="hart 5"):
        m.backend.hart_line(5, 3)
    with pytest.raises(ValueError, match="MIP bit 4"):
        m.backend.hart_line(0, 4)
    with pytest.raises(ValueError, match="already"):
        m.backend.create_vcpu(0)
    with pytest.raises(RuntimeError, match="no MMIO read"):
        m.vcpu.complete_read(1)


def test_setup_enters_m_mode_at_the_entry(machines: list[SoftMachine]) -> None:
    m = build(machines, "li a1, 1\n" + HALT_LOOP)
    m.vcpu.set_register("priv", 0)
    m.vcpu.setup(GuestPhysAddr(RAM_BASE), None)
    assert m.reg("pc") == RAM_BASE and m.reg("priv") == 3


def test_a_closed_vcpu_refuses_work_and_the_backend_closes_the_rest(machines: list[SoftMachine]) -> None:
    m = build(machines, HALT_LOOP, harts=2)
    m.vcpus[0].close()
    m.vcpus[0].close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        m.vcpus[0].run()
    with pytest.raises(RuntimeError, match="closed"):
        m.vcpus[0].get_register("pc")
    assert m.vcpus[1].run() == Halt()  # the other engine is untouched
    m.backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.vcpus[1].run()


def test_a_store_to_read_only_ram_is_a_store_access_fault(machines: list[SoftMachine]) -> None:
    rom = GuestMemoryRegion.anonymous(0x2000_0000, 0x1000)
    m = build(
        machines,
        """
        la t0, mtrap
        csrw mtvec, t0
        li t0, 0x20000010
        ld a4, 0(t0)
    site:
        sd a4, 8(t0)
        li a7, 2
        """
        + HALT_LOOP
        + M_HANDLER,
    )
    rom.view[0x10:0x18] = (0x5A5A).to_bytes(8, "little")
    m.backend.stage2.map(rom, MappingFlags.READ | MappingFlags.EXECUTE)
    try:
        m.run_until_halt()
        assert (m.reg("a1"), m.reg("a2"), m.reg("a3")) == (7, m.sym("site"), 0x2000_0018)
        assert m.reg("a4") == 0x5A5A and m.reg("a7") == 0
    finally:
        m.backend.stage2.unmap(GuestPhysAddr(0x2000_0000), 0x1000)
        rom.close()


def test_stage2_mappings_reach_engines_made_before_and_after(machines: list[SoftMachine]) -> None:
    m = build(machines, "li t0, 0x30000000\n ld a1, 0(t0)\n" + HALT_LOOP)
    extra = GuestMemoryRegion.anonymous(0x3000_0000, 0x1000)
    extra.view[0:8] = (0xFEED).to_bytes(8, "little")
    flags = MappingFlags.READ | MappingFlags.WRITE
    m.backend.stage2.map(extra, flags)
    try:
        m.run_until_halt()
        assert m.reg("a1") == 0xFEED
        assert [int(mapping.gpa) for mapping in m.backend.stage2.mappings] == [0x3000_0000, RAM_BASE]
        with pytest.raises(AddrSpaceError):
            m.backend.stage2.map(extra, flags)
    finally:
        m.backend.stage2.unmap(GuestPhysAddr(0x3000_0000), 0x1000)
        extra.close()
    assert m.backend.stage2.lookup(0x3000_0000) is None


def test_an_ipi_to_a_parked_hart_drops_code_it_translated_before(machines: list[SoftMachine]) -> None:
    m = build(
        machines,
        """
    loop:
    site:
        li a1, 1
        li t0, 0x8
        csrs mie, t0              # MSIE, with mstatus.MIE clear: wfi wakes, no trap
        wfi
        j loop
        """,
    )
    assert isinstance(m.vcpu.run(), Halt)
    assert m.reg("a1") == 1
    # Another hart (or the VMM) puts new code where this engine has translated code already.
    new = encode("li a1, 2")
    off = m.sym("site") - RAM_BASE
    m.ram.view[off : off + 2] = new.to_bytes(2, "little")
    m.backend.hart_line(0, 3).set_level(True)
    assert m.vcpu.wait_for_interrupt(0.0)  # MSIP is pending already: woken without waiting
    assert m.vcpu.run() == Nothing()  # woke, ran the loop again, wfi falls through (MSIP pending)
    assert m.reg("a1") == 2
    assert m.vcpu.translation_flushes == 1


def test_parallel_harts_run_without_taking_turns(machines: list[SoftMachine]) -> None:
    m = build(machines, "csrr a1, mhartid\n addi a1, a1, 10\n" + HALT_LOOP, harts=2, parallel=True)
    assert m.backend.turns is None
    assert build(machines, HALT_LOOP, harts=2).backend.turns is not None
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_run_hart, args=(m, hart, errors)) for hart in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert (m.reg("a1", 0), m.reg("a1", 1)) == (10, 11)


# -- 3b: the same under Sv57, the mode Debian's kernel runs on this engine (satp mode 10) ----------

SV57_CODE_VA = 0x0001_0000_4000_2000  # bits 56:48 = 1: an address only Sv57 maps
SV57_DATA_VA = 0x0001_0000_4000_0000  # the page below it is unmapped, the page above it too
SV57_CODE_PAGE = RAM_BASE + 0x31_0000
SV57_TABLES = [RAM_BASE + 0x20_0000 + 0x1000 * n for n in range(7)]


def _sv57_tables(m: SoftMachine, code: bytes) -> int:
    """RAM identity-mapped by a gigapage (the handler runs there); SV57_DATA_VA -> DATA_PAGE and
    SV57_CODE_VA -> SV57_CODE_PAGE (holding ``code``) through all five levels."""
    root, l3, l2, l3b, l2b, l1b, l0b = SV57_TABLES
    m.put_u64(root + 8 * 0, (l3 >> 12) << 10 | V)
    m.put_u64(l3 + 8 * 0, (l2 >> 12) << 10 | V)
    m.put_u64(l2 + 8 * 2, (RAM_BASE >> 12) << 10 | V | R | W | X | A | D)
    m.put_u64(root + 8 * 1, (l3b >> 12) << 10 | V)
    m.put_u64(l3b + 8 * 0, (l2b >> 12) << 10 | V)
    m.put_u64(l2b + 8 * 1, (l1b >> 12) << 10 | V)
    m.put_u64(l1b + 8 * 0, (l0b >> 12) << 10 | V)
    m.put_u64(l0b + 8 * 0, (DATA_PAGE >> 12) << 10 | V | R | W | A | D)
    m.put_u64(l0b + 8 * 2, (SV57_CODE_PAGE >> 12) << 10 | V | R | X | A)
    m.put_u64(DATA_PAGE, 0x1122_3344_5566_7788)
    m.ram.view[SV57_CODE_PAGE - RAM_BASE : SV57_CODE_PAGE - RAM_BASE + len(code)] = code
    return 10 << 60 | root >> 12


@pytest.mark.parametrize(
    ("base", "expected_stval"),
    [
        (SV57_DATA_VA, None),  # mapped: loads the value
        (SV57_DATA_VA + 0x1008, SV57_DATA_VA + 0x1008),
        (SV57_DATA_VA + 0xFFC, SV57_DATA_VA + 0x1000),  # crosses into the unmapped page above
        (SV57_DATA_VA - 4, SV57_DATA_VA - 4),  # starts in the unmapped page below: it faulted
    ],
)
def test_sv57_page_fault_reports_the_faulting_address(
    machines: list[SoftMachine], base: int, expected_stval: int | None
) -> None:
    """The load itself sits at an Sv57-only VA, so decoding it reads guest code through the walk."""
    m = build(machines, "la t0, strap\n csrw stvec, t0\n" + HALT_LOOP + S_HANDLER)
    m.run_until_halt()
    code = assemble("ld a1, 0(t0)\n1: wfi\n j 1b", SV57_CODE_VA).code
    m.vcpu.set_register("medeleg", 1 << 13 | 1 << 15)
    m.vcpu.set_register("satp", _sv57_tables(m, code))
    assert m.reg("satp") >> 60 == 10  # the engine took Sv57
    m.vcpu.set_register("priv", 1)
    m.vcpu.set_register("t0", base)
    m.vcpu.set_register("pc", SV57_CODE_VA)
    m.run_until_halt()
    if expected_stval is None:
        assert m.reg("a1") == 0x1122_3344_5566_7788 and m.reg("a4") == 0
        return
    assert (m.reg("a4"), m.reg("a5"), m.reg("a6")) == (13, SV57_CODE_VA, expected_stval)


def test_sv57_fetch_crossing_into_an_unmapped_page_reports_the_second_half(machines: list[SoftMachine]) -> None:
    m = build(machines, "la t0, strap\n csrw stvec, t0\n" + HALT_LOOP + S_HANDLER)
    m.run_until_halt()
    ld = assemble("ld a1, 0(t0)", SV57_CODE_VA).code
    assert len(ld) == 4  # a 4-byte instruction whose second half lies in the unmapped page
    m.vcpu.set_register("medeleg", 1 << 12)
    m.vcpu.set_register("satp", _sv57_tables(m, bytes(0xFFE) + ld[:2]))
    m.vcpu.set_register("priv", 1)
    m.vcpu.set_register("pc", SV57_CODE_VA + 0xFFE)
    m.run_until_halt()
    assert (m.reg("a4"), m.reg("a5"), m.reg("a6")) == (12, SV57_CODE_VA + 0xFFE, SV57_CODE_VA + 0x1000)
