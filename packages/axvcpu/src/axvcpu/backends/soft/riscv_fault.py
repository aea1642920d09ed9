"""What a riscv64 hart on the soft backend sees when it faults: pure decisions, no engine.

Theory of operation. Unicorn tells the backend that something went wrong in two ways, and
neither carries what the privileged spec says the trap must report:

- a synchronous exception reaches the INTR hook as a bare cause number, with the PC already
  advanced by 4, every ecall as cause 8 and no trap value;
- an access to an address with neither RAM nor a device window, or a store to read-only RAM,
  stops the engine with the physical address, size and value of the access.

The functions here turn those facts, the instruction bits at the faulting PC (``None`` where
they cannot be fetched) and the hart's x registers (read through a ``GprReader``) into one of:

- a ``Trap`` to enter: cause and tval, as privileged spec 3.1.16 ("mtval") has it: the faulting
  virtual address for misaligned, access and page faults (for an access that crosses a page,
  the start of the portion that faulted, found by a walk in ``riscv_mmu``), the instruction
  bits for an illegal instruction, the PC for a breakpoint; ecall's cause from the privilege
  it came from (U 8, S 9, M 11); an AMO's fault as a store/AMO fault (unicorn says load);
- an instruction to emulate in place: a read of the ``time`` CSR, which unicorn lacks
  (``TimeRead``, the most frequent trap of a Linux boot), or a read of ``mip``, whose M-level
  bits unicorn's copy never holds (``mip_read``);
- an ``MmioAccess`` for the VMM to serve (width, register, signedness, store value), and the
  value a completed MMIO load leaves in its register (``loaded_value``).

Everything the guest controls reaches these functions: unknown instruction bits give tval 0 or
an access fault, never an exception. Nothing here imports unicorn (a test asserts it), so each
decision is tested on plain values; ``riscv64`` only reads the engine and enters the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from axaddrspace import AccessWidth, GuestMemoryReader, sign_extend

from ...ecall import GprReader
from .riscv_decode import CSR_MIP, CSR_TIME, AccessKind, CsrOp, MemAccess, decode_csr, decode_mem
from .riscv_mmu import Access, faulting_address
from .riscv_priv import (
    EXC_ECALL_U,
    EXC_ILLEGAL_INSN,
    EXC_INSN_ACCESS,
    EXC_INSN_PAGE_FAULT,
    EXC_LOAD_ACCESS,
    EXC_LOAD_MISALIGNED,
    EXC_LOAD_PAGE_FAULT,
    EXC_STORE_ACCESS,
    EXC_STORE_MISALIGNED,
    EXC_STORE_PAGE_FAULT,
)

_U64 = (1 << 64) - 1
_PAGE_OFFSET = 0xFFF

DATA_FAULTS: dict[int, Access] = {
    EXC_LOAD_MISALIGNED: Access.LOAD,
    EXC_LOAD_ACCESS: Access.LOAD,
    EXC_STORE_MISALIGNED: Access.STORE,
    EXC_STORE_ACCESS: Access.STORE,
    EXC_LOAD_PAGE_FAULT: Access.LOAD,
    EXC_STORE_PAGE_FAULT: Access.STORE,
}
"""The exceptions a load, store or AMO raises, and the access each one checks."""
FETCH_FAULTS = frozenset({EXC_INSN_ACCESS, EXC_INSN_PAGE_FAULT})
_PAGE_FAULTS = frozenset({EXC_LOAD_PAGE_FAULT, EXC_STORE_PAGE_FAULT})
_LOAD_TO_STORE_CAUSE = {
    EXC_LOAD_MISALIGNED: EXC_STORE_MISALIGNED,
    EXC_LOAD_ACCESS: EXC_STORE_ACCESS,
    EXC_LOAD_PAGE_FAULT: EXC_STORE_PAGE_FAULT,
}
WIDTHS = {1: AccessWidth.BYTE, 2: AccessWidth.WORD, 4: AccessWidth.DWORD, 8: AccessWidth.QWORD}
"""The access sizes a device can be given; unicorn hands other sizes too (never to a device)."""


@dataclass(frozen=True, slots=True)
class Trap:
    """A synchronous exception to enter: ``cause`` (mcause/scause) and ``tval`` (mtval/stval)."""

    cause: int
    tval: int


_ECALL_TRAPS = tuple(Trap(EXC_ECALL_U + priv, 0) for priv in range(4))  # ~10k ecalls a boot: made once


@dataclass(frozen=True, slots=True)
class TimeRead:
    """An rdtime (``csrrs rd, time, x0`` or a read-only csrrc/csrrsi/csrrci of it) to answer in
    place: x[rd] gets mtime (nothing for x0) and the hart goes on after the 4-byte instruction."""

    rd: int


_TIME_READS = tuple(TimeRead(rd) for rd in range(32))  # one per rd: rdtime is the hottest trap


@dataclass(frozen=True, slots=True)
class MmioAccess:
    """A plain load or store to an address with no RAM and no device window, for the VMM."""

    addr: int
    width: AccessWidth
    insn: MemAccess
    """The decoded instruction: its register (``reg``, ``fp``), ``signed`` and ``length``."""
    value: int | None
    """What a store writes, masked to its width; None for a load (answered by the VMM)."""


@dataclass(frozen=True, slots=True)
class MipRead:
    """A csr instruction reading mip, done by hand: x[rd] gets ``value`` (unicorn's mip with the
    pending M-level bits); ``written`` is what its write part leaves in unicorn's mip, or None."""

    rd: int
    value: int
    written: int | None


