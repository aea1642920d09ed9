"""Register names and fast register access for one unicorn arm64 engine.

Plain registers (x0-x30, sp, pc, pstate, elr_el1, ...) have unicorn ids and go through the
riscv backend's ``RegFile`` (the C entry points with preallocated buffers; nothing in it is
riscv-specific but its name). System registers unicorn has no id for (spsr_el1, sctlr_el1,
the timer, the EL2/EL3 controls the vCPU sets once) go through ``UC_ARM64_REG_CP_REG`` with an
``uc_arm64_cp_reg`` struct, encoded as in the MRS/MSR instruction (op0, op1, CRn, CRm, op2).

Two facts about unicorn 2.1.4 (qemu/target/arm/unicorn_aarch64.c) shape the writes:

- writing PSTATE stores the bits but neither switches the banked stack pointer nor rebuilds
  the cached translation flags (hflags: the current EL among them), so code after a PSTATE
  write that changes the EL would be translated for the old EL. Every CP_REG write rebuilds
  them, so ``rebuild_hflags`` writes one register (TPIDR_EL1) with the value it has;
- a CP_REG write uses the register's raw write function where it has one: the timer control
  registers take a host write (ISTATUS included) although the guest's writes to them are
  dropped by unicorn (its timers are compiled out).
"""

from __future__ import annotations

import ctypes

from unicorn import UcError
from unicorn import arm64_const as ac

from .riscv_regs import RegFile

try:  # the binding's handle on libunicorn (unicorn 2.1.x's Python 3 binding)
    from unicorn.unicorn_py3.unicorn import uclib as _uclib
except ImportError:  # pragma: no cover - a different binding layout
    _uclib = None  # type: ignore[assignment]  # the try branch typed it as a CDLL

__all__ = [
    "CP_REG",
    "PC",
    "PSTATE",
    "SP",
    "SYSREGS",
    "A64Regs",
    "SysReg",
    "register_id",
]

PC = ac.UC_ARM64_REG_PC
SP = ac.UC_ARM64_REG_SP
PSTATE = ac.UC_ARM64_REG_PSTATE
CP_REG = ac.UC_ARM64_REG_CP_REG
X0 = ac.UC_ARM64_REG_X0
_U64 = (1 << 64) - 1

SysReg = tuple[int, int, int, int, int]
"""(op0, op1, CRn, CRm, op2): a system register as MRS/MSR encode it."""

SPSR_EL1: SysReg = (3, 0, 4, 0, 0)
SCTLR_EL1: SysReg = (3, 0, 1, 0, 0)
TCR_EL1: SysReg = (3, 0, 2, 0, 2)
TPIDR_EL1: SysReg = (3, 0, 13, 0, 4)
MPIDR_EL1: SysReg = (3, 0, 0, 0, 5)
CNTFRQ_EL0: SysReg = (3, 3, 14, 0, 0)
CNTKCTL_EL1: SysReg = (3, 0, 14, 1, 0)
CNTP_CTL_EL0: SysReg = (3, 3, 14, 2, 1)
CNTP_CVAL_EL0: SysReg = (3, 3, 14, 2, 2)
CNTV_CTL_EL0: SysReg = (3, 3, 14, 3, 1)
CNTV_CVAL_EL0: SysReg = (3, 3, 14, 3, 2)
SCR_EL3: SysReg = (3, 6, 1, 1, 0)
HCR_EL2: SysReg = (3, 4, 1, 1, 0)
CNTHCTL_EL2: SysReg = (3, 4, 14, 1, 0)
CNTVOFF_EL2: SysReg = (3, 4, 14, 0, 3)
VMPIDR_EL2: SysReg = (3, 4, 0, 0, 5)

SYSREGS: dict[str, SysReg] = {
    "spsr_el1": SPSR_EL1,
    "sctlr_el1": SCTLR_EL1,
    "tcr_el1": TCR_EL1,
    "mpidr_el1": VMPIDR_EL2,  # what EL1 reads as MPIDR_EL1 when EL2 exists (see aarch64.py)
    "cntfrq_el0": CNTFRQ_EL0,
    "cntkctl_el1": CNTKCTL_EL1,
    "cntp_ctl_el0": CNTP_CTL_EL0,
    "cntp_cval_el0": CNTP_CVAL_EL0,
    "cntv_ctl_el0": CNTV_CTL_EL0,
    "cntv_cval_el0": CNTV_CVAL_EL0,
    "contextidr_el1": (3, 0, 13, 0, 1),
    "amair_el1": (3, 0, 10, 3, 0),
    "afsr0_el1": (3, 0, 5, 1, 0),
    "afsr1_el1": (3, 0, 5, 1, 1),
}
"""Registers reached through CP_REG by name."""

