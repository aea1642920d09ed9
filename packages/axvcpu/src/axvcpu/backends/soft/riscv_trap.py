"""Trap entry done by hand, where unicorn does not deliver a trap to the guest itself.

Theory of operation (privileged spec 3.1.8 "medeleg and mideleg", 3.1.6.1 the interrupt-enable
stack, 3.1.7 "mtvec", 4.1.1 "sstatus"): a trap taken in privilege ``priv`` goes to S mode when
``priv`` is S or U and the cause's bit is set in medeleg (exceptions) or mideleg (interrupts);
otherwise to M. Entering mode X saves the PC in xepc, the cause in xcause (bit 63 set for
interrupts), the trap value in xtval, pushes xIE into xPIE and clears xIE, records the previous
privilege in xPP (SPP is one bit), and jumps to xtvec's base, or to base + 4 * cause for an
interrupt when xtvec's mode is Vectored.

All writes happen with the host at PRIV=M (unicorn checks host CSR access like guest access),
in one ``uc_reg_write_batch`` ending with the new privilege and the PC.
"""

from __future__ import annotations

from unicorn import riscv_const as rc

from .riscv_regs import PC, PRIV, PRIV_M, PRIV_S, RegFile

CAUSE_INTERRUPT = 1 << 63

_SIE, _MIE, _SPIE, _MPIE, _SPP = 1 << 1, 1 << 3, 1 << 5, 1 << 7, 1 << 8
_MPP_SHIFT = 11
_MPP = 3 << _MPP_SHIFT
_TRAP_CSRS = (
    rc.UC_RISCV_REG_MEDELEG,
    rc.UC_RISCV_REG_MIDELEG,
    rc.UC_RISCV_REG_MSTATUS,
    rc.UC_RISCV_REG_MTVEC,
    rc.UC_RISCV_REG_STVEC,
)


def trap_target(cause: int, interrupt: bool, priv: int, medeleg: int, mideleg: int) -> int:
    """The privilege a trap is taken in: S if delegated and not coming from M, else M."""
    deleg = mideleg if interrupt else medeleg
    if priv <= PRIV_S and deleg >> cause & 1:
        return PRIV_S
    return PRIV_M


def enter_trap(regs: RegFile, cause: int, *, interrupt: bool, epc: int, tval: int, priv: int) -> int:
    """Take trap ``cause`` from privilege ``priv`` at ``epc``; returns the privilege entered."""
    regs.write(PRIV, PRIV_M)
    medeleg, mideleg, mstatus, mtvec, stvec = regs.read_many(*_TRAP_CSRS)
    target = trap_target(cause, interrupt, priv, medeleg, mideleg)
    code = cause | (CAUSE_INTERRUPT if interrupt else 0)
    if target == PRIV_S:
        tvec = stvec
        status = mstatus & ~(_SPIE | _SIE | _SPP)
        status |= _SPIE if mstatus & _SIE else 0
        status |= _SPP if priv == PRIV_S else 0
        writes = [
            (rc.UC_RISCV_REG_SEPC, epc),
            (rc.UC_RISCV_REG_SCAUSE, code),
            (rc.UC_RISCV_REG_STVAL, tval),
        ]
    else:
        tvec = mtvec
        status = mstatus & ~(_MPIE | _MIE | _MPP)
        status |= _MPIE if mstatus & _MIE else 0
        status |= (priv & 3) << _MPP_SHIFT
        writes = [
            (rc.UC_RISCV_REG_MEPC, epc),
            (rc.UC_RISCV_REG_MCAUSE, code),
            (rc.UC_RISCV_REG_MTVAL, tval),
        ]
    base = tvec & ~3
    handler = base + 4 * cause if interrupt and tvec & 3 == 1 else base
    writes += [(rc.UC_RISCV_REG_MSTATUS, status), (PRIV, target), (PC, handler)]
    regs.write_many(writes)
    return target


def interrupt_enabled(irq: int, *, priv: int, mstatus: int, mideleg: int) -> bool:
    """Whether pending-and-enabled interrupt ``irq`` is taken now (globally enabled)."""
    if mideleg >> irq & 1:  # delegated: never taken in M mode (3.1.9)
        return priv != PRIV_M and (priv < PRIV_S or bool(mstatus & _SIE))
    return priv < PRIV_M or bool(mstatus & _MIE)
