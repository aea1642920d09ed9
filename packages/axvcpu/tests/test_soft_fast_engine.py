"""The soft CPU's speed mechanisms: fault hooks outside RAM, slices ended by events and the timer
(C engine), rdtime in C on the backend's clock, and code re-translated after device writes."""

from __future__ import annotations

import threading

import pytest

from axaddrspace import PAGE_SIZE, GuestMemoryRegion, GuestPhysAddr, MappingFlags
from axvcpu import Halt, Nothing
from axvcpu.backends.soft.engine_ranges import FLUSH_ALL_PAGES, CodeRanges, hook_gaps, pages_within

from .riscv_asm import RAM_BASE, encode, requires_riscv_toolchain
from .soft_machine import SoftMachine, build

INT = 1 << 63
LAST = (1 << 64) - 1
RWX = MappingFlags.READ | MappingFlags.WRITE | MappingFlags.EXECUTE
NO_BOUND = 1 << 62
"""A slice bound no test reaches: the slice can only end by an event or the timer."""

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


# -- pure parts ---------------------------------------------------------------------------------


def test_hook_gaps_are_the_complement_of_ram_and_windows() -> None:
    assert hook_gaps([]) == [(0, LAST)]
    assert hook_gaps([(0x8000_0000, 0x1000), (0x1000_0000, 0x100)]) == [
        (0, 0x0FFF_FFFF),
        (0x1000_0100, 0x7FFF_FFFF),
        (0x8000_1000, LAST),
    ]
    assert hook_gaps([(0, 0x2000), (0x1000, 0x2000), (0x3000, 0x1000)]) == [(0x4000, LAST)]  # overlap, touch
    assert hook_gaps([(LAST + 1 - PAGE_SIZE, PAGE_SIZE)]) == [(0, LAST - PAGE_SIZE)]


def test_code_ranges_collect_pages_and_fall_back_to_a_full_flush() -> None:
    ranges = CodeRanges()
    assert not ranges
    ranges.add(RAM_BASE + 0xFFF, 2)  # crosses a page boundary
    ranges.add(RAM_BASE, 1)
    ranges.add(RAM_BASE, 0)
    assert ranges.take() == ([RAM_BASE, RAM_BASE + PAGE_SIZE], False)
    assert not ranges
    ranges.add(RAM_BASE, (FLUSH_ALL_PAGES + 1) * PAGE_SIZE)
    assert ranges.take() == ([], True)
    assert ranges.take() == ([], False)


def test_pages_within_keeps_the_sorted_pages_inside_ram_only() -> None:
    """Dirty pages outside RAM (a device window the VMM wrote) are never handed to unicorn."""
    low, high = (RAM_BASE, 2 * PAGE_SIZE), (RAM_BASE + 8 * PAGE_SIZE, PAGE_SIZE)
    pages = [
        RAM_BASE - PAGE_SIZE,
        RAM_BASE,
        RAM_BASE + PAGE_SIZE,
        RAM_BASE + 2 * PAGE_SIZE,
        RAM_BASE + 8 * PAGE_SIZE,
        RAM_BASE + 9 * PAGE_SIZE,
    ]
    assert pages_within(pages, [high, low]) == [RAM_BASE, RAM_BASE + PAGE_SIZE, RAM_BASE + 8 * PAGE_SIZE]
    assert pages_within(pages, []) == []
    assert pages_within([], [low]) == []


# -- both engines -------------------------------------------------------------------------------

pytestmark = requires_riscv_toolchain


