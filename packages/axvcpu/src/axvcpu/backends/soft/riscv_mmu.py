"""Guest physical RAM as the backend sees it, and the riscv64 page-table walk in Python.

The backend reads guest memory itself in three places: the instruction at a faulting PC (to
decode it), page-table entries (to tell which page of a page-crossing access faulted), and
nothing else. ``PhysMem`` gives zero-copy views over the RAM that the stage-2 mappings put
into every engine; its layout is an immutable tuple replaced on change, so a vCPU thread always
reads one consistent layout.

``translate`` follows the privileged spec's "Virtual Address Translation Process" (section
4.3.2, Sv39; 4.4 Sv48): satp.MODE selects the scheme, MPRV/MPP give the effective privilege of
data accesses from M mode, SUM lets S mode touch user pages, MXR makes executable pages
readable. Like unicorn (QEMU 5.0's riscv target) it treats a clear A or D bit as something the
hardware sets, not as a fault, so it faults exactly where the engine does.
"""

from __future__ import annotations

import ctypes
import enum
from bisect import bisect_right

from .riscv_regs import PRIV_M, PRIV_S, PRIV_U

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

_PTE_V, _PTE_R, _PTE_W, _PTE_X, _PTE_U = 1, 2, 4, 8, 16
_MSTATUS_MPRV = 1 << 17
_MSTATUS_SUM = 1 << 18
_MSTATUS_MXR = 1 << 19
_SATP_MODE_LEVELS = {8: 3, 9: 4}  # Sv39, Sv48
_PPN_MASK = (1 << 44) - 1


class Access(enum.Enum):
    FETCH = "fetch"
    LOAD = "load"
    STORE = "store"


class PhysMem:
    """Guest RAM by guest physical address, as zero-copy memoryviews over the host mappings."""

    def __init__(self) -> None:
        self._layout: tuple[tuple[int, ...], tuple[tuple[int, int, memoryview], ...]] = ((), ())

    def add(self, gpa: int, size: int, host_addr: int) -> None:
        view = memoryview((ctypes.c_ubyte * size).from_address(host_addr)).cast("B")
        starts, maps = self._layout
        i = bisect_right(starts, gpa)
        self._layout = ((*starts[:i], gpa, *starts[i:]), (*maps[:i], (gpa, gpa + size, view), *maps[i:]))

    def remove(self, gpa: int) -> None:
        starts, maps = self._layout
        i = bisect_right(starts, gpa) - 1
        if i >= 0 and starts[i] == gpa:
            self._layout = (starts[:i] + starts[i + 1 :], maps[:i] + maps[i + 1 :])

    def read(self, gpa: int, size: int) -> bytes | None:
        """``size`` bytes at ``gpa``, or None if any of them is not RAM."""
        starts, maps = self._layout
        out = b""
        while size > 0:
            i = bisect_right(starts, gpa) - 1
            if i < 0:
                return None
            start, end, view = maps[i]
            if gpa >= end:
                return None
            n = min(size, end - gpa)
            out += view[gpa - start : gpa - start + n]
            gpa += n
            size -= n
        return out

    def read_u64(self, gpa: int) -> int | None:
        data = self.read(gpa, 8)
        return None if data is None else int.from_bytes(data, "little")

    def contains(self, gpa: int) -> bool:
        starts, maps = self._layout
        i = bisect_right(starts, gpa) - 1
        return i >= 0 and gpa < maps[i][1]


def effective_priv(priv: int, access: Access, mstatus: int) -> int:
    """The privilege a data access is checked at: MPP when M mode sets MPRV."""
    if access is not Access.FETCH and priv == PRIV_M and mstatus & _MSTATUS_MPRV:
        return (mstatus >> 11) & 3
    return priv


def translate(mem: PhysMem, va: int, access: Access, *, priv: int, satp: int, mstatus: int) -> int | None:
    """The guest physical address of ``va``, or None where the hart takes a page fault."""
    priv = effective_priv(priv, access, mstatus)
    levels = _SATP_MODE_LEVELS.get(satp >> 60)
    if priv == PRIV_M or levels is None:
        return va  # Bare, or M mode: no translation (unicorn also supports only Sv39/Sv48)
    va_bits = PAGE_SHIFT + 9 * levels
    top = va >> (va_bits - 1)
    if top not in (0, (1 << (65 - va_bits)) - 1):
        return None  # not sign-extended: a page fault
    table = (satp & _PPN_MASK) << PAGE_SHIFT
    for level in range(levels - 1, -1, -1):
        vpn = (va >> (PAGE_SHIFT + 9 * level)) & 0x1FF
        pte = mem.read_u64(table + vpn * 8)
        if pte is None or not pte & _PTE_V or (pte & (_PTE_R | _PTE_W)) == _PTE_W:
            return None
        ppn = (pte >> 10) & _PPN_MASK
        if pte & (_PTE_R | _PTE_X):
            return _leaf(pte, ppn, level, va, access, priv, mstatus)
        table = ppn << PAGE_SHIFT
    return None


def _leaf(pte: int, ppn: int, level: int, va: int, access: Access, priv: int, mstatus: int) -> int | None:
    if not _permitted(pte, access, priv, mstatus):
        return None
    low_ppn_bits = 9 * level
    if ppn & ((1 << low_ppn_bits) - 1):
        return None  # a misaligned superpage
    offset_bits = PAGE_SHIFT + low_ppn_bits
    return (ppn << PAGE_SHIFT) | (va & ((1 << offset_bits) - 1))


def _permitted(pte: int, access: Access, priv: int, mstatus: int) -> bool:
    user_page = bool(pte & _PTE_U)
    if priv == PRIV_U and not user_page:
        return False
    if priv == PRIV_S and user_page and (access is Access.FETCH or not mstatus & _MSTATUS_SUM):
        return False
    if access is Access.FETCH:
        return bool(pte & _PTE_X)
    if access is Access.LOAD:
        return bool(pte & _PTE_R or (mstatus & _MSTATUS_MXR and pte & _PTE_X))
    return bool(pte & _PTE_W)


def faulting_address(mem: PhysMem, va: int, size: int, access: Access, *, priv: int, satp: int, mstatus: int) -> int:
    """stval for a page fault of a ``size``-byte access at ``va``.

    An access within one page faults at ``va``. One that crosses into the next page faults at
    ``va`` if its first page does not translate, else at the start of the second page.
    """
    last = va + size - 1
    if va >> PAGE_SHIFT == last >> PAGE_SHIFT:
        return va
    if translate(mem, va, access, priv=priv, satp=satp, mstatus=mstatus) is None:
        return va
    return (last >> PAGE_SHIFT) << PAGE_SHIFT
