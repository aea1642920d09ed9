"""Register names and fast register access for one unicorn riscv64 engine.

Two facts about unicorn 2.1.4 shape this module:

- The Python binding's ``reg_read``/``reg_read_batch`` cost 1.5 us / 8 us a call; the C entry
  points called through ctypes with preallocated buffers cost 0.8 us / 2 us. Trap entry and
  rdtime emulation touch a handful of registers each, so ``RegFile`` calls the C library
  directly (the binding's own ``uclib`` handle, so it is the very library the engine lives in).
- CSR access from the host is privilege-checked like guest access: reading an M-mode CSR while
  the hart is in S or U mode fails and unicorn hands back an uninitialised value. ``RegFile``
  switches PRIV to M around host CSR accesses and restores it.

``uc_reg_write`` (single) on the PC inside a hook also sets unicorn's ``skip_sync_pc_on_exit``,
which makes a later unmapped-access stop in the same run report a stale PC; the batch entry
point does not, so every PC write here goes through ``uc_reg_write_batch``.
"""

from __future__ import annotations

import ctypes

from unicorn import UcError
from unicorn import riscv_const as rc

try:  # the binding's handle on libunicorn; present in unicorn 2.1.x's Python 3 binding
    from unicorn.unicorn_py3.unicorn import uclib as _uclib
except ImportError:  # pragma: no cover - a different binding layout; fall back to the public API
    _uclib = None  # type: ignore[assignment]  # the try branch typed it as a CDLL

from .riscv_priv import PRIV_M, PRIV_S, PRIV_U  # defined without unicorn, for the pure modules

PC = rc.UC_RISCV_REG_PC
PRIV = rc.UC_RISCV_REG_PRIV

ABI_NAMES = (
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
    "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6",
)  # fmt: skip

GPR_IDS: dict[str, int] = {f"x{i}": rc.UC_RISCV_REG_X0 + i for i in range(32)}
GPR_IDS.update({name: rc.UC_RISCV_REG_X0 + i for i, name in enumerate(ABI_NAMES)})
GPR_IDS["fp"] = rc.UC_RISCV_REG_X8

FPR_IDS: dict[str, int] = {f"f{i}": rc.UC_RISCV_REG_F0 + i for i in range(32)}

CSR_IDS: dict[str, int] = {
    "mstatus": rc.UC_RISCV_REG_MSTATUS,
    "misa": rc.UC_RISCV_REG_MISA,
    "medeleg": rc.UC_RISCV_REG_MEDELEG,
    "mideleg": rc.UC_RISCV_REG_MIDELEG,
    "mie": rc.UC_RISCV_REG_MIE,
    "mip": rc.UC_RISCV_REG_MIP,
    "mtvec": rc.UC_RISCV_REG_MTVEC,
    "mscratch": rc.UC_RISCV_REG_MSCRATCH,
    "mepc": rc.UC_RISCV_REG_MEPC,
    "mcause": rc.UC_RISCV_REG_MCAUSE,
    "mtval": rc.UC_RISCV_REG_MTVAL,
    "mcounteren": rc.UC_RISCV_REG_MCOUNTEREN,
    "mhartid": rc.UC_RISCV_REG_MHARTID,
    "sstatus": rc.UC_RISCV_REG_SSTATUS,
    "sie": rc.UC_RISCV_REG_SIE,
    "sip": rc.UC_RISCV_REG_SIP,
    "stvec": rc.UC_RISCV_REG_STVEC,
    "sscratch": rc.UC_RISCV_REG_SSCRATCH,
    "sepc": rc.UC_RISCV_REG_SEPC,
    "scause": rc.UC_RISCV_REG_SCAUSE,
    "stval": rc.UC_RISCV_REG_STVAL,
    "scounteren": rc.UC_RISCV_REG_SCOUNTEREN,
    "satp": rc.UC_RISCV_REG_SATP,
    "fcsr": rc.UC_RISCV_REG_FCSR,
}

_vmem_read = None
if _uclib is not None and hasattr(_uclib, "uc_vmem_read"):  # unicorn >= 2.1; not in the Python binding
    _vmem_read = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t
    )(("uc_vmem_read", _uclib))

_CSR_ID_SET = frozenset(CSR_IDS.values())
_X0 = rc.UC_RISCV_REG_X0
_U64 = (1 << 64) - 1
_BATCH_MAX = 16