@pytest.fixture(params=["c", "python"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "c":
        from .conftest import soft_engine_available

        soft_engine_available()
    return str(request.param)


def test_code_written_through_guest_memory_is_retranslated(machines: list[SoftMachine], engine: str) -> None:
    """Device DMA (GuestMemory.write_from, writable views) never passes through the engine."""
    m = build(machines, "loop:\nsite:\n li a1, 1\n wfi\n j loop\n", engine=engine)
    assert isinstance(m.vcpu.run(), Halt)
    assert m.reg("a1") == 1
    m.memory.write_from(m.sym("site"), encode("li a1, 2").to_bytes(2, "little"))
    assert isinstance(m.vcpu.run(), Halt)  # resumes after the wfi and runs the loop again
    assert m.reg("a1") == 2
    assert m.vcpu.code_invalidations == 1
    assert m.vcpu.translation_flushes == 0  # one page, not the whole cache


def test_code_written_through_a_writable_view_is_retranslated(machines: list[SoftMachine], engine: str) -> None:
    m = build(machines, "loop:\nsite:\n li a1, 1\n wfi\n j loop\n", engine=engine)
    assert isinstance(m.vcpu.run(), Halt)
    view = m.memory.view(m.sym("site"), 2, writable=True)
    view[:] = encode("li a1, 3").to_bytes(2, "little")
    assert isinstance(m.vcpu.run(), Halt)
    assert m.reg("a1") == 3


def test_code_written_through_a_batch_of_writable_views_is_retranslated(
    machines: list[SoftMachine], engine: str
) -> None:
    """A block request's buffers come as one ``views`` call; the hart hears them in one batch."""
    m = build(machines, "loop:\nsite:\n li a1, 1\n wfi\n j loop\n", engine=engine)
    assert isinstance(m.vcpu.run(), Halt)
    far = m.sym("site") + 2 * PAGE_SIZE  # a second range, not adjacent: two runs in one call
    site_view, _ = m.memory.views([(m.sym("site"), 2), (far, 4)], writable=True)
    site_view[:] = encode("li a1, 3").to_bytes(2, "little")
    assert isinstance(m.vcpu.run(), Halt)
    assert m.reg("a1") == 3
    assert m.vcpu.code_invalidations == 2  # both pages, neither a whole-cache flush
    assert m.vcpu.translation_flushes == 0


PT_ROOT, PT_L1, PT_L0 = RAM_BASE + 0x30_0000, RAM_BASE + 0x30_1000, RAM_BASE + 0x30_2000
ALIAS_VA = 0x4000_0000
V, R, W, X, A, D = 1, 2, 4, 8, 64, 128
ALIAS_PROGRAM = """
1:  wfi
    j 1b
s_entry:
    sw t2, 0(t0)            # through the alias, while the page holds no code: a dirty TLB entry
    fence.i
    jal ra, site            # translated through the identity mapping
    mv s2, a1
    sw t1, 0(t0)            # through the alias again: must drop the translation
    fence.i
    jal ra, site
    mv s3, a1
2:  wfi
    j 2b
.balign 4096
.option push
.option norvc
site:
    addi a1, x0, 0
    ret
.option pop
"""


def _addi_a1(value: int) -> int:
    return value << 20 | 11 << 7 | 0x13  # addi a1, x0, value


def test_code_stored_through_a_second_virtual_mapping_is_retranslated(machines: list[SoftMachine], engine: str) -> None:
    """Linux's cross-modifying code: one page mapped writable at one address and executable at
    another; unicorn re-protects translated code by virtual address only."""
    m = build(machines, ALIAS_PROGRAM, engine=engine)
    m.run_until_halt()
    site = m.sym("site")
    m.put_u64(PT_ROOT + 8 * 2, (RAM_BASE >> 12) << 10 | V | R | W | X | A | D)  # RAM identity-mapped
    m.put_u64(PT_ROOT + 8 * 1, (PT_L1 >> 12) << 10 | V)
    m.put_u64(PT_L1, (PT_L0 >> 12) << 10 | V)
    m.put_u64(PT_L0, (site >> 12) << 10 | V | R | W | A | D)  # ALIAS_VA -> site's page, writable
    m.vcpu.set_register("satp", 8 << 60 | PT_ROOT >> 12)
    m.vcpu.set_register("priv", 1)
    m.vcpu.set_register("t0", ALIAS_VA + site % PAGE_SIZE)
    m.vcpu.set_register("t2", _addi_a1(1))
    m.vcpu.set_register("t1", _addi_a1(2))
    m.vcpu.set_register("pc", m.sym("s_entry"))
    m.run_until_halt()
    assert (m.reg("s2"), m.reg("s3")) == (1, 2)
    if engine == "c":
        assert m.vcpu._fast is not None and m.vcpu._fast.alias_flushes > 0  # paging on: new code flushes


def test_new_code_without_paging_costs_no_tlb_flush(machines: list[SoftMachine]) -> None:
    """satp Bare: every TLB entry maps a page to itself, there is no second mapping to protect
    against, so firmware translating new blocks all the time keeps its TLB."""
    blocks = "".join(f"b{i}:\n  addi a4, a4, 1\n  j b{i + 1}\n" for i in range(32))
    m = build(machines, blocks + "b32:\n1: wfi\n  j 1b\n", engine="c")
    m.run_until_halt()
    assert m.reg("a4") == 32
    assert m.vcpu._fast is not None and m.vcpu._fast.alias_flushes == 0


def test_new_code_in_user_mode_still_flushes(machines: list[SoftMachine]) -> None:
    """The host cannot read satp in U mode (unicorn answers with a stale value), so new user
    code counts as paged: the flush stays, whatever satp holds."""
    blocks = "".join(f"u{i}:\n  addi a4, a4, 1\n  j u{i + 1}\n" for i in range(8))
    m = build(
        machines,
        """
        la t0, mtrap
        csrw mtvec, t0
        li t0, MPP_MASK
        csrc mstatus, t0          # MPP = U
        la t0, u0
        csrw mepc, t0
        mret
        """
        + blocks
        + "u8:\n  ecall\n"
        + M_HANDLER,
        engine="c",
    )
    m.run_until_halt()
    assert (m.reg("a4"), m.reg("a1")) == (8, 8)  # ran in U mode, then the ecall from U
    assert m.vcpu._fast is not None and m.vcpu._fast.alias_flushes > 0


def test_ram_mapped_and_unmapped_after_the_hart_exists_keeps_faults_hooked(
    machines: list[SoftMachine], engine: str
) -> None:
    """Fault hooks cover only what is not RAM, so they move with every mapping change."""
    m = build(
        machines,
        """
        la t0, mtrap
        csrw mtvec, t0
        li t0, 0x30000000
        li t1, 77
        sd t1, 8(t0)
        ld a4, 8(t0)
        wfi
        ld a5, 16(t0)
        """
        + "1: wfi\n j 1b\n"
        + M_HANDLER,
        engine=engine,
    )
    extra = GuestMemoryRegion.anonymous(0x3000_0000, PAGE_SIZE)
    m.backend.stage2.map(extra, RWX)
    assert isinstance(m.vcpu.run(), Halt)
    assert m.reg("a4") == 77
    m.backend.stage2.unmap(GuestPhysAddr(0x3000_0000), PAGE_SIZE)
    extra.close()
    assert isinstance(m.vcpu.run(), Nothing)  # the load faults: an access fault trap, not a failure
    m.run_until_halt()
    assert m.reg("a1") == 5  # load access fault
    assert m.reg("a3") == 0x3000_0010


def test_rdtime_reads_exactly_the_backend_clock(machines: list[SoftMachine], engine: str) -> None:
    m = build(machines, "rdtime a4\n wfi\n csrr a5, time\n 1: wfi\n j 1b\n", engine=engine)
    m.backend.pause_clock()
    assert isinstance(m.vcpu.run(), Halt)
    assert m.reg("a4") == m.backend.mtime()
    m.backend.restore_clock(123_456_789)  # paused still: the clock reads exactly that
    assert isinstance(m.vcpu.run(), Halt)
    assert m.reg("a5") == 123_456_789 == m.backend.mtime()
    assert m.vcpu.time_reads == 2


# -- the C engine: slices end on events and at the timer deadline ---------------------------------


@pytest.fixture
def c_engine() -> None:
    from .conftest import soft_engine_available

    soft_engine_available()


def _run_while(m: SoftMachine, poke: threading.Event, action: object) -> object:
    """run() once while another thread repeats ``action`` until it returns (a flag raised before
    the slice starts is cleared with the slice's start, so one call could come too early)."""

    def keep_poking() -> None:
        while not poke.wait(0.001):
            action()  # type: ignore[operator]

    thread = threading.Thread(target=keep_poking)
    thread.start()
    try:
        return m.vcpu.run()
    finally:
        poke.set()
        thread.join()


@pytest.mark.usefixtures("c_engine")
def test_a_kick_ends_a_slice_that_has_no_bound(machines: list[SoftMachine]) -> None:
    m = build(machines, "1: addi a1, a1, 1\n j 1b\n", engine="c", slice_instructions=NO_BOUND)
    assert _run_while(m, threading.Event(), m.vcpu.kick) == Nothing()
    assert m.reg("a1") > 0


@pytest.mark.usefixtures("c_engine")
def test_a_line_raised_from_another_thread_ends_the_slice(machines: list[SoftMachine]) -> None:
    m = build(machines, "1: addi a1, a1, 1\n j 1b\n", engine="c", slice_instructions=NO_BOUND)
    line = m.backend.hart_line(0, 9)
    level = [False]

    def toggle() -> None:
        level[0] = not level[0]
        line.set_level(level[0])

    assert _run_while(m, threading.Event(), toggle) == Nothing()


@pytest.mark.usefixtures("c_engine")
def _timer_spinner(machines: list[SoftMachine], *, mie: bool) -> SoftMachine:
    """M mode with MTIE set (and mstatus.MIE if ``mie``), spinning on a4; M_HANDLER takes traps."""
    enable = "csrsi mstatus, MSTATUS_MIE" if mie else "nop  # mstatus.MIE stays clear"
    program = f"""
        la t0, mtrap
        csrw mtvec, t0
        li t0, 0x80
        csrs mie, t0              # MTIE
        {enable}
    spin:
        addi a4, a4, 1
        j spin
        """
    return build(machines, program + M_HANDLER, engine="c", slice_instructions=NO_BOUND)


def test_a_due_timer_is_entered_in_c_within_the_slice(machines: list[SoftMachine]) -> None:
    m = _timer_spinner(machines, mie=True)
    m.backend.set_mtimecmp(0, m.backend.mtime() + 2_000)  # 200 us ahead
    assert m.vcpu.run() == Halt()  # one slice: the deadline did not end it, the handler's wfi did
    assert m.reg("a1") == INT | 7
    assert m.sym("spin") <= m.reg("a2") <= m.sym("spin") + 4  # mepc: where the loop was
    assert m.reg("a4") > 0
    assert m.vcpu.traps_entered == 1


def test_a_timer_masked_in_m_mode_ends_the_slice_without_entering(machines: list[SoftMachine]) -> None:
    m = _timer_spinner(machines, mie=False)
    m.backend.set_mtimecmp(0, m.backend.mtime() + 2_000)
    assert m.vcpu.run() == Nothing()  # ended by the deadline: nothing else can end it
    assert m.reg("a1") == 0
    assert m.vcpu.traps_entered == 0


def test_a_deadline_nobody_enabled_does_not_end_the_slice(machines: list[SoftMachine]) -> None:
    m = build(
        machines,
        """
        li t1, 400000
    spin:
        addi a4, a4, 1
        bne a4, t1, spin
        wfi
        """,
        engine="c",
        slice_instructions=NO_BOUND,
    )
    m.backend.set_mtimecmp(0, m.backend.mtime() + 10)  # 1 us ahead: passed long before the loop ends
    assert m.vcpu.run() == Halt()  # one slice, to the wfi
    assert m.reg("a4") == 400000
    assert m.vcpu.traps_entered == 0
