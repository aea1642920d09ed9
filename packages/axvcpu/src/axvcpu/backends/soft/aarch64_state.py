"""A soft aarch64 vCPU's full state as plain data, for VM snapshots, and back.

Theory of operation. What an EL1 guest can see of its CPU (Arm ARM DDI 0487, D1 and D17) is
X0-X30, the two stack pointers it uses (SP_EL0, SP_EL1), the PC, PSTATE (NZCV, DAIF,
CurrentEL, SPSel), the SIMD&FP registers V0-V31 with FPCR and FPSR, its EL1/EL0 system
registers and the generic timer. Outside unicorn this vCPU keeps the timers' ENABLE/IMASK and
last output levels (``GenericTimers``: unicorn drops the guest's control writes) and its IRQ
input's latched pulse and level (``IrqInput``). The IRQ level and the timer PPIs are also the
GIC's, restored with the devices: restore takes back only the latched pulse, and has the
timers tell the GIC both their levels at the next slice. ``capture`` reads all of it into a dict of
ints; ``restore`` checks every field first, then writes it into a fresh engine: the system
registers, then PSTATE (hflags rebuilt for its EL), then the stack pointers, the general and
FP registers and the PC.

The counters: the virtual count is the backend's pause-able clock, saved with the VM
(``SoftAarch64Backend.save_clock``), so CNTV_CVAL is saved as it is. The physical count is the
host's CLOCK_MONOTONIC, which another process (another boot of the host) starts elsewhere, so
CNTP_CVAL is saved with the physical count at the save and restored at the same distance
ahead of (or behind) the physical count at the restore.

What unicorn 2.1.4 does not expose, and what restore does about it:

- The exclusive monitor (LDXR/STXR's ``exclusive_addr``) has no register id. A fresh engine's
  monitor is open (no address held), so a STXR right after a restore fails and the guest
  retries its LDXR/STXR loop; the architecture allows a store-exclusive to fail so (B2.9.5:
  an exclusive monitor may be cleared at any time, e.g. by an exception return).
- A WFI that ended the last slice is not saved as waiting: the restored vCPU runs on from the
  instruction after it, a spurious wakeup the architecture allows (a WFI may complete at any
  time, D1.16.2).
- Whether a vCPU is powered on is the machine's (PSCI, ``CpuPower``), saved with the machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unicorn import arm64_const as ac

from . import aarch64_regs as r
from .aarch64_irq import IrqInput
from .aarch64_timer import CTL_ENABLE, CTL_IMASK, PHYS, VIRT, GenericTimers

__all__ = ["PLAIN_SYSREGS", "STATE_VERSION", "CP_SYSREGS", "VCpuStateError", "capture", "check", "restore"]

STATE_VERSION = 1
"""Bumped when the layout below changes; a dict of another version is refused."""

PLAIN_SYSREGS: dict[str, int] = {
    "elr_el1": ac.UC_ARM64_REG_ELR_EL1,
    "esr_el1": ac.UC_ARM64_REG_ESR_EL1,
    "far_el1": ac.UC_ARM64_REG_FAR_EL1,
    "vbar_el1": ac.UC_ARM64_REG_VBAR_EL1,
    "tpidr_el0": ac.UC_ARM64_REG_TPIDR_EL0,
    "tpidrro_el0": ac.UC_ARM64_REG_TPIDRRO_EL0,
    "tpidr_el1": ac.UC_ARM64_REG_TPIDR_EL1,
    "ttbr0_el1": ac.UC_ARM64_REG_TTBR0_EL1,
    "ttbr1_el1": ac.UC_ARM64_REG_TTBR1_EL1,
    "mair_el1": ac.UC_ARM64_REG_MAIR_EL1,
    "par_el1": ac.UC_ARM64_REG_PAR_EL1,
    "cpacr_el1": ac.UC_ARM64_REG_CPACR_EL1,
}
"""EL1/EL0 system registers unicorn has a register id for."""

CP_SYSREGS: dict[str, r.SysReg] = {
    "sctlr_el1": r.SCTLR_EL1,
    "tcr_el1": r.TCR_EL1,
    "spsr_el1": r.SPSR_EL1,
    "amair_el1": (3, 0, 10, 3, 0),
    "contextidr_el1": (3, 0, 13, 0, 1),
    "afsr0_el1": (3, 0, 5, 1, 0),
    "afsr1_el1": (3, 0, 5, 1, 1),
    "cntkctl_el1": r.CNTKCTL_EL1,
    "mdscr_el1": (2, 0, 0, 2, 2),
    "csselr_el1": (3, 2, 0, 0, 0),
    "cntv_cval_el0": r.CNTV_CVAL_EL0,
    "cntp_cval_el0": r.CNTP_CVAL_EL0,
}
"""The rest of what EL1 can read and write, through CP_REG by its MRS/MSR encoding. The
timer control registers are not here: their writable bits are ``GenericTimers``' (see above)."""