class RegFile:
    """Register access for one engine: GPRs and PC directly, CSRs with PRIV switched to M."""

    def __init__(self, uc: object) -> None:
        self._uc = uc
        self._uch = getattr(uc, "_uch", None)
        self._fast = _uclib is not None and self._uch is not None
        self._buf = ctypes.c_uint64()
        self._ref = ctypes.byref(self._buf)
        # Batches reuse these arrays: building ctypes arrays per call costs more than the call.
        self._ids = (ctypes.c_int * _BATCH_MAX)()
        self._vals = (ctypes.c_uint64 * _BATCH_MAX)()
        base = ctypes.addressof(self._vals)
        self._ptrs = (ctypes.c_void_p * _BATCH_MAX)(*(base + 8 * i for i in range(_BATCH_MAX)))
        if self._fast:
            self._read = _uclib.uc_reg_read
            self._write = _uclib.uc_reg_write
            self._read_batch = _uclib.uc_reg_read_batch
            self._write_batch = _uclib.uc_reg_write_batch

    # -- plain registers ------------------------------------------------------------------------

    def read(self, regid: int) -> int:
        if not self._fast:
            return int(self._uc.reg_read(regid))  # type: ignore[attr-defined]
        status = self._read(self._uch, regid, self._ref)
        if status:
            raise UcError(status)
        return self._buf.value

    def write(self, regid: int, value: int) -> None:
        """Write one register; not for the PC (use ``write_many``, see the module docstring)."""
        if not self._fast:
            self._uc.reg_write(regid, value & _U64)  # type: ignore[attr-defined]
            return
        self._buf.value = value & _U64
        status = self._write(self._uch, regid, self._ref)
        if status:
            raise UcError(status)

    def read_many(self, *regids: int) -> tuple[int, ...]:
        """Read up to 16 registers in one call (no PRIV switching: see ``read_csrs``)."""
        if not self._fast:
            return tuple(int(v) for v in self._uc.reg_read_batch(list(regids)))  # type: ignore[attr-defined]
        n = len(regids)
        ids = self._ids
        for i, regid in enumerate(regids):
            ids[i] = regid
        status = self._read_batch(self._uch, ids, self._ptrs, n)
        if status:
            raise UcError(status)
        return tuple(self._vals[:n])

    def write_many(self, pairs: list[tuple[int, int]]) -> None:
        """Write up to 16 registers in order, in one call; safe for the PC inside hooks."""
        if not self._fast:
            self._uc.reg_write_batch([(regid, value & _U64) for regid, value in pairs])  # type: ignore[attr-defined]
            return
        ids, vals = self._ids, self._vals
        for i, (regid, value) in enumerate(pairs):
            ids[i] = regid
            vals[i] = value & _U64
        status = self._write_batch(self._uch, ids, self._ptrs, len(pairs))
        if status:
            raise UcError(status)

    @property
    def pc(self) -> int:
        return self.read(PC)

    def set_pc(self, value: int) -> None:
        self.write_many([(PC, value)])

    @property
    def priv(self) -> int:
        return self.read(PRIV) & 3

    def set_priv(self, value: int) -> None:
        if value not in (PRIV_U, PRIV_S, PRIV_M):
            raise ValueError(f"privilege {value} is not U (0), S (1) or M (3)")
        self.write(PRIV, value)

    # -- CSRs -------------------------------------------------------------------------------------

    def read_csr(self, regid: int) -> int:
        priv = self.read(PRIV)
        if priv == PRIV_M:
            return self.read(regid)
        self.write(PRIV, PRIV_M)
        try:
            return self.read(regid)
        finally:
            self.write(PRIV, priv)

    def read_csrs(self, *regids: int) -> tuple[int, ...]:
        priv = self.read(PRIV)
        if priv == PRIV_M:
            return self.read_many(*regids)
        self.write(PRIV, PRIV_M)
        try:
            return self.read_many(*regids)
        finally:
            self.write(PRIV, priv)

    def write_csr(self, regid: int, value: int) -> None:
        priv = self.read(PRIV)
        if priv == PRIV_M:
            self.write(regid, value)
            return
        self.write(PRIV, PRIV_M)
        try:
            self.write(regid, value)
        finally:
            self.write(PRIV, priv)

    def is_csr(self, regid: int) -> bool:
        return regid in _CSR_ID_SET

    # -- by name ------------------------------------------------------------------------------------

    def by_name(self, name: str, value: int | None = None) -> int:
        """Register ``name`` ("pc", "priv", an x/f/ABI name or a CSR in ``CSR_IDS``), written
        first when ``value`` is given; KeyError naming it for anything else. x0 stays zero."""
        if name == "pc":
            if value is not None:
                self.set_pc(value)
            return self.pc
        if name == "priv":
            if value is not None:
                self.set_priv(value)
            return self.priv
        regid = GPR_IDS.get(name) or FPR_IDS.get(name)
        if regid is not None:
            if value is not None and regid != _X0:
                self.write(regid, value)
            return self.read(regid) if regid != _X0 else 0
        regid = CSR_IDS.get(name)
        if regid is None:
            raise KeyError(f"riscv64 soft vCPU has no register {name!r}")
        if value is not None:
            if name == "mhartid":
                set_mhartid(self._uc, self, value)
            else:
                self.write_csr(regid, value)
        return self.read_csr(regid)

    # -- guest memory through the engine's MMU ------------------------------------------------------

    @property
    def can_read_virtual(self) -> bool:
        return self._fast and _vmem_read is not None

    def read_virtual(self, va: int, size: int, prot: int) -> bytes | None:
        """``size`` (<= 8) bytes at virtual ``va`` as the hart's current privilege sees them.

        unicorn's ``uc_vmem_read`` probes the engine's own TLB and page-table walk without
        faulting, so what it reads is exactly what the hart fetched; None where it would fault.
        """
        assert _vmem_read is not None
        status = _vmem_read(self._uch, va & _U64, prot, ctypes.addressof(self._vals), size)
        if status:
            return None
        return ctypes.string_at(ctypes.addressof(self._vals), size)


