"""The EL1&0 stage 1 translation walk in Python, to tell which fault an access took.

Unicorn's MMU reports that a translation failed but not why, and the guest's fault handler
needs the fault status code (Linux tells a translation fault from an access flag fault from a
permission fault by it) and its level. ``fault_status`` walks the tables the way the Arm ARM
describes (DDI 0487, D8 "The AArch64 Virtual Memory System Architecture": D8.2 the
translation table walk, D8.4 descriptors, D8.4.3 hierarchical permissions, D8.5 faults and
their priority: translation, then access flag, then permission) over the VM's guest memory,
and answers the fault status code and the faulting address, or None where the walk finds no
fault (the tables changed since unicorn walked them; the guest then simply retries).

Supported: 4K, 16K and 64K granules, TTBR0/TTBR1 by VA bit 55, T0SZ/T1SZ, EPD0/EPD1, TBI0/TBI1,
AP, APTable, UXN/PXN (and their table forms), WXN and the implicit PXN of EL0-writable pages.
Not modelled: FEAT_PAN (the CPU model has none), hardware access flag updates (neither).
"""

from __future__ import annotations

from dataclasses import dataclass

from axaddrspace import GuestMemoryError, GuestMemoryReader, GuestPhysAddr

__all__ = ["Walk", "fault_status"]

FSC_TRANSLATION = 0x04
FSC_ACCESS_FLAG = 0x08
FSC_PERMISSION = 0x0C
FSC_WALK_EXTERNAL = 0x14

_SCTLR_M = 1
_SCTLR_WXN = 1 << 19
_TG0 = {0: 12, 1: 16, 2: 14}
_TG1 = {1: 14, 2: 12, 3: 16}
_OA_MASK = (1 << 48) - 1


@dataclass(frozen=True, slots=True)
class Walk:
    """The translation registers and memory a walk reads."""

    memory: GuestMemoryReader
    sctlr: int
    tcr: int
    ttbr0: int
    ttbr1: int


def _regime(walk: Walk, va: int) -> tuple[int, int, int, bool] | None:
    """(table base, input size, granule bits, walks disabled) for ``va``; None: outside both ranges."""
    tcr = walk.tcr
    upper = va >> 55 & 1
    if upper:
        tsz, granule, epd, tbi = tcr >> 16 & 63, _TG1.get(tcr >> 30 & 3, 12), tcr >> 23 & 1, tcr >> 38 & 1
        ttbr = walk.ttbr1
    else:
        tsz, granule, epd, tbi = tcr & 63, _TG0.get(tcr >> 14 & 3, 12), tcr >> 7 & 1, tcr >> 37 & 1
        ttbr = walk.ttbr0
    size = 64 - max(min(tsz, 48), 16)
    top = 56 if tbi else 64
    high = (va & ((1 << top) - 1)) >> size
    if high != (((1 << (top - size)) - 1) if upper else 0):
        return None
    return ttbr & _OA_MASK & ~1, size, granule, bool(epd)


def _leaf(walk: Walk, va: int) -> tuple[int, int, int] | int:
    """Walk to the leaf: ``(level, descriptor, table attributes)``, or the fault status code."""
    regime = _regime(walk, va)
    if regime is None:
        return FSC_TRANSLATION
    table, size, granule, disabled = regime
    stride = granule - 3
    level = 4 - -(-(size - granule) // stride)
    if disabled:
        return FSC_TRANSLATION | level
    table_attrs = 0
    while True:
        shift = granule + stride * (3 - level)
        bits = min(stride, size - shift)
        index = va >> shift & ((1 << bits) - 1)
        try:
            desc = walk.memory.read_u64(GuestPhysAddr((table & ~((1 << granule) - 1) & _OA_MASK) + index * 8))
        except GuestMemoryError:
            return FSC_WALK_EXTERNAL | level
        if not desc & 1:
            return FSC_TRANSLATION | level
        if level == 3:
            if not desc & 2:
                return FSC_TRANSLATION | level
            return level, desc, table_attrs
        if not desc & 2:  # a block
            if level == 0 or (granule != 12 and level == 1):
                return FSC_TRANSLATION | level
            return level, desc, table_attrs
        table_attrs |= desc >> 59 & 0x1F  # PXNTable, UXNTable, APTable[1:0] (bits 59-62)
        table = desc & _OA_MASK
        level += 1


def _page_fault(walk: Walk, va: int, *, write: bool, fetch: bool, el0: bool) -> int | None:
    found = _leaf(walk, va)
    if isinstance(found, int):
        return found
    level, desc, table_attrs = found
    if not desc >> 10 & 1:
        return FSC_ACCESS_FLAG | level
    ap = desc >> 6 & 3
    if table_attrs >> 2 & 1:  # APTable[0]: no EL0 access below
        ap &= ~1
    if table_attrs >> 3 & 1:  # APTable[1]: read-only below
        ap |= 2
    el0_access = bool(ap & 1)
    read_only = bool(ap & 2)
    if el0 and not el0_access:
        return FSC_PERMISSION | level
    if write and read_only:
        return FSC_PERMISSION | level
    if fetch:
        uxn = desc >> 54 & 1 or table_attrs >> 1 & 1
        pxn = desc >> 53 & 1 or table_attrs & 1
        writable = not read_only
        wxn = bool(walk.sctlr & _SCTLR_WXN) and writable
        if el0 and (uxn or wxn):
            return FSC_PERMISSION | level
        if not el0 and (pxn or wxn or (el0_access and writable)):
            return FSC_PERMISSION | level
    return None


def fault_status(walk: Walk, va: int, size: int, *, write: bool, fetch: bool, el0: bool) -> tuple[int, int] | None:
    """``(fault status code, faulting address)`` of an access of ``size`` bytes at ``va``, or
    None if neither the first nor the last byte's page faults (or the MMU is off)."""
    if not walk.sctlr & _SCTLR_M:
        return None
    for addr in dict.fromkeys((va, va + max(size, 1) - 1)):
        fsc = _page_fault(walk, addr & ((1 << 64) - 1), write=write, fetch=fetch, el0=el0)
        if fsc is not None:
            return fsc, va if addr == va else addr & ~0xFFF
    return None
