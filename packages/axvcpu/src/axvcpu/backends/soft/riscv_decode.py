"""Decoding the few riscv64 instructions the soft backend must understand itself.

Unicorn reports a faulting load or store without its address (stval is not exposed) and an
illegal instruction without its bits, so the backend decodes the instruction at the faulting
PC: loads, stores, LR/SC/AMOs and their compressed forms (RISC-V unprivileged spec, chapters 2,
8 "A" and 16 "C"), to find the effective address, the width and the register a value goes to;
and Zicsr instructions (chapter 9), to emulate reads of the ``time`` CSR unicorn lacks and of
``mip`` where unicorn's copy lacks the M-level bits.

Everything here is a pure function of the instruction bits, so it is tested without an engine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

WFI = 0x1050_0073
EBREAK = 0x0010_0073
C_EBREAK = 0x9002

CSR_TIME = 0xC01
CSR_MIP = 0x344

_OP_LOAD = 0x03
_OP_LOAD_FP = 0x07
_OP_STORE = 0x23
_OP_STORE_FP = 0x27
_OP_AMO = 0x2F
_OP_SYSTEM = 0x73


class AccessKind(enum.Enum):
    LOAD = "load"
    STORE = "store"
    AMO = "amo"  # LR, SC and AMOs: faults report as store/AMO, except LR which is a load

    @property
    def is_store_like(self) -> bool:
        return self is not AccessKind.LOAD


@dataclass(frozen=True, slots=True)
class MemAccess:
    """A decoded memory instruction: address = x[base] + offset, ``width`` bytes."""

    kind: AccessKind
    width: int
    base: int  # x register holding the base address
    offset: int
    reg: int  # destination (loads) or source (stores) register number
    fp: bool = False  # ``reg`` names an f register
    signed: bool = False  # a load that sign-extends
    length: int = 4  # instruction length in bytes


@dataclass(frozen=True, slots=True)
class CsrOp:
    csr: int
    rd: int
    funct3: int
    source: int  # rs1, or the 5-bit immediate for the *I forms

    @property
    def is_read_only(self) -> bool:
        """csrrs/csrrc with x0, or csrrsi/csrrci with 0: a pure read (rdtime is csrrs rd, time, x0)."""
        return self.funct3 in (2, 3, 6, 7) and self.source == 0

    @property
    def uses_immediate(self) -> bool:
        """csrrwi/csrrsi/csrrci: ``source`` is the value itself, not a register number."""
        return self.funct3 >= 5

    def new_value(self, old: int, operand: int) -> int:
        """What the instruction writes to a CSR holding ``old``, given its operand's value."""
        kind = self.funct3 & 3
        if kind == 1:
            return operand
        return old | operand if kind == 2 else old & ~operand


def insn_length(low_half: int) -> int:
    """2 for a compressed instruction, 4 otherwise (longer encodings do not exist in rv64gc)."""
    return 4 if low_half & 3 == 3 else 2