_X29, _X30 = ac.UC_ARM64_REG_X29, ac.UC_ARM64_REG_X30
_XREGS = (*range(r.X0, r.X0 + 29), _X29, _X30)
_Q0 = ac.UC_ARM64_REG_Q0
_SP_EL0, _SP_EL1 = ac.UC_ARM64_REG_SP_EL0, ac.UC_ARM64_REG_SP_EL1
_PSTATE_SPSEL = 1
_PSTATE_EL = 3 << 2
_PSTATE_EL1H = 0x5
_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_U128 = (1 << 128) - 1
_CTL_BITS = CTL_ENABLE | CTL_IMASK


class VCpuStateError(ValueError):
    """A saved vCPU state this vCPU cannot take (names the field)."""


def _uses_sp_el1(pstate: int) -> bool:
    """Whether the current SP is SP_EL1: at EL1 with SPSel set (EL1h)."""
    return pstate & _PSTATE_EL == 1 << 2 and bool(pstate & _PSTATE_SPSEL)


def capture(
    regs: r.A64Regs,
    uc: Any,
    timers: GenericTimers,
    irq: IrqInput,
    *,
    vcpu_id: int,
    physical_count: int,
    woke_masked: bool,
) -> dict[str, Any]:
    """Everything above as a JSON-ready dict (ints, bools, lists and tables of ints)."""
    pc, pstate, sp, sp_el0, sp_el1 = regs.read_many(r.PC, r.PSTATE, r.SP, _SP_EL0, _SP_EL1)
    pstate &= _U32
    if _uses_sp_el1(pstate):  # the bank in use lives in SP; its banked copy is stale
        sp_el1 = sp
    else:
        sp_el0 = sp
    sysregs = {name: regs.read(regid) for name, regid in PLAIN_SYSREGS.items()}
    sysregs.update({name: regs.sysreg(enc) for name, enc in CP_SYSREGS.items()})
    pulse, level = irq.saved()
    return {
        "version": STATE_VERSION,
        "arch": "aarch64",
        "mpidr": regs.sysreg(r.VMPIDR_EL2),
        "x": [*regs.read_many(*_XREGS[:16]), *regs.read_many(*_XREGS[16:])],  # 16 a call
        "sp_el0": sp_el0,
        "sp_el1": sp_el1,
        "pc": pc,
        "pstate": pstate,
        "q": [int(uc.reg_read(_Q0 + n)) & _U128 for n in range(32)],  # 128-bit: the binding's path
        "fpcr": regs.read(ac.UC_ARM64_REG_FPCR) & _U32,
        "fpsr": regs.read(ac.UC_ARM64_REG_FPSR) & _U32,
        "sysregs": sysregs,
        "timer": {
            "cntv_ctl": timers.ctl[VIRT],
            "cntp_ctl": timers.ctl[PHYS],
            "levels": list(timers.levels),
            "physical_count": physical_count,
        },
        "irq": {"pulse": pulse, "level": level},
        "woke_masked": woke_masked,
        "exclusive_monitor": None,  # not readable through unicorn: open after restore (see above)
    }


