"""Pure parts of the soft backend: instruction decoding, the Sv39 walk, interrupt bookkeeping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from axaddrspace import GuestMemory, GuestMemoryRegion
from axvcpu.backends.soft import page_windows
from axvcpu.backends.soft.riscv_decode import AccessKind, MemAccess, decode_csr, decode_mem, insn_length, is_ebreak
from axvcpu.backends.soft.riscv_irq import IRQ_MEIP, IRQ_MSIP, IRQ_MTIP, IRQ_SEIP, IRQ_STIP, HartInterrupts, highest
from axvcpu.backends.soft.riscv_mmu import Access, faulting_address, read_phys, translate
from axvcpu.backends.soft.riscv_trap import interrupt_enabled, trap_target

from .riscv_asm import encode, requires_riscv_toolchain

LOAD, STORE, AMO = AccessKind.LOAD, AccessKind.STORE, AccessKind.AMO


@requires_riscv_toolchain
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("lb a0, -1(a1)", MemAccess(LOAD, 1, 11, -1, 10, signed=True)),
        ("lhu t0, 2047(sp)", MemAccess(LOAD, 2, 2, 2047, 5)),
        ("lwu s1, -2048(t1)", MemAccess(LOAD, 4, 6, -2048, 9)),
        ("ld ra, 8(x31)", MemAccess(LOAD, 8, 31, 8, 1, signed=True)),
        ("fld f3, 16(a5)", MemAccess(LOAD, 8, 15, 16, 3, fp=True)),
        ("flw f2, -8(a5)", MemAccess(LOAD, 4, 15, -8, 2, fp=True)),
        ("sb t2, -33(a4)", MemAccess(STORE, 1, 14, -33, 7)),
        ("sd s11, 2040(gp)", MemAccess(STORE, 8, 3, 2040, 27)),
        ("fsd f9, -16(s2)", MemAccess(STORE, 8, 18, -16, 9, fp=True)),
        ("lr.w t0, (a0)", MemAccess(LOAD, 4, 10, 0, 5, signed=True)),
        ("sc.d t0, t1, (a0)", MemAccess(AMO, 8, 10, 0, 5, signed=True)),
        ("amoor.w.aqrl a1, a2, (a3)", MemAccess(AMO, 4, 13, 0, 11, signed=True)),
        ("c.lw a0, 124(a5)", MemAccess(LOAD, 4, 15, 124, 10, signed=True, length=2)),
        ("c.ld s1, 248(a2)", MemAccess(LOAD, 8, 12, 248, 9, signed=True, length=2)),
        ("c.sw a3, 64(s0)", MemAccess(STORE, 4, 8, 64, 13, length=2)),
        ("c.sd a4, 136(s1)", MemAccess(STORE, 8, 9, 136, 14, length=2)),
        ("c.fld f8, 200(a0)", MemAccess(LOAD, 8, 10, 200, 8, fp=True, length=2)),
        ("c.fsd f15, 8(a1)", MemAccess(STORE, 8, 11, 8, 15, fp=True, length=2)),
        ("c.lwsp t3, 252(sp)", MemAccess(LOAD, 4, 2, 252, 28, signed=True, length=2)),
        ("c.ldsp ra, 504(sp)", MemAccess(LOAD, 8, 2, 504, 1, signed=True, length=2)),
        ("c.fldsp f1, 344(sp)", MemAccess(LOAD, 8, 2, 344, 1, fp=True, length=2)),
        ("c.swsp s4, 132(sp)", MemAccess(STORE, 4, 2, 132, 20, length=2)),
        ("c.sdsp t5, 456(sp)", MemAccess(STORE, 8, 2, 456, 30, length=2)),
        ("c.fsdsp f31, 72(sp)", MemAccess(STORE, 8, 2, 72, 31, fp=True, length=2)),
        ("addi a0, a1, 4", None),
        ("c.addi a0, 1", None),
        ("fence", None),
    ],
)
def test_decode_mem(line: str, expected: MemAccess | None) -> None:
    insn = encode(line)
    assert decode_mem(insn) == expected
    if expected is not None:
        assert insn_length(insn & 0xFFFF) == expected.length


@requires_riscv_toolchain
def test_decode_csr_and_special_instructions() -> None:
    op = decode_csr(encode("rdtime a5"))
    assert op is not None and (op.csr, op.rd, op.is_read_only) == (0xC01, 15, True)
    op = decode_csr(encode("csrrsi t0, time, 0"))
    assert op is not None and op.is_read_only
    op = decode_csr(encode("csrrs t0, time, t1"))
    assert op is not None and not op.is_read_only
    op = decode_csr(encode("csrw time, t0"))
    assert op is not None and not op.is_read_only
    assert decode_csr(encode("ecall")) is None and decode_csr(encode("wfi")) is None
    assert is_ebreak(encode("ebreak")) and is_ebreak(0x0010_0073) and not is_ebreak(encode("ecall"))


# -- the Sv39 walk ------------------------------------------------------------------------------

BASE = 0x8000_0000
ROOT, L1, L0 = BASE, BASE + 0x1000, BASE + 0x2000
V, R, W, X, U, A, D = 1, 2, 4, 8, 16, 64, 128
SATP = 8 << 60 | ROOT >> 12
SUM, MXR, MPRV = 1 << 18, 1 << 19, 1 << 17


@pytest.fixture
def mem() -> Iterator[tuple[GuestMemory, GuestMemoryRegion]]:
    region = GuestMemoryRegion.anonymous(BASE, 0x10_0000)
    phys = GuestMemory([region])

    def pte(table: int, index: int, value: int) -> None:
        off = table - BASE + 8 * index
        region.view[off : off + 8] = value.to_bytes(8, "little")

    pte(ROOT, 2, (BASE >> 12) << 10 | V | R | W | X | A | D)  # 1 GiB kernel gigapage at 0x8000_0000
    pte(ROOT, 1, (L1 >> 12) << 10 | V)
    pte(ROOT, 3, (0x8020_0000 >> 12) << 10 | V | R)  # misaligned gigapage
    pte(L1, 0, (L0 >> 12) << 10 | V)
    pte(L0, 0, (0x8003_0000 >> 12) << 10 | V | R | W | U)  # user page
    pte(L0, 1, (0x8004_0000 >> 12) << 10 | V | X)  # execute-only page
    pte(L0, 2, (0x8005_0000 >> 12) << 10 | V | W)  # reserved W-only: faults
    yield phys, region
    region.close()


def test_translate(mem: tuple[GuestMemory, GuestMemoryRegion]) -> None:
    phys, _ = mem
    s, u, m = 1, 0, 3

    def t(va: int, access: Access, priv: int, mstatus: int = 0) -> int | None:
        return translate(phys, va, access, priv=priv, satp=SATP, mstatus=mstatus)

    assert t(0x8012_3456, Access.LOAD, s) == 0x8012_3456
    assert t(0x8012_3456, Access.LOAD, u) is None  # supervisor page
    assert t(0x4000_0010, Access.STORE, u) == 0x8003_0010
    assert t(0x4000_0010, Access.LOAD, s) is None  # user page without SUM
    assert t(0x4000_0010, Access.LOAD, s, SUM) == 0x8003_0010
    assert t(0x4000_0010, Access.FETCH, s, SUM) is None  # S never executes user pages
    assert t(0x4000_1000, Access.LOAD, s) is None  # execute-only
    assert t(0x4000_1000, Access.LOAD, s, MXR) == 0x8004_0000
    assert t(0x4000_1000, Access.FETCH, s) == 0x8004_0000
    assert t(0x4000_2000, Access.STORE, s) is None  # W without R is reserved
    assert t(0x4000_3000, Access.LOAD, s) is None  # invalid PTE
    assert t(0xC000_0000, Access.LOAD, s) is None  # misaligned superpage
    assert t(0xFFFF_FFC0_8000_0000, Access.LOAD, s) is None  # VPN2 0x102: invalid
    assert t(0x0000_0040_8000_0000, Access.LOAD, s) is None  # not sign-extended
    assert t(0x1234, Access.LOAD, m) == 0x1234  # M mode: bare
    assert t(0x4000_0010, Access.LOAD, m, MPRV) == 0x8003_0010  # MPRV with MPP=U
    assert translate(phys, 0x1234, Access.LOAD, priv=s, satp=0, mstatus=0) == 0x1234  # satp Bare


def test_faulting_address_of_page_crossing_accesses(mem: tuple[GuestMemory, GuestMemoryRegion]) -> None:
    phys, _ = mem

    def fa(va: int, size: int) -> int:
        return faulting_address(phys, va, size, Access.LOAD, priv=0, satp=SATP, mstatus=0)

    assert fa(0x4000_0FFC, 8) == 0x4000_1000  # first page fine (user), second is not user
    assert fa(0x3FFF_FFFC, 8) == 0x3FFF_FFFC  # first page faults
    assert fa(0x4000_0100, 8) == 0x4000_0100  # within one page


def test_physical_reads_go_across_regions_and_refuse_holes() -> None:
    a = GuestMemoryRegion.anonymous(0x1000, 0x1000)
    b = GuestMemoryRegion.anonymous(0x2000, 0x1000)
    phys = GuestMemory([a, b])
    a.view[0xFFE:] = b"\x01\x02"
    b.view[:2] = b"\x03\x04"
    assert read_phys(phys, 0x1FFE, 4) == b"\x01\x02\x03\x04"
    assert read_phys(phys, 0x2FFF, 2) is None and read_phys(phys, 0x800, 4) is None
    phys.remove_region(0x2000).close()
    assert read_phys(phys, 0x1FFE, 4) is None and phys.read_u64(0x1000) == 0
    assert read_phys(phys, -1, 1) is None and read_phys(phys, 1 << 64, 1) is None
    phys.close()


# -- interrupts and traps ------------------------------------------------------------------------


def test_priority_order_of_simultaneous_interrupts() -> None:
    every = sum(1 << irq for irq in (1, 3, 5, 7, 9, 11))
    order = []
    while every:
        irq = highest(every)
        assert irq is not None
        order.append(irq)
        every &= ~(1 << irq)
    assert order == [11, 3, 7, 9, 1, 5]
    assert highest(0) is None


def test_delegation_and_global_enables() -> None:
    assert trap_target(8, False, priv=0, medeleg=1 << 8, mideleg=0) == 1
    assert trap_target(8, False, priv=3, medeleg=1 << 8, mideleg=0) == 3  # never down from M
    assert trap_target(9, True, priv=1, medeleg=0, mideleg=1 << 9) == 1
    assert trap_target(9, True, priv=1, medeleg=1 << 9, mideleg=0) == 3
    assert interrupt_enabled(7, priv=3, mstatus=0x8, mideleg=0)
    assert not interrupt_enabled(7, priv=3, mstatus=0, mideleg=0)
    assert interrupt_enabled(7, priv=1, mstatus=0, mideleg=0)  # lower privilege: always
    assert not interrupt_enabled(9, priv=3, mstatus=0xA, mideleg=1 << 9)  # delegated: not in M
    assert interrupt_enabled(9, priv=0, mstatus=0, mideleg=1 << 9)
    assert not interrupt_enabled(9, priv=1, mstatus=0, mideleg=1 << 9)


def test_hart_interrupts_record_levels_edges_and_the_timer() -> None:
    now = [100]
    irqs = HartInterrupts(lambda: now[0], lambda ticks: 0.0)
    irqs.set_line(IRQ_SEIP, True)
    irqs.set_line(IRQ_MEIP, True)
    irqs.pulse_line(IRQ_MSIP)
    s_set, s_clear, m_pending, rose = irqs.take()
    assert s_set == 1 << IRQ_SEIP and s_clear == 0
    assert m_pending == 1 << IRQ_MEIP | 1 << IRQ_MSIP
    assert rose == 1 << IRQ_SEIP | 1 << IRQ_MEIP | 1 << IRQ_MSIP
    irqs.set_line(IRQ_SEIP, True)  # no change: nothing to apply
    irqs.set_line(IRQ_MEIP, False)
    assert irqs.take() == (0, 0, 1 << IRQ_MSIP, 0)  # the pulse stays until taken
    irqs.taken(IRQ_MSIP)
    irqs.set_line(IRQ_SEIP, False)
    irqs.pulse_line(IRQ_STIP)
    assert irqs.take() == (1 << IRQ_STIP, 1 << IRQ_SEIP, 0, 1 << IRQ_STIP)
    irqs.set_mtimecmp(100)
    assert irqs.take()[2] == 1 << IRQ_MTIP
    irqs.set_mtimecmp(101)
    assert irqs.take()[2] == 0


def test_page_windows_round_and_merge() -> None:
    assert page_windows([(0x1000_0000, 0x100), (0x1000_0100, 0x100), (0x0C00_0000, 0x60_0000)]) == [
        (0x0C00_0000, 0x60_0000),
        (0x1000_0000, 0x1000),
    ]
    assert page_windows([(0x1FF0, 0x20)]) == [(0x1000, 0x2000)]
    with pytest.raises(ValueError):
        page_windows([(0x1000, 0)])