def _sext(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


def decode_mem(insn: int) -> MemAccess | None:
    """The memory access ``insn`` makes, or None if it makes none this module knows."""
    if insn & 3 != 3:
        return _decode_compressed(insn & 0xFFFF)
    opcode = insn & 0x7F
    rd = (insn >> 7) & 0x1F
    funct3 = (insn >> 12) & 7
    rs1 = (insn >> 15) & 0x1F
    rs2 = (insn >> 20) & 0x1F
    if opcode == _OP_LOAD and funct3 != 7:
        return MemAccess(AccessKind.LOAD, 1 << (funct3 & 3), rs1, _sext(insn >> 20, 12), rd, signed=funct3 < 4)
    if opcode == _OP_LOAD_FP and funct3 in (2, 3):
        return MemAccess(AccessKind.LOAD, 1 << funct3, rs1, _sext(insn >> 20, 12), rd, fp=True)
    store_imm = _sext(((insn >> 25) << 5) | ((insn >> 7) & 0x1F), 12)
    if opcode == _OP_STORE and funct3 < 4:
        return MemAccess(AccessKind.STORE, 1 << funct3, rs1, store_imm, rs2)
    if opcode == _OP_STORE_FP and funct3 in (2, 3):
        return MemAccess(AccessKind.STORE, 1 << funct3, rs1, store_imm, rs2, fp=True)
    if opcode == _OP_AMO and funct3 in (2, 3):
        funct5 = insn >> 27
        if funct5 == 0b00010:  # LR
            return MemAccess(AccessKind.LOAD, 1 << funct3, rs1, 0, rd, signed=True)
        return MemAccess(AccessKind.AMO, 1 << funct3, rs1, 0, rd, signed=True)
    return None


def _decode_compressed(insn: int) -> MemAccess | None:
    quadrant = insn & 3
    funct3 = insn >> 13
    b = insn
    if quadrant == 0:
        rs1 = 8 + ((b >> 7) & 7)
        reg = 8 + ((b >> 2) & 7)
        if funct3 in (2, 6):  # c.lw / c.sw: uimm[5:3]=12:10, [2]=6, [6]=5
            off = ((b >> 10) & 7) << 3 | ((b >> 6) & 1) << 2 | ((b >> 5) & 1) << 6
            width = 4
        elif funct3 in (1, 3, 5, 7):  # c.fld c.ld c.fsd c.sd: uimm[5:3]=12:10, [7:6]=6:5
            off = ((b >> 10) & 7) << 3 | ((b >> 5) & 3) << 6
            width = 8
        else:
            return None
        kind = AccessKind.LOAD if funct3 < 4 else AccessKind.STORE
        fp = funct3 in (1, 5)
        return MemAccess(kind, width, rs1, off, reg, fp=fp, signed=kind is AccessKind.LOAD and not fp, length=2)
    if quadrant == 2:
        rd = (b >> 7) & 0x1F
        rs2 = (b >> 2) & 0x1F
        if funct3 == 2 and rd:  # c.lwsp: uimm[5]=12, [4:2]=6:4, [7:6]=3:2
            off = ((b >> 12) & 1) << 5 | ((b >> 4) & 7) << 2 | ((b >> 2) & 3) << 6
            return MemAccess(AccessKind.LOAD, 4, 2, off, rd, signed=True, length=2)
        if funct3 in (1, 3) and (rd or funct3 == 1):  # c.fldsp / c.ldsp: [5]=12, [4:3]=6:5, [8:6]=4:2
            off = ((b >> 12) & 1) << 5 | ((b >> 5) & 3) << 3 | ((b >> 2) & 7) << 6
            fp = funct3 == 1
            return MemAccess(AccessKind.LOAD, 8, 2, off, rd, fp=fp, signed=not fp, length=2)
        if funct3 == 6:  # c.swsp: uimm[5:2]=12:9, [7:6]=8:7
            off = ((b >> 9) & 0xF) << 2 | ((b >> 7) & 3) << 6
            return MemAccess(AccessKind.STORE, 4, 2, off, rs2, length=2)
        if funct3 in (5, 7):  # c.fsdsp / c.sdsp: uimm[5:3]=12:10, [8:6]=9:7
            off = ((b >> 10) & 7) << 3 | ((b >> 7) & 7) << 6
            return MemAccess(AccessKind.STORE, 8, 2, off, rs2, fp=funct3 == 5, length=2)
    return None


def decode_csr(insn: int) -> CsrOp | None:
    """The Zicsr instruction ``insn`` is, or None."""
    if insn & 0x7F != _OP_SYSTEM:
        return None
    funct3 = (insn >> 12) & 7
    if funct3 in (0, 4):
        return None
    return CsrOp(csr=insn >> 20, rd=(insn >> 7) & 0x1F, funct3=funct3, source=(insn >> 15) & 0x1F)


def is_ebreak(insn: int) -> bool:
    return insn == EBREAK or (insn & 0xFFFF) == C_EBREAK