def check(state: Mapping[str, Any], vcpu_id: int, mpidr: int) -> None:
    """VCpuStateError unless ``state`` is one ``capture`` could have made for this vCPU."""
    where = f"vCPU {vcpu_id}"
    if not isinstance(state, Mapping):
        raise VCpuStateError(f"{where}: expected a table of registers, got {type(state).__name__}")
    if state.get("version") != STATE_VERSION or state.get("arch") != "aarch64":
        raise VCpuStateError(
            f"{where}: state version {state.get('version')!r} arch {state.get('arch')!r}; "
            f"expected version {STATE_VERSION} of aarch64"
        )
    _uint(where, "mpidr", state.get("mpidr"), _U64)
    if state["mpidr"] != mpidr:
        raise VCpuStateError(f"{where}: saved mpidr is {state['mpidr']:#x}, this vCPU's is {mpidr:#x}")
    _bank(where, "x", state.get("x"), 31, _U64)
    _bank(where, "q", state.get("q"), 32, _U128)
    for name in ("sp_el0", "sp_el1", "pc"):
        _uint(where, name, state.get(name), _U64)
    for name in ("pstate", "fpcr", "fpsr"):
        _uint(where, name, state.get(name), _U32)
    if state["pstate"] & _PSTATE_EL not in (0, 1 << 2):
        raise VCpuStateError(f"{where}: pstate {state['pstate']:#x} is not at EL0 or EL1")
    sysregs = state.get("sysregs")
    expected = set(PLAIN_SYSREGS) | set(CP_SYSREGS)
    if not isinstance(sysregs, Mapping) or set(sysregs) != expected:
        raise VCpuStateError(f"{where}: sysregs must name exactly {', '.join(sorted(expected))}")
    for name in sorted(expected):
        _uint(where, name, sysregs[name], _U64)
    timer = _table(where, "timer", state.get("timer"), {"cntv_ctl", "cntp_ctl", "levels", "physical_count"})
    for name in ("cntv_ctl", "cntp_ctl"):
        _uint(where, f"timer.{name}", timer[name], _CTL_BITS)
    _uint(where, "timer.physical_count", timer["physical_count"], _U64)
    levels = timer["levels"]
    if not isinstance(levels, list) or len(levels) != 2 or not all(isinstance(v, bool) for v in levels):
        raise VCpuStateError(f"{where}: timer.levels must be two booleans")
    irq = _table(where, "irq", state.get("irq"), {"pulse", "level"})
    for name in ("pulse", "level"):
        _bool(where, f"irq.{name}", irq[name])
    _bool(where, "woke_masked", state.get("woke_masked"))


def restore(
    regs: r.A64Regs,
    uc: Any,
    timers: GenericTimers,
    irq: IrqInput,
    state: Mapping[str, Any],
    *,
    vcpu_id: int,
    physical_count: int,
) -> bool:
    """Write ``state`` (checked first) into the engine, the timers and the IRQ input; returns
    ``woke_masked``. The caller flushes the translated code and re-syncs CNTVOFF and the timer
    controls before the next slice."""
    check(state, vcpu_id, regs.sysreg(r.VMPIDR_EL2))
    sysregs, timer = state["sysregs"], state["timer"]
    regs.write(r.PSTATE, _PSTATE_EL1H | (state["pstate"] & ~_PSTATE_EL & ~_PSTATE_SPSEL))
    regs.rebuild_hflags()  # at EL1h while the EL1 registers go in
    for name, enc in CP_SYSREGS.items():
        value = sysregs[name]
        if name == "cntp_cval_el0":  # the same distance from the physical count as at the save
            value = (value - timer["physical_count"] + physical_count) & _U64
        regs.set_sysreg(enc, value)
    for name, regid in PLAIN_SYSREGS.items():
        regs.write(regid, sysregs[name])
    regs.write(ac.UC_ARM64_REG_FPCR, state["fpcr"])
    regs.write(ac.UC_ARM64_REG_FPSR, state["fpsr"])
    for n, value in enumerate(state["q"]):
        uc.reg_write(_Q0 + n, value)
    pstate = state["pstate"]
    regs.write(r.PSTATE, pstate)
    regs.rebuild_hflags()
    regs.write_many([(_SP_EL0, state["sp_el0"]), (_SP_EL1, state["sp_el1"])])
    regs.write(r.SP, state["sp_el1"] if _uses_sp_el1(pstate) else state["sp_el0"])
    for regid, value in zip(_XREGS, state["x"], strict=True):
        regs.write(regid, value)
    regs.write_many([(r.PC, state["pc"])])
    timers.ctl = [timer["cntv_ctl"], timer["cntp_ctl"]]
    timers.levels = list(timer["levels"])
    timers.resend = True  # the GIC's restored PPI levels hear the timers' own at the next slice
    irq.restore_pulse(state["irq"]["pulse"])  # the level is the GIC's to drive (restored with it)
    return bool(state["woke_masked"])


def _uint(where: str, name: str, value: object, top: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise VCpuStateError(f"{where}: {name} = {value!r} is not an unsigned integer up to {top:#x}")


def _bool(where: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise VCpuStateError(f"{where}: {name} must be true or false, not {value!r}")


def _bank(where: str, name: str, values: object, count: int, top: int) -> None:
    if not isinstance(values, list) or len(values) != count:
        raise VCpuStateError(f"{where}: {name} must list {count} registers")
    for index, value in enumerate(values):
        _uint(where, f"{name}{index}", value, top)


def _table(where: str, name: str, value: object, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or set(value) != keys:
        raise VCpuStateError(f"{where}: {name} must name exactly {', '.join(sorted(keys))}")
    return value
