"""The riscv64 page-table walk in Python, over the VM's guest memory.

The backend reads guest memory itself in two places: the instruction at a faulting PC (to
decode it; ``read_virtual``) and page-table entries (to tell which page of a page-crossing
access faulted; ``faulting_address``). Both read through the VM's one ``GuestMemory``, typed
here as the read-only ``GuestMemoryReader``: the walk never sees a host address, reads nothing
but 8-byte PTEs inside that memory, and can be tested on a plain ``GuestMemory`` with no engine
(this module imports no unicorn).

``translate`` follows the privileged spec's "Virtual Address Translation Process" (v1.12:
4.3.2; Sv39 4.4, Sv48 4.5, Sv57 4.6). satp.MODE selects the scheme (``SATP_MODES``); the
three differ only in the number of 9-bit VPN levels (3, 4, 5), hence in the bit a VA must be
sign-extended from (38, 47, 56), and a leaf may sit at any level (4 KiB, 2 MiB, 1 GiB,
512 GiB, 256 TiB) if its PPN is aligned to its size. The engine accepts all three and Linux
takes the deepest (Debian's kernel runs Sv57), so a walker without Sv57 would decode every
fault of such a guest as if paging were off. MPRV/MPP give the effective privilege of
data accesses from M mode, SUM lets S mode touch user pages, MXR makes executable pages
readable. Like unicorn (QEMU 5.0's riscv target) it treats a clear A or D bit as something the
hardware sets, not as a fault, so it faults exactly where the engine does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from axaddrspace import GuestMemoryError, GuestMemoryReader, GuestPhysAddr

from .riscv_priv import PRIV_M, PRIV_S, PRIV_U

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

_PTE_V, _PTE_R, _PTE_W, _PTE_X, _PTE_U = 1, 2, 4, 8, 16
_MSTATUS_MPRV = 1 << 17
_MSTATUS_SUM = 1 << 18
_MSTATUS_MXR = 1 << 19
SATP_MODES: dict[int, tuple[str, int]] = {0: ("bare", 0), 8: ("sv39", 3), 9: ("sv48", 4), 10: ("sv57", 5)}
"""satp.MODE -> (name, page-table levels) for every mode the engine accepts in a satp write
(it keeps the old value for any other); the one table the walk and ``vm translate`` share."""
_SATP_MODE_LEVELS = {mode: levels for mode, (_, levels) in SATP_MODES.items() if levels}
_PPN_MASK = (1 << 44) - 1
_U64 = (1 << 64) - 1


class Access(enum.Enum):
    FETCH = "fetch"
    LOAD = "load"
    STORE = "store"


def read_phys(mem: GuestMemoryReader, gpa: int, size: int) -> bytes | None:
    """``size`` bytes of guest RAM at ``gpa``, or None if any of them is not RAM (the guest's
    fault, which the caller turns into the trap the hart takes)."""
    if size == 0:
        return b""
    if not 0 <= gpa < 1 << 64:
        return None
    try:
        return mem.read(GuestPhysAddr(gpa), size)
    except GuestMemoryError:
        return None


def _read_pte(mem: GuestMemoryReader, gpa: int) -> int | None:
    try:
        return mem.read_u64(GuestPhysAddr(gpa))  # gpa < 2^56: a 44-bit PPN and a 12-bit offset
    except GuestMemoryError:
        return None  # a table outside RAM: the hart takes an access fault; here, no translation


def effective_priv(priv: int, access: Access, mstatus: int) -> int:
    """The privilege a data access is checked at: MPP when M mode sets MPRV."""
    if access is not Access.FETCH and priv == PRIV_M and mstatus & _MSTATUS_MPRV:
        return (mstatus >> 11) & 3
    return priv


def translate(
    mem: GuestMemoryReader,
    va: int,
    access: Access,
    *,
    priv: int,
    satp: int,
    mstatus: int,
    on_pte: Callable[[int, int | None], None] | None = None,
) -> int | None:
    """The guest physical address of ``va``, or None where the hart takes a page fault.

    ``on_pte`` sees each entry the walk reads: its address and value (None outside RAM), for
    tools that show a walk step by step.
    """
    priv = effective_priv(priv, access, mstatus)
    levels = _SATP_MODE_LEVELS.get(satp >> 60)
    if priv == PRIV_M or levels is None:
        return va  # Bare, or M mode: no translation
    va_bits = PAGE_SHIFT + 9 * levels  # 39, 48 or 57
    top = va >> (va_bits - 1)
    if top not in (0, (1 << (65 - va_bits)) - 1):
        return None  # not sign-extended: a page fault
    table = (satp & _PPN_MASK) << PAGE_SHIFT
    for level in range(levels - 1, -1, -1):
        vpn = (va >> (PAGE_SHIFT + 9 * level)) & 0x1FF
        pte = _read_pte(mem, table + vpn * 8)
        if on_pte is not None:
            on_pte(table + vpn * 8, pte)
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


def faulting_address(
    mem: GuestMemoryReader, va: int, size: int, access: Access, *, priv: int, satp: int, mstatus: int
) -> int:
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


def read_virtual(
    mem: GuestMemoryReader, va: int, size: int, access: Access, *, priv: int, satp: int, mstatus: int
) -> bytes | None:
    """``size`` bytes at virtual ``va`` as a hart at ``priv`` with these CSRs sees them, page by
    page, or None where any byte does not translate or is not RAM. The address wraps at 2^64."""
    va &= _U64
    out = b""
    while size > 0:
        n = min(size, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
        pa = translate(mem, va, access, priv=priv, satp=satp, mstatus=mstatus)
        chunk = None if pa is None else read_phys(mem, pa, n)
        if chunk is None:
            return None
        out += chunk
        va = (va + n) & _U64
        size -= n
    return out