_PLAIN: dict[str, int] = {f"x{i}": X0 + i for i in range(29)}
_PLAIN.update(
    {
        "x29": ac.UC_ARM64_REG_X29,
        "x30": ac.UC_ARM64_REG_X30,
        "fp": ac.UC_ARM64_REG_X29,
        "lr": ac.UC_ARM64_REG_X30,
        "sp": SP,
        "pc": PC,
        "pstate": PSTATE,
        "nzcv": ac.UC_ARM64_REG_NZCV,
        "elr_el1": ac.UC_ARM64_REG_ELR_EL1,
        "esr_el1": ac.UC_ARM64_REG_ESR_EL1,
        "far_el1": ac.UC_ARM64_REG_FAR_EL1,
        "vbar_el1": ac.UC_ARM64_REG_VBAR_EL1,
        "sp_el0": ac.UC_ARM64_REG_SP_EL0,
        "sp_el1": ac.UC_ARM64_REG_SP_EL1,
        "tpidr_el0": ac.UC_ARM64_REG_TPIDR_EL0,
        "tpidr_el1": ac.UC_ARM64_REG_TPIDR_EL1,
        "tpidrro_el0": ac.UC_ARM64_REG_TPIDRRO_EL0,
        "ttbr0_el1": ac.UC_ARM64_REG_TTBR0_EL1,
        "ttbr1_el1": ac.UC_ARM64_REG_TTBR1_EL1,
        "mair_el1": ac.UC_ARM64_REG_MAIR_EL1,
        "par_el1": ac.UC_ARM64_REG_PAR_EL1,
        "cpacr_el1": ac.UC_ARM64_REG_CPACR_EL1,
        "fpcr": ac.UC_ARM64_REG_FPCR,
        "fpsr": ac.UC_ARM64_REG_FPSR,
    }
)


def register_id(name: str) -> int | SysReg:
    """The unicorn id of register ``name``, or its system-register encoding; KeyError if unknown."""
    key = name.lower()
    if key in _PLAIN:
        return _PLAIN[key]
    if key in SYSREGS:
        return SYSREGS[key]
    raise KeyError(f"aarch64 has no register {name!r} here (x0-x30, sp, pc, pstate, *_el1 and timer registers)")


class _CpReg(ctypes.Structure):
    """unicorn's ``uc_arm64_cp_reg`` (include/unicorn/arm64.h): five uint32 fields, then uint64 val."""

    _fields_ = (
        ("crn", ctypes.c_uint32),
        ("crm", ctypes.c_uint32),
        ("op0", ctypes.c_uint32),
        ("op1", ctypes.c_uint32),
        ("op2", ctypes.c_uint32),
        ("val", ctypes.c_uint64),
    )


class A64Regs:
    """Register access for one arm64 engine: plain registers by id, system registers by encoding."""

    def __init__(self, uc: object) -> None:
        self._uc = uc
        self.file = RegFile(uc)  # plain registers: read/write/read_many/write_many
        self._uch = getattr(uc, "_uch", None)
        self._cp = _CpReg()
        self._cp_ref = ctypes.byref(self._cp)
        self._fast = _uclib is not None and self._uch is not None

    def read(self, regid: int) -> int:
        return self.file.read(regid)

    def write(self, regid: int, value: int) -> None:
        """One plain register; the PC only through ``write_many`` (riscv_regs says why)."""
        self.file.write(regid, value)

    def read_many(self, *regids: int) -> tuple[int, ...]:
        return self.file.read_many(*regids)

    def write_many(self, pairs: list[tuple[int, int]]) -> None:
        self.file.write_many(pairs)

    def sysreg(self, reg: SysReg) -> int:
        op0, op1, crn, crm, op2 = reg
        if not self._fast:
            return int(self._uc.reg_read(CP_REG, (crn, crm, op0, op1, op2)))  # type: ignore[attr-defined]
        cp = self._cp
        cp.crn, cp.crm, cp.op0, cp.op1, cp.op2, cp.val = crn, crm, op0, op1, op2, 0
        status = _uclib.uc_reg_read(self._uch, CP_REG, self._cp_ref)
        if status:
            raise UcError(status)
        return int(cp.val)

    def set_sysreg(self, reg: SysReg, value: int) -> None:
        """Write a system register (raw write where unicorn has one); rebuilds hflags."""
        op0, op1, crn, crm, op2 = reg
        if not self._fast:
            self._uc.reg_write(CP_REG, (crn, crm, op0, op1, op2, value & _U64))  # type: ignore[attr-defined]
            return
        cp = self._cp
        cp.crn, cp.crm, cp.op0, cp.op1, cp.op2, cp.val = crn, crm, op0, op1, op2, value & _U64
        status = _uclib.uc_reg_write(self._uch, CP_REG, self._cp_ref)
        if status:
            raise UcError(status)

    def rebuild_hflags(self) -> None:
        """Make unicorn recompute its cached EL and translation flags after a PSTATE write."""
        self.set_sysreg(TPIDR_EL1, self.sysreg(TPIDR_EL1))

    def by_name(self, name: str, value: int | None = None) -> int:
        """Read register ``name``, or write ``value`` to it (and return it)."""
        reg = register_id(name)
        if value is None:
            return self.sysreg(reg) if isinstance(reg, tuple) else self.read(reg)
        if isinstance(reg, tuple):
            self.set_sysreg(reg, value)
        elif reg == PC:
            self.write_many([(PC, value)])
        elif reg == PSTATE:
            self.write(PSTATE, value)
            self.rebuild_hflags()
        else:
            self.write(reg, value)
        return value & _U64
