"""Decoding of A64 loads and stores: what a faulting instruction accessed, and how.

Theory of operation (Arm ARM DDI 0487, C4.1.66 "Loads and Stores" encoding tables). Unicorn
tells the vCPU that a data access faulted but not where nor how, so the vCPU decodes the
instruction at the PC: the virtual address (base register plus the addressing mode's offset),
the size, the direction, and the syndrome fields an ESR needs (D17.2.40 "ISS encoding for an
exception from a Data Abort": SAS, SSE, SRT, SF, AR). ``MemAccess.isv`` says whether the
instruction is one the syndrome can describe (a single general-purpose register, no
writeback): only those can leave ``run()`` as MMIO exits. Pure functions; no unicorn here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MemAccess", "decode_access", "is_wfi", "loaded_value"]

_U64 = (1 << 64) - 1
WFI = 0xD503207F

_STRUCT_REGISTERS = {0b0000: 4, 0b0010: 4, 0b0100: 3, 0b0110: 3, 0b0111: 1, 0b1000: 2, 0b1010: 2}
"""Registers a multiple-structures load/store transfers, by its opcode field (LD4, LD1x4, LD3, ...)."""

GprReader = Callable[[int], int]
"""x register ``n`` (0-30) now; 31 is never asked (the decoder maps it to SP or XZR)."""


@dataclass(frozen=True, slots=True)
class MemAccess:
    """One decoded data access of an A64 instruction."""

    addr: int
    size: int
    """Bytes accessed in all (a pair: both registers)."""
    write: bool
    rt: int = 31
    signed: bool = False
    sf: bool = False
    """The register accessed is 64 bits wide (an X register)."""
    acqrel: bool = False
    isv: bool = False
    """A single general-purpose register without writeback: the syndrome describes it fully."""
    cache_op: bool = False
    """A cache maintenance or DC ZVA instruction (ESR.CM)."""


def is_wfi(insn: int | None) -> bool:
    return insn == WFI


def _sext(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


def _base(n: int, gpr: GprReader, sp: int) -> int:
    return sp if n == 31 else gpr(n)


def _index(n: int, gpr: GprReader) -> int:
    return 0 if n == 31 else gpr(n)


def _extend(value: int, option: int) -> int:
    """The register-offset extend (UXTW 010, LSL 011, SXTW 110, SXTX 111)."""
    if option & 3 == 2:
        value &= 0xFFFF_FFFF
        if option & 4:
            value = _sext(value, 32)
    return value


def _single(insn: int, addr: int, *, writeback: bool) -> MemAccess | None:
    """Loads/stores of one register (the three immediate/register forms share these fields)."""
    size = insn >> 30
    vector = bool(insn >> 26 & 1)
    opc = insn >> 22 & 3
    rt = insn & 31
    if vector:
        scale = (opc >> 1) << 2 | size
        if scale > 4:
            return None
        return MemAccess(addr & _U64, 1 << scale, write=not opc & 1, rt=rt)
    if opc == 0:
        return MemAccess(addr & _U64, 1 << size, True, rt, sf=size == 3, isv=not writeback)
    if opc == 1:
        return MemAccess(addr & _U64, 1 << size, False, rt, sf=size == 3, isv=not writeback)
    if size == 3 or (opc == 3 and size == 2):
        return None  # PRFM (no access) or unallocated
    sf = opc == 2  # LDRS* to an X register; opc 3 sign-extends to a W register
    return MemAccess(addr & _U64, 1 << size, False, rt, signed=True, sf=sf, isv=not writeback)


def decode_access(insn: int, pc: int, gpr: GprReader, sp: int) -> MemAccess | None:
    """The data access ``insn`` at ``pc`` makes, or None if it is not a load or store."""
    rn = insn >> 5 & 31
    if insn & 0x3B00_0000 == 0x3900_0000:  # unsigned immediate offset
        size = insn >> 30
        vector = insn >> 26 & 1
        scale = ((insn >> 23 & 1) << 2 | size) if vector else size
        return _single(insn, _base(rn, gpr, sp) + ((insn >> 10 & 0xFFF) << scale), writeback=False)
    if insn & 0x3B20_0000 == 0x3800_0000:  # unscaled, post-index, unprivileged, pre-index
        kind = insn >> 10 & 3
        imm = _sext(insn >> 12 & 0x1FF, 9)
        base = _base(rn, gpr, sp)
        return _single(insn, base if kind == 1 else base + imm, writeback=kind in (1, 3))
    if insn & 0x3B20_0C00 == 0x3820_0800:  # register offset
        size = insn >> 30
        vector = insn >> 26 & 1
        scale = ((insn >> 23 & 1) << 2 | size) if vector else size
        offset = _extend(_index(insn >> 16 & 31, gpr), insn >> 13 & 7)
        if insn >> 12 & 1:
            offset <<= scale
        return _single(insn, _base(rn, gpr, sp) + offset, writeback=False)
    if insn & 0x3B00_0000 == 0x1800_0000:  # literal
        opc = insn >> 30
        vector = insn >> 26 & 1
        addr = (pc + (_sext(insn >> 5 & 0x7FFFF, 19) << 2)) & _U64
        rt = insn & 31
        if vector:
            return None if opc == 3 else MemAccess(addr, 4 << opc, False, rt)
        if opc == 3:
            return None  # PRFM
        return MemAccess(addr, 8 if opc == 1 else 4, False, rt, signed=opc == 2, sf=opc != 0, isv=True)
    if insn & 0x3A00_0000 == 0x2800_0000:  # pairs
        opc = insn >> 30
        vector = insn >> 26 & 1
        scale = 2 + opc if vector else 2 + (opc >> 1)
        kind = insn >> 23 & 3
        imm = _sext(insn >> 15 & 0x7F, 7) << scale
        base = _base(rn, gpr, sp)
        addr = base if kind == 1 else base + imm
        return MemAccess(addr & _U64, 2 << scale, write=not insn >> 22 & 1, rt=insn & 31)
    if insn & 0x3F00_0000 == 0x0800_0000:  # exclusives, load-acquire / store-release
        size = insn >> 30
        o2, load, o1 = insn >> 23 & 1, insn >> 22 & 1, insn >> 21 & 1
        addr = _base(rn, gpr, sp)
        if o2 and not o1:  # LDAR/STLR (and the LORegion forms): one register, ordered
            return MemAccess(addr, 1 << size, not load, insn & 31, sf=size == 3, acqrel=True, isv=True)
        total = (2 if o1 and not o2 else 1) << size
        return MemAccess(addr, total, not load, insn & 31)
    if insn & 0xBF80_0000 in (0x0C00_0000, 0x0C80_0000):  # SIMD multiple structures (LD1-LD4, ST1-ST4)
        registers = _STRUCT_REGISTERS.get(insn >> 12 & 15)
        if registers is None:
            return None
        size = registers * (16 if insn >> 30 & 1 else 8)
        return MemAccess(_base(rn, gpr, sp), size, not insn >> 22 & 1, insn & 31)
    if insn & 0xBF80_0000 in (0x0D00_0000, 0x0D80_0000):  # SIMD single structure (one lane, or LDnR)
        opcode = insn >> 13 & 7
        selem = ((opcode & 1) << 1 | insn >> 21 & 1) + 1
        scale = opcode >> 1
        if scale == 3:  # replicate: the element size is the size field
            scale = insn >> 10 & 3
        elif scale == 2 and insn >> 10 & 1:  # a doubleword lane
            scale = 3
        return MemAccess(_base(rn, gpr, sp), selem << scale, not insn >> 22 & 1, insn & 31)
    if insn & 0xFFF8_F000 == 0xD508_7000:  # SYS #op1, C7, ...: DC operations (address in Xt)
        rt = insn & 31
        addr = _index(rt, gpr)
        zva = insn & 0x0007_0FE0 == 0x0003_0420  # DC ZVA: a 64-byte block (DCZID_EL0.BS 4)
        # DC ZVA is a store: the Arm ARM's ISS.CM excludes it ("not classified as cache
        # maintenance"), and Linux reads WnR only with CM clear (is_write_abort), so CM on a
        # faulting memset's DC ZVA made every retry look like a read: an endless fault loop.
        return MemAccess(addr & ~63 if zva else addr, 64 if zva else 1, True, rt, cache_op=not zva)
    return None


def loaded_value(access: MemAccess, value: int) -> int:
    """What a load writes to its register given the ``value`` read (masked, extended)."""
    bits = access.size * 8
    value &= (1 << bits) - 1
    if access.signed:
        value = _sext(value, bits) & (_U64 if access.sf else 0xFFFF_FFFF)
    return value
