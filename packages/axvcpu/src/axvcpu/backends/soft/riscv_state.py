"""A soft riscv64 hart's full state as plain data, for VM snapshots, and back.

Theory of operation. What a guest can see of a hart (privileged spec, sections 3 and 4) is its
x and f registers, the PC, the privilege level and the CSRs; on this machine the M-level
interrupt bits live outside unicorn (``HartInterrupts``: lines driven by the CLINT and PLIC,
pulses latched until taken) and the timer compare values are the CLINT's (device state, saved
with the devices). ``capture`` reads all of it into a dict of ints; ``restore`` writes it into
a fresh engine, switching PRIV to M for the CSR writes (host CSR access is privilege-checked)
and restoring the privilege last.

What unicorn 2.1.4 does not expose, and what restore does about it:

- The LR/SC reservation (``load_res``/``load_val`` in CPURISCVState) has no register id. A
  restored hart starts without a reservation, so an SC right after a restore fails and the
  guest retries its LR/SC loop; the ISA allows an SC to fail so (unprivileged spec 8.2).
  Snapshots are taken between slices, where a guest is rarely inside such a loop anyway.
- PMP registers (pmpcfg/pmpaddr) have no register id either: they are not saved, and a fresh
  engine has no PMP entries, which lets every mode reach all memory (M-mode firmware's PMP
  protection of itself is lost; the guest kernel never relies on it for correctness).
- cycle/instret count host work and are not restored; the guest's clock (``time``) is the
  backend's mtime, saved separately with ``SoftRiscvBackend.save_clock``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unicorn import riscv_const as rc

from .riscv_irq import HartInterrupts
from .riscv_priv import PRIV_M, PRIV_S, PRIV_U
from .riscv_regs import CSR_IDS, PC, PRIV, RegFile

STATE_VERSION = 1
"""Bumped when the layout below changes; a dict of another version is refused."""

SAVED_CSRS = (
    "misa", "medeleg", "mideleg", "mie", "mtvec", "mscratch", "mepc", "mcause", "mtval",
    "mcounteren", "stvec", "sscratch", "sepc", "scause", "stval", "scounteren", "satp", "fcsr",
    "mip", "mstatus", "mhartid",
)  # fmt: skip
"""Every CSR unicorn lets the host read that the guest sees: sstatus/sie/sip are views of
mstatus/mie/mip and come back with them. mstatus is written last but one (before PRIV)."""

_X0, _F0 = rc.UC_RISCV_REG_X0, rc.UC_RISCV_REG_F0
_MSTATUS_FS_DIRTY = 3 << 13
_U64 = (1 << 64) - 1
_PRIVS = (PRIV_U, PRIV_S, PRIV_M)


class HartStateError(ValueError):
    """A saved hart state this hart cannot take (names the field)."""


def capture(regs: RegFile, irqs: HartInterrupts, *, halted: bool, parked_in_firmware: bool) -> dict[str, Any]:
    """Everything above as a JSON-ready dict (ints, bools, lists of ints)."""
    pc, priv = regs.read_many(PC, PRIV)
    pulses, latched_m = irqs.latched()
    return {
        "version": STATE_VERSION,
        "arch": "riscv64",
        "pc": pc,
        "priv": priv & 3,
        "x": [0, *regs.read_many(*range(_X0 + 1, _X0 + 16)), *regs.read_many(*range(_X0 + 16, _X0 + 32))],
        "f": [*regs.read_many(*range(_F0, _F0 + 16)), *regs.read_many(*range(_F0 + 16, _F0 + 32))],
        "csr": _read_csrs(regs),
        "pulses": pulses,
        "latched_m": latched_m,
        "halted": halted,
        "parked_in_firmware": parked_in_firmware,
        "lr_sc_reservation": None,  # not readable through unicorn: cleared on restore (see above)
    }


def _read_csrs(regs: RegFile) -> dict[str, int]:
    """The CSRs, fcsr read with mstatus.FS made dirty for the moment: with FS off unicorn
    refuses the read (and hands back garbage), yet the value is there for when FS is on again."""
    csrs = {name: regs.read_csr(CSR_IDS[name]) for name in SAVED_CSRS if name != "fcsr"}
    mstatus = csrs["mstatus"]
    if mstatus & _MSTATUS_FS_DIRTY == _MSTATUS_FS_DIRTY:
        csrs["fcsr"] = regs.read_csr(CSR_IDS["fcsr"])
    else:
        regs.write_csr(CSR_IDS["mstatus"], mstatus | _MSTATUS_FS_DIRTY)
        try:
            csrs["fcsr"] = regs.read_csr(CSR_IDS["fcsr"])
        finally:
            regs.write_csr(CSR_IDS["mstatus"], mstatus)
    return {name: csrs[name] for name in SAVED_CSRS}


def check(state: Mapping[str, Any], hart: int) -> None:
    """HartStateError unless ``state`` is one ``capture`` could have made for hart ``hart``."""
    if not isinstance(state, Mapping):
        raise HartStateError(f"hart {hart}: expected a table of registers, got {type(state).__name__}")
    if state.get("version") != STATE_VERSION or state.get("arch") != "riscv64":
        raise HartStateError(
            f"hart {hart}: state version {state.get('version')!r} arch {state.get('arch')!r}; "
            f"expected version {STATE_VERSION} of riscv64"
        )
    _u64(hart, "pc", state.get("pc"))
    if state.get("priv") not in _PRIVS:
        raise HartStateError(f"hart {hart}: priv {state.get('priv')!r} is not 0, 1 or 3")
    for bank in ("x", "f"):
        values = state.get(bank)
        if not isinstance(values, list) or len(values) != 32:
            raise HartStateError(f"hart {hart}: {bank} must list 32 registers")
        for index, value in enumerate(values):
            _u64(hart, f"{bank}{index}", value)
    csrs = state.get("csr")
    if not isinstance(csrs, Mapping) or set(csrs) != set(SAVED_CSRS):
        raise HartStateError(f"hart {hart}: csr must name exactly {', '.join(SAVED_CSRS)}")
    for name in SAVED_CSRS:
        _u64(hart, name, csrs[name])
    if csrs["mhartid"] != hart:
        raise HartStateError(f"hart {hart}: saved mhartid is {csrs['mhartid']}")
    for name in ("pulses", "latched_m"):
        _u64(hart, name, state.get(name))
    for name in ("halted", "parked_in_firmware"):
        if not isinstance(state.get(name), bool):
            raise HartStateError(f"hart {hart}: {name} must be true or false")


def restore(regs: RegFile, irqs: HartInterrupts, state: Mapping[str, Any], hart: int) -> tuple[bool, bool]:
    """Write ``state`` (checked first) into the engine; returns (halted, parked_in_firmware)
    for the vCPU's own flags. The engine's translated code must be flushed afterwards."""
    check(state, hart)
    csrs = state["csr"]
    regs.write(PRIV, PRIV_M)
    if regs.read(CSR_IDS["misa"]) != csrs["misa"]:
        regs.write(CSR_IDS["misa"], csrs["misa"])
    regs.write(CSR_IDS["mstatus"], csrs["mstatus"] | _MSTATUS_FS_DIRTY)  # FP state writable
    for index, value in enumerate(state["f"]):
        regs.write(_F0 + index, value)
    for name in SAVED_CSRS:
        if name not in ("misa", "mstatus", "mhartid"):
            regs.write(CSR_IDS[name], csrs[name])
    for index in range(1, 32):
        regs.write(_X0 + index, state["x"][index])
    regs.write(CSR_IDS["mstatus"], csrs["mstatus"])
    regs.write_many([(PC, state["pc"])])
    regs.write(PRIV, state["priv"])
    irqs.restore_latched(state["pulses"], state["latched_m"])
    return state["halted"], state["parked_in_firmware"]


def _u64(hart: int, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64:
        raise HartStateError(f"hart {hart}: {name} = {value!r} is not a 64-bit unsigned integer")