# -- mhartid ------------------------------------------------------------------------------------
#
# Unicorn never sets CPURISCVState.mhartid (every engine reads 0) and the CSR is read-only, to
# the host as to the guest. The one way in is the saved context: uc_context_save copies the
# CPURISCVState verbatim (qemu/target/riscv/cpu.h, unicorn 2.1.4), where mhartid sits between
# resetvec and mstatus. The offsets below are checked against live register values before
# anything is written, and the result is read back, so a different layout fails loudly.

_ENV_PC = 512  # gpr[32], fpr[32] come first
_ENV_MISA = 568
_ENV_PRIV = 592
_ENV_MHARTID = 616
_ENV_MSTATUS = 624


class HartIdError(RuntimeError):
    """mhartid could not be set in this unicorn build."""


def set_mhartid(uc: object, regs: RegFile, hartid: int) -> None:
    """Make the engine's mhartid read ``hartid``."""
    ctx = uc.context_save()  # type: ignore[attr-defined]
    raw = bytes(ctx)
    pc = regs.read(PC)
    priv = regs.read(PRIV) & 3
    misa, mstatus = regs.read_csrs(CSR_IDS["misa"], CSR_IDS["mstatus"])

    def qword(offset: int) -> int:
        return int.from_bytes(raw[offset : offset + 8], "little")

    needle = misa.to_bytes(8, "little")
    env = -1
    start = raw.find(needle)
    while start >= 0:
        candidate = start - _ENV_MISA
        if (
            candidate >= 0
            and qword(candidate + _ENV_PC) == pc
            and qword(candidate + _ENV_PRIV) == priv
            and qword(candidate + _ENV_MSTATUS) == mstatus
        ):
            env = candidate
            break
        start = raw.find(needle, start + 1)
    if env < 0:
        raise HartIdError("cannot locate CPURISCVState in unicorn's saved context; mhartid stays 0")
    base = ctypes.cast(ctx.context, ctypes.c_void_p).value
    if base is None:
        raise HartIdError("unicorn returned an empty context")
    ctypes.memmove(base + env + _ENV_MHARTID, (hartid & _U64).to_bytes(8, "little"), 8)
    uc.context_restore(ctx)  # type: ignore[attr-defined]
    got = regs.read_csr(CSR_IDS["mhartid"])
    if got != hartid & _U64:
        raise HartIdError(f"mhartid reads {got:#x} after setting it to {hartid:#x}")
