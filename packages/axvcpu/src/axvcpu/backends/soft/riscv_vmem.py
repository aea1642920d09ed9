"""``HartMemory``: guest memory as one hart sees it, read to decode what the hart stopped at.

Theory of operation. The backend reads guest memory by virtual address only to decode: the
instruction at a faulting PC (a load or store for its address, an rdtime, an ebreak), the
instruction before the PC after a slice (was it a wfi?), and the last two bytes of a page an
instruction fetch crossed. Each read takes the cheapest path that is exact:

- M-mode fetches are not translated: the VM's guest memory at the physical address;
- other fetches go through the engine's own MMU (``uc_vmem_read``, about 1 us, and by
  construction what the hart's TLB gave it), a page at a time;
- data reads, and fetches where the binding lacks ``uc_vmem_read``, walk the page tables in
  Python (``riscv_mmu.read_virtual``) with the hart's satp and mstatus.

Everything is read through the VM's one guest memory (``HartContext.stage2.memory``): never a
host address, and only RAM; anything else reads as None, which the caller turns into tval 0 or
an access fault.
"""

from __future__ import annotations

from collections.abc import Callable

from unicorn import UC_PROT_EXEC

from .hart_context import HartContext
from .riscv_decode import insn_length
from .riscv_mmu import PAGE_SIZE, Access, read_phys, read_virtual
from .riscv_priv import PRIV_M
from .riscv_regs import CSR_IDS, RegFile

_U64 = (1 << 64) - 1
_PAGE_OFFSET = PAGE_SIZE - 1
_SATP, _MSTATUS = CSR_IDS["satp"], CSR_IDS["mstatus"]


class HartMemory:
    """Reads of guest memory by virtual address, as one hart at a given privilege sees it."""

    def __init__(self, regs: RegFile, context: HartContext) -> None:
        self._regs = regs
        self._context = context

    def read(self, va: int, size: int, access: Access, priv: int) -> bytes | None:
        """``size`` bytes at virtual ``va``, or None where any of them cannot be read."""
        va &= _U64
        regs = self._regs
        memory = self._context.stage2.memory
        if priv == PRIV_M and access is Access.FETCH:
            return read_phys(memory, va, size)  # M-mode fetches are not translated
        if access is Access.FETCH and regs.can_read_virtual:
            if (va & _PAGE_OFFSET) + size <= PAGE_SIZE:
                return regs.read_virtual(va, size, UC_PROT_EXEC)
            first = PAGE_SIZE - (va & _PAGE_OFFSET)
            head = regs.read_virtual(va, first, UC_PROT_EXEC)
            tail = regs.read_virtual(va + first, size - first, UC_PROT_EXEC)
            return None if head is None or tail is None else head + tail
        satp, mstatus = regs.read_csrs(_SATP, _MSTATUS)
        return read_virtual(memory, va, size, access, priv=priv, satp=satp, mstatus=mstatus)

    def fetch_insn(self, pc: int, priv: int) -> int | None:
        """The instruction bits at ``pc`` (16 for a compressed one), or None if unreadable."""
        if (pc & _PAGE_OFFSET) <= PAGE_SIZE - 4:  # both halves in one page: one read
            word = self.read(pc, 4, Access.FETCH, priv)
            if word is not None:
                insn = int.from_bytes(word, "little")
                return insn if insn & 3 == 3 else insn & 0xFFFF
        low = self.read(pc, 2, Access.FETCH, priv)
        if low is None:
            return None
        half = int.from_bytes(low, "little")
        if insn_length(half) == 2:
            return half
        high = self.read(pc + 2, 2, Access.FETCH, priv)
        return None if high is None else half | int.from_bytes(high, "little") << 16

    def fetchable(self, priv: int) -> Callable[[int, int], bool]:
        """A ``fetchable(va, size)`` probe at ``priv``, for ``riscv_fault.fetch_fault``."""
        return lambda va, size: self.read(va, size, Access.FETCH, priv) is not None
