"""AArch64 exception entry as pure functions: syndromes (ESR_EL1), vector offsets, PSTATE.

Theory of operation (Arm ARM DDI 0487: D1.10 "Exception entry", D1.10.2 "Exception vectors",
D17.2.40 ESR_ELx). Unicorn raises every synchronous exception to the vCPU's hook instead of
entering it, and never enters an IRQ (it has no input for one), so the vCPU enters them itself
at EL1, the guest's highest level:

- ESR_EL1 = EC << 26 | IL << 25 | ISS; IL is 1 (every A64 instruction is 32 bits, and IL is
  RES1 for aborts without a valid instruction syndrome);
- the vector is VBAR_EL1 + the source block (current EL with SP_EL0 0x000, with SP_ELx 0x200,
  lower EL in AArch64 0x400, in AArch32 0x600) + the kind (sync 0x000, IRQ 0x080, FIQ 0x100,
  SError 0x180);
- SPSR_EL1 = the PSTATE before entry, ELR_EL1 = the preferred return address, and PSTATE
  becomes EL1h with D, A, I and F masked;
- the stack pointer: EL1h uses SP_EL1, so entry from EL0 or EL1t banks SP into SP_EL0 and loads
  SP_EL1 (``switches_stack``).
"""

from __future__ import annotations

from .aarch64_decode import MemAccess

__all__ = [
    "EC_BRK64",
    "EC_DABT_CUR",
    "EC_DABT_LOW",
    "EC_HVC64",
    "EC_IABT_CUR",
    "EC_IABT_LOW",
    "EC_SMC64",
    "EC_SVC64",
    "EC_UNKNOWN",
    "data_abort_esr",
    "entry_pstate",
    "esr",
    "immediate_esr",
    "instruction_abort_esr",
    "switches_stack",
    "vector_offset",
]

EC_UNKNOWN = 0x00
EC_SVC64 = 0x15
EC_HVC64 = 0x16
EC_SMC64 = 0x17
EC_SYS64 = 0x18
EC_IABT_LOW = 0x20
EC_IABT_CUR = 0x21
EC_DABT_LOW = 0x24
EC_DABT_CUR = 0x25
EC_BRK64 = 0x3C

VECTOR_SYNC = 0x000
VECTOR_IRQ = 0x080
VECTOR_FIQ = 0x100
VECTOR_SERROR = 0x180

FSC_EXTERNAL = 0x10
"""Synchronous external abort, not on a table walk: an access no RAM or device answers."""
FSC_ALIGNMENT = 0x21

PSTATE_EL_SHIFT = 2
PSTATE_SP = 1  # SPSel: 1 = SP_ELx
PSTATE_NRW = 1 << 4  # 1 = AArch32
PSTATE_DAIF = 0xF << 6
PSTATE_I = 1 << 7
PSTATE_EL1H = 1 << PSTATE_EL_SHIFT | PSTATE_SP


def esr(ec: int, iss: int = 0) -> int:
    return (ec & 0x3F) << 26 | 1 << 25 | iss & 0x1FF_FFFF


def immediate_esr(ec: int, insn: int) -> int:
    """SVC, HVC, SMC, BRK: the 16-bit immediate (bits 20:5 of the instruction) is the ISS."""
    return esr(ec, insn >> 5 & 0xFFFF)


def data_abort_esr(access: MemAccess | None, fsc: int, *, from_el0: bool, with_syndrome: bool) -> int:
    """ESR for a data abort. ``with_syndrome``: report the instruction (ISV and its fields) where
    the access allows it; faults from the guest's own translation tables report none (ISV=0),
    as the architecture does for stage 1 aborts taken to EL1."""
    iss = fsc & 0x3F
    if access is not None:
        if access.write:
            iss |= 1 << 6  # WnR
        if access.cache_op:
            iss |= 1 << 8  # CM
        if with_syndrome and access.isv and access.size in (1, 2, 4, 8):
            sas = access.size.bit_length() - 1
            iss |= 1 << 24 | sas << 22 | access.signed << 21 | (access.rt & 31) << 16
            iss |= access.sf << 15 | access.acqrel << 14
    return esr(EC_DABT_LOW if from_el0 else EC_DABT_CUR, iss)


def instruction_abort_esr(fsc: int, *, from_el0: bool) -> int:
    return esr(EC_IABT_LOW if from_el0 else EC_IABT_CUR, fsc & 0x3F)


def current_el(pstate: int) -> int:
    return pstate >> PSTATE_EL_SHIFT & 3


def vector_offset(pstate: int, kind: int) -> int:
    """Offset from VBAR_EL1 for an exception of ``kind`` (VECTOR_*) taken from ``pstate``."""
    if pstate & PSTATE_NRW:
        return 0x600 + kind  # from AArch32 EL0
    if current_el(pstate) == 0:
        return 0x400 + kind
    return (0x200 if pstate & PSTATE_SP else 0x000) + kind


def entry_pstate() -> int:
    """PSTATE after entry to EL1: EL1h, D, A, I, F masked, flags clear (as QEMU's entry)."""
    return PSTATE_DAIF | PSTATE_EL1H


def switches_stack(pstate: int) -> bool:
    """Entry from ``pstate`` moves SP: from EL0 or EL1t, SP is banked as SP_EL0, SP_EL1 loaded."""
    return bool(pstate & PSTATE_NRW) or current_el(pstate) == 0 or not pstate & PSTATE_SP
