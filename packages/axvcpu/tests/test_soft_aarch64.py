"""The soft aarch64 vCPU runs guest code: exception entry (SVC from EL0, undefined instructions,
BRK, data and instruction aborts with their ESR and FAR), IRQ entry, the generic timer.

Each program installs a vector table whose handlers record what the CPU reported; the tests
compare it with what the Arm ARM says the exception reports.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import FailEntry, Halt, Hypercall, Nothing

from .a64_machine import DATA, DEVICE, RAM_BASE, A64Machine
from .aarch64_asm import requires_aarch64_toolchain
from .host_tools import needs
from .soft_machine import FakeMmio

pytestmark = requires_aarch64_toolchain

# A vector table at `vectors`: every entry stores ESR, FAR, ELR, SPSR, SP and SP_EL0 and the entry's
# offset at DATA, increments the count at DATA+0x38, and returns past the faulting instruction
# (synchronous; an instruction abort to x30) or halts (IRQ: x9 = 1, then wfi with IRQs masked).
VECTORS = """
.macro record off
    ldr x10, =DATA
    mrs x11, esr_el1
    str x11, [x10]
    mrs x11, far_el1
    str x11, [x10, #8]
    mrs x11, elr_el1
    str x11, [x10, #16]
    mrs x11, spsr_el1
    str x11, [x10, #24]
    mov x11, sp
    str x11, [x10, #32]
    mrs x11, sp_el0
    str x11, [x10, #40]
    mov x11, #\\off
    str x11, [x10, #48]
    ldr x11, [x10, #56]
    add x11, x11, #1
    str x11, [x10, #56]
.endm
.macro sync off
    .balign 0x80
    record \\off
    mrs x11, esr_el1
    lsr x11, x11, #26
    cmp x11, #0x21           // an instruction abort returns to the caller (x30)
    b.ne 3f
    msr elr_el1, x30
    eret
3:  mrs x11, elr_el1
    add x11, x11, #4
    msr elr_el1, x11
    eret
.endm
.macro irq off
    .balign 0x80
    record \\off
    mov x9, #1
2:  wfi
    b 2b
.endm
.balign 0x800
vectors:
    sync 0x000
    irq 0x080
    sync 0x100
    sync 0x180
    sync 0x200
    irq 0x280
    sync 0x300
    sync 0x380
    sync 0x400
    irq 0x480
    sync 0x500
    sync 0x580
    sync 0x600
    irq 0x680
    sync 0x700
    sync 0x780
"""

START = """
_start:
    ldr x1, =vectors
    msr vbar_el1, x1
    isb
"""

HALT = "\n1: wfi\n b 1b\n"


def record(m: A64Machine) -> dict[str, int]:
    names = ("esr", "far", "elr", "spsr", "sp", "sp_el0", "vector", "count")
    return {name: m.u64(DATA + 8 * i) for i, name in enumerate(names)}


def esr(ec: int, iss: int = 0) -> int:
    return ec << 26 | 1 << 25 | iss


def test_svc_from_el0_enters_el1_at_the_lower_el_vector_with_the_immediate() -> None:
    src = (
        START
        + """
    ldr x1, =0x40180000
    msr sp_el0, x1
    msr spsr_el1, xzr        // EL0t, interrupts unmasked
    ldr x1, =user
    msr elr_el1, x1
    eret
user:
    mov x2, #7
    svc #0x42
after_svc:
    nop                      // the handler returns past "the faulting instruction": here, this nop
    mov x3, #1
    b .
"""
        + VECTORS
    )
    m = A64Machine(src)
    try:
        m.vcpu.run()
        rec = record(m)
        assert rec["count"] == 1
        assert rec["vector"] == 0x400  # lower EL, AArch64, synchronous
        assert rec["esr"] == esr(0x15, 0x42)
        assert rec["elr"] == m.sym("after_svc")  # the preferred return of an SVC: the next instruction
        assert rec["spsr"] == 0  # EL0t, nothing masked
        assert rec["sp"] == 0x4020_0000  # the handler ran on SP_EL1
        assert rec["sp_el0"] == 0x4018_0000  # the user stack banked
        assert m.reg("x3") == 1 and m.reg("x2") == 7  # eret went back to EL0 past the svc
        assert m.reg("pstate") >> 2 & 3 == 0
    finally:
        m.close()


def test_undefined_instruction_and_brk_are_entered_at_the_instruction() -> None:
    src = START + "bad:\n udf #1\nbrk_at:\n brk #0x5\n" + HALT + VECTORS
    m = A64Machine(src)
    try:
        m.vcpu.run()  # up to the udf's handler and back
        assert record(m)["count"] >= 1
        m.run_until_halt()
        rec = record(m)
        assert rec["count"] == 2
        assert rec["vector"] == 0x200  # current EL with SP_EL1
        assert rec["esr"] == esr(0x3C, 5)
        assert rec["elr"] == m.sym("brk_at")
        assert rec["spsr"] == 0x3C5  # EL1h with DAIF masked, as setup left it
    finally:
        m.close()


def test_undefined_instruction_reports_an_unknown_reason() -> None:
    m = A64Machine(START + "bad:\n udf #1\n" + HALT + VECTORS)
    try:
        m.run_until_halt()
        rec = record(m)
        assert rec["esr"] == esr(0x00) and rec["elr"] == m.sym("bad") and rec["count"] == 1
    finally:
        m.close()


# Translation tables built by the test in RAM: L1 at TABLES, L2 for [1 GiB, 2 GiB) at TABLES+0x1000, an L3
# for VA 0x4060_0000 at TABLES+0x2000. 2 MiB blocks map RAM's first 4 MiB (RW at EL1, AF set).
TABLES = RAM_BASE + 0x30_0000
PAGES = 0x4060_0000  # page 0: AF clear, page 1: read-only, page 2: invalid, page 3: fine, page 4: invalid
AF = 1 << 10
MMU_ON = """
    ldr x1, =0x40300000
    msr ttbr0_el1, x1
    ldr x1, =0xff
    msr mair_el1, x1
    ldr x1, =(25 | 1 << 23)  // T0SZ=25 (39-bit VA, 4K granule), EPD1
    msr tcr_el1, x1
    isb
    mrs x1, sctlr_el1
    orr x1, x1, #1
    msr sctlr_el1, x1
    isb
"""


def build_tables(m: A64Machine) -> None:
    m.put_u64(TABLES + 8 * 1, (TABLES + 0x1000) | 3)  # L1[1] -> L2
    for i in range(2):  # L2[0..1]: 2 MiB blocks, attr 0, AF, EL1 RW
        m.put_u64(TABLES + 0x1000 + 8 * i, (RAM_BASE + i * 0x20_0000) | AF | 1)
    m.put_u64(TABLES + 0x1000 + 8 * 3, (TABLES + 0x2000) | 3)  # L2[3] -> L3 for PAGES
    target = RAM_BASE + 0x28_0000
    m.put_u64(TABLES + 0x2000 + 8 * 0, target | 3)  # AF clear
    m.put_u64(TABLES + 0x2000 + 8 * 1, (target + 0x1000) | AF | 2 << 6 | 3)  # AP=10: read-only
    m.put_u64(TABLES + 0x2000 + 8 * 3, (target + 0x3000) | AF | 3)


@pytest.mark.parametrize(
    ("access", "x1", "far", "iss"),
    [
        ("ldr x2, [x1]", PAGES + 0x10, PAGES + 0x10, 0x08 | 3),  # access flag fault, level 3
        ("str w2, [x1, #8]", PAGES + 0x1000, PAGES + 0x1008, 1 << 6 | 0x0C | 3),  # permission fault, WnR
        ("ldrb w2, [x1, #5]", PAGES + 0x2000, PAGES + 0x2005, 0x04 | 3),  # translation fault, level 3
        ("ldp x2, x3, [x1, #-16]!", PAGES + 0x2000, None, None),  # a read of the read-only page: no fault
        ("ldr x2, [x1]", 0x8000_1000, 0x8000_1000, 0x04 | 1),  # L1[2] invalid: translation fault, level 1
        ("stp x2, x3, [x1, #-8]", PAGES + 0x4000, PAGES + 0x4000, 1 << 6 | 0x04 | 3),  # crosses into page 4
    ],
)
def test_a_data_abort_reports_the_fault_status_and_the_virtual_address(
    access: str, x1: int, far: int | None, iss: int | None
) -> None:
    src = START + MMU_ON + f"ldr x1, ={x1:#x}\nfault:\n {access}\n" + HALT + VECTORS
    m = A64Machine(src)
    try:
        build_tables(m)
        m.run_until_halt()
        rec = record(m)
        if iss is None:
            assert rec["count"] == 0
            return
        assert rec["count"] == 1
        assert rec["esr"] == esr(0x25, iss)  # data abort from EL1; no instruction syndrome for stage 1
        assert rec["far"] == far
        assert rec["elr"] == m.sym("fault")
    finally:
        m.close()


def test_an_instruction_abort_at_el1_reports_the_pc() -> None:
    src = START + MMU_ON + f"ldr x1, ={PAGES + 0x2000:#x}\n blr x1\n" + HALT + VECTORS
    m = A64Machine(src)
    try:
        build_tables(m)
        m.run_until_halt()
        rec = record(m)
        assert rec["count"] == 1
        assert rec["esr"] == esr(0x21, 0x04 | 3)  # instruction abort, current EL, translation level 3
        assert rec["far"] == PAGES + 0x2000 and rec["elr"] == PAGES + 0x2000
    finally:
        m.close()


IRQ_PROGRAM = (
    START
    + """
    msr daifclr, #2
wait:
    wfi
    b wait
"""
    + VECTORS
)


def test_an_irq_is_entered_when_the_line_is_high_and_pstate_i_is_clear() -> None:
    m = A64Machine(IRQ_PROGRAM)
    try:
        assert m.vcpu.run() == Halt()
        line = m.backend.irq_input(0)
        assert not m.vcpu.wait_for_interrupt(0.01)  # nothing pending: the timeout ends the wait
        line.set_level(True)
        assert m.vcpu.wait_for_interrupt(10.0)
        m.vcpu.run()
        line.set_level(False)
        m.run_until_halt()
        rec = record(m)
        assert rec["vector"] == 0x280  # IRQ, current EL with SP_EL1
        assert rec["elr"] == m.sym("wait") + 4  # the instruction after the wfi
        assert rec["spsr"] == 0x345  # EL1h, D, A and F masked, I clear
        assert m.reg("x9") == 1
        assert m.reg("pstate") & 0x3C0 == 0x3C0  # the handler runs with DAIF masked
        assert m.vcpu.irqs_entered == 1
    finally:
        m.close()


def test_an_irq_is_not_entered_while_pstate_i_is_set() -> None:
    m = A64Machine(START + "wait:\n wfi\n b wait\n" + VECTORS)
    try:
        assert m.vcpu.run() == Halt()
        m.backend.irq_input(0).set_level(True)
        assert m.vcpu.wait_for_interrupt(10.0)  # a masked IRQ still wakes a wfi
        assert m.vcpu.run() == Nothing()  # the wfi falls through, nothing is entered
        assert record(m)["count"] == 0 and m.vcpu.irqs_entered == 0
    finally:
        m.close()


def test_inject_interrupt_latches_one_irq_until_it_is_taken() -> None:
    m = A64Machine(IRQ_PROGRAM)
    try:
        assert m.vcpu.run() == Halt()
        m.vcpu.inject_interrupt(0)
        m.vcpu.run()
        m.run_until_halt()
        assert record(m)["count"] == 1 and m.reg("x9") == 1
    finally:
        m.close()


TIMER = """
    mrs x1, cntfrq_el0
    mov x2, #2000               // 32 us from now
    msr cntv_tval_el0, x2
    mov x2, #1                  // ENABLE, IMASK clear
    msr cntv_ctl_el0, x2
    mrs x3, cntv_ctl_el0
wait:
    wfi
    mrs x4, cntv_ctl_el0
    mov x2, #3                  // mask it, as Linux's handler does
    msr cntv_ctl_el0, x2
    mrs x5, cntv_ctl_el0
1:  wfi
    b 1b
"""


def test_the_virtual_timer_raises_ppi_27_at_its_deadline_and_wakes_wfi() -> None:
    m = A64Machine(TIMER)
    events: list[tuple[int, int, bool]] = []
    m.backend.set_timer_sink(lambda cpu, ppi, level: events.append((cpu, ppi, level)))
    try:
        m.run_until_halt()  # at the first wfi
        assert m.reg("x1") == 62_500_000
        assert m.reg("x3") & 3 == 1  # the guest's CTL write kept (unicorn alone drops it)
        if not events:  # halted before the deadline: the wait ends at it
            assert m.vcpu.wait_for_interrupt(10.0)
        m.run_until_halt()  # past it, to the second
        assert events == [(0, 27, True), (0, 27, False)]
        assert m.reg("x4") == 5  # ENABLE | ISTATUS
        assert m.reg("x5") == 7  # IMASK set, ISTATUS still
    finally:
        m.close()


def test_a_masked_timer_does_not_wake_wfi() -> None:
    m = A64Machine("mov x2, #3\n msr cntv_ctl_el0, x2\n msr cntv_cval_el0, xzr\n" + HALT)
    try:
        m.run_until_halt()
        assert not m.vcpu.wait_for_interrupt(0.05)
    finally:
        m.close()


def test_the_virtual_counter_stands_still_while_the_vm_is_paused() -> None:
    m = A64Machine("mrs x1, cntvct_el0\n" + HALT)
    try:
        m.backend.pause_clock()
        frozen = m.backend.counter()
        host_before = time.monotonic_ns()
        time.sleep(0.2)
        assert m.backend.counter() == frozen
        m.backend.resume_clock()
        m.run_until_halt()
        paused_ticks = (time.monotonic_ns() - host_before) // 16
        guest = m.reg("x1")
        assert frozen <= guest < frozen + paused_ticks // 4  # the pause is not seen by the guest
    finally:
        m.close()


def test_an_irq_pending_while_masked_is_entered_in_a_short_unmasked_window_mid_slice() -> None:
    """Linux's idle loop: wfi with IRQs masked, unmask for a few instructions, mask, wfi again.
    Every slice boundary falls on the wfi, where PSTATE.I is set; the IRQ must still be taken
    in the window."""
    src = (
        START
        + """
loop:
    wfi
    msr daifclr, #2
window:
    nop
    msr daifset, #2
    b loop
"""
        + VECTORS
    )
    m = A64Machine(src)
    try:
        assert m.vcpu.run() == Halt()
        m.backend.irq_input(0).set_level(True)
        for _ in range(20):
            m.vcpu.run()
            if m.reg("x9") == 1:
                break
        rec = record(m)
        assert m.reg("x9") == 1 and rec["vector"] == 0x280
        assert rec["elr"] == m.sym("window")  # taken right after the unmask
    finally:
        m.close()


def test_setup_again_starts_with_the_mmu_off_as_psci_cpu_on_requires() -> None:
    m = A64Machine(START + MMU_ON + "mrs x5, sctlr_el1\n" + HALT + VECTORS)
    try:
        build_tables(m)
        m.run_until_halt()
        assert m.reg("x5") & 1 == 1  # the guest turned its MMU on
        m.vcpu.setup(GuestPhysAddr(RAM_BASE), None)
        assert m.reg("sctlr_el1") & 1 == 0
        assert m.reg("pstate") == 0x3C5 and m.reg("pc") == RAM_BASE
    finally:
        m.close()


@needs("gcc", why="the C filter in front of the MSR hook is compiled with the system compiler")
def test_only_timer_msrs_reach_python_through_the_c_filter() -> None:
    m = A64Machine(
        "mov x0, #100\n1: mrs x1, daif\n msr daif, x1\n msr tpidr_el1, x0\n subs x0, x0, #1\n b.ne 1b\n"
        " mov x2, #1\n msr cntv_ctl_el0, x2\n mrs x3, cntv_ctl_el0\n" + HALT
    )
    seen: list[tuple[int, int, int, int, int]] = []
    vcpu = m.vcpu
    original = vcpu._on_msr

    def counting(uc: object, reg: int, cp: Any, user: object) -> int:
        seen.append((cp.op0, cp.op1, cp.crn, cp.crm, cp.op2))
        return original(uc, reg, cp, user)

    vcpu._on_msr = counting  # type: ignore[method-assign]
    try:
        m.run_until_halt()
        assert seen == [(3, 3, 14, 3, 1)]  # 200 MSRs to DAIF and TPIDR_EL1 stayed in C
        assert m.reg("x3") & 3 == 1 and m.reg("tpidr_el1") == 1
    finally:
        m.close()


def test_hvc_and_smc_leave_run_as_hypercalls_answered_in_x0() -> None:
    src = """
    ldr x0, =0xC4000003      // PSCI CPU_ON (SMC64), upper bits of x0 ignored: w0 is the function id
    orr x0, x0, #0xFFFF00000000
    mov x1, #1
    ldr x2, =0x40080000
    mov x3, #7
    hvc #0
    mov x10, x0
    ldr x0, =0x84000008      // SYSTEM_OFF
    smc #0x12
    mov x11, x0
1:  wfi
    b 1b
"""
    m = A64Machine(src)
    try:
        assert m.vcpu.run() == Hypercall(0xC400_0003, (1, 0x4008_0000, 7, 0, 0, 0))
        assert m.vcpu.last_call == ("hvc", 0)
        m.vcpu.set_register("x0", 0)  # PSCI SUCCESS
        assert m.vcpu.run() == Hypercall(0x8400_0008, (1, 0x4008_0000, 7, 0, 0, 0))
        assert m.vcpu.last_call == ("smc", 0x12)
        m.vcpu.set_register("x0", (1 << 64) - 2)  # NOT_SUPPORTED
        assert m.vcpu.run() == Halt()
        assert m.reg("x10") == 0 and m.reg("x11") == (1 << 64) - 2
        assert m.vcpu.exceptions_entered == 0  # neither was entered in the guest
    finally:
        m.close()


def test_device_windows_are_served_inline_by_the_handler() -> None:
    mmio = FakeMmio({DEVICE + 0x18: 0x90})  # a PL011 FR value
    src = "ldr x2, =DEVICE\n mov w1, #'A'\n strb w1, [x2]\n ldr w3, [x2, #0x18]\n ldrh w4, [x2, #0x1a]\n" + HALT
    m = A64Machine(src, mmio=mmio)
    try:
        assert m.run_until_halt()[-1] == Halt()  # no exit on the way: served on the vCPU's thread
        assert mmio.writes == [(DEVICE, AccessWidth.BYTE, 0x41)]
        assert (DEVICE + 0x18, AccessWidth.DWORD) in mmio.reads
        assert m.reg("x3") == 0x90 and m.reg("x4") == 0
    finally:
        m.close()


def test_a_handler_that_raises_ends_the_run_with_fail_entry() -> None:
    class Broken(FakeMmio):
        def read(self, addr: int, width: AccessWidth) -> int:
            raise RuntimeError("device bug")

    m = A64Machine("ldr x2, =DEVICE\n ldr w3, [x2]\n" + HALT, mmio=Broken())
    try:
        exit_reason = m.vcpu.run()
        assert isinstance(exit_reason, FailEntry) and "device bug" in exit_reason.detail
    finally:
        m.close()