def effective_address(insn: MemAccess, gpr: GprReader) -> int:
    """x[base] + offset, wrapped to 64 bits: the virtual address a load or store uses."""
    base = gpr(insn.base) if insn.base else 0
    return (base + insn.offset) & _U64


# -- synchronous exceptions (what the INTR hook saw) ---------------------------------------------


def ecall_trap(priv: int) -> Trap:
    """Unicorn reports every ecall as cause 8; the spec's cause is 8 + the privilege it came from."""
    return _ECALL_TRAPS[priv & 3]


def illegal_instruction(insn: int | None) -> TimeRead | Trap:
    """An rdtime to emulate, or the illegal-instruction trap with the bits as tval (0 if unknown)."""
    op = decode_csr(insn) if insn is not None else None
    if op is not None and op.csr == CSR_TIME and op.is_read_only:
        return _TIME_READS[op.rd]
    return Trap(EXC_ILLEGAL_INSN, insn or 0)


def data_fault(
    cause: int,
    insn: int | None,
    gpr: GprReader,
    *,
    priv: int,
    satp: int,
    mstatus: int,
    memory: GuestMemoryReader,
) -> Trap:
    """The trap for load/store/AMO exception ``cause`` (one of ``DATA_FAULTS``) at an instruction.

    tval is the effective address; for a page fault of an access that crosses into the next
    page it is that page's start when the first one translates. An AMO or SC that faults is a
    store/AMO fault whatever unicorn said. Undecodable bits give tval 0.
    """
    decoded = decode_mem(insn) if insn is not None else None
    if decoded is None:
        return Trap(cause, 0)
    if decoded.kind is AccessKind.AMO:
        cause = _LOAD_TO_STORE_CAUSE.get(cause, cause)
    va = effective_address(decoded, gpr)
    if cause in _PAGE_FAULTS:
        va = faulting_address(memory, va, decoded.width, DATA_FAULTS[cause], priv=priv, satp=satp, mstatus=mstatus)
    return Trap(cause, va)


def fetch_fault(cause: int, pc: int, fetchable: Callable[[int, int], bool]) -> Trap:
    """The trap for an instruction access or page fault at ``pc``: tval is ``pc``, or the start
    of the next page when the instruction's first half, the page's last two bytes, can be
    fetched (``fetchable(va, size)``) and so only its second half faulted."""
    if pc & _PAGE_OFFSET == _PAGE_OFFSET - 1 and fetchable(pc, 2):
        return Trap(cause, (pc + 2) & _U64)
    return Trap(cause, pc)


# -- accesses that stopped the engine -------------------------------------------------------------


def bad_access(
    access: Access,
    *,
    unmapped: bool,
    addr: int,
    size: int,
    value: int,
    pc: int,
    insn: int | None,
    gpr: GprReader,
    mmio_exits: bool,
) -> Trap | MmioAccess:
    """What an access that stopped the engine becomes (``addr``: the physical address it used).

    A fetch is an instruction access fault at ``pc``. With ``mmio_exits``, a plain load or store
    to an unmapped address is an ``MmioAccess``. Anything else is a load or store/AMO access
    fault whose tval is the instruction's effective address (``addr`` if it cannot be decoded).
    """
    if access is Access.FETCH:
        return Trap(EXC_INSN_ACCESS, pc)
    decoded = decode_mem(insn) if insn is not None else None
    if unmapped and mmio_exits:
        mmio = mmio_access(decoded, addr, size, value)
        if mmio is not None:
            return mmio
    if decoded is None:
        return Trap(EXC_STORE_ACCESS if access is Access.STORE else EXC_LOAD_ACCESS, addr)
    cause = EXC_STORE_ACCESS if decoded.kind.is_store_like else EXC_LOAD_ACCESS
    return Trap(cause, effective_address(decoded, gpr))


def mmio_access(decoded: MemAccess | None, addr: int, size: int, value: int) -> MmioAccess | None:
    """The MMIO access a decoded load or store of ``size`` bytes makes; None for an AMO, an
    undecodable instruction or a size that is no access width (the guest gets an access fault)."""
    width = WIDTHS.get(size)
    if decoded is None or width is None or decoded.kind is AccessKind.AMO:
        return None
    store = decoded.kind is AccessKind.STORE
    return MmioAccess(addr, width, decoded, value & width.mask if store else None)


def loaded_value(insn: MemAccess, width: int, value: int) -> int:
    """What a ``width``-byte load that read ``value`` leaves in its register: sign-extended for
    lb/lh/lw/ld, zero-extended for the unsigned forms, NaN-boxed for flw (spec, D extension)."""
    bits = width * 8
    value = sign_extend(value, bits, 64) if insn.signed else value & ((1 << bits) - 1)
    if insn.fp and width == 4:
        value |= _U64 ^ 0xFFFF_FFFF
    return value


# -- mip with its M-level bits ----------------------------------------------------------------------


def reads_mip(insn: int | None) -> CsrOp | None:
    """The csr instruction ``insn`` if it reads mip into a register (rd != x0), else None."""
    op = decode_csr(insn) if insn is not None else None
    if op is None or op.csr != CSR_MIP or not op.rd:
        return None
    return op


def mip_read(op: CsrOp, native_mip: int, m_pending: int, gpr: GprReader) -> MipRead:
    """Run ``op`` (from ``reads_mip``) on mip by hand: rd sees ``native_mip`` with the pending M
    bits; the write part, if any, applies to unicorn's own mip, which keeps only the bits
    software may write."""
    written = None
    if not op.is_read_only:
        operand = op.source if op.uses_immediate else gpr(op.source) if op.source else 0
        written = op.new_value(native_mip, operand)
    return MipRead(op.rd, native_mip | m_pending, written)
