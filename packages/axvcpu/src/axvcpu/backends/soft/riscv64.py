"""``RiscvSoftVCpu``: one riscv64 hart on its own unicorn engine.

Theory of operation. ``run()`` is one slice: apply the hart's interrupt lines, enter a pending
M-level interrupt by hand if it is enabled, then ``emu_start(pc, count=slice)``. Counted slices
are the only reliable way to bound a run (stopping unicorn from another thread corrupted one
boot in three); they cost about a third of the engine's speed. The slice ends in one of four
ways, each decoded here:

- the count ran out: ``Nothing()``, so the VM loop can look at stop requests;
- the guest executed ``wfi`` (unicorn returns with the PC after it): ``Halt()`` unless an
  interrupt is pending and enabled in mie. Unicorn's mip never holds the M-level bits, so a
  csr instruction on mip at the start of a slice in M mode is run here, with them: every wfi
  ends a slice, so the read that follows a wfi (how firmware with interrupts masked looks for
  the IPI that woke it) always sees them;
- a synchronous exception: unicorn calls the INTR hook instead of trapping (with the PC
  already advanced by 4 and every ecall as cause 8). The hook emulates reads of the ``time``
  CSR in place (rdtime is the most frequent trap of a Linux boot) and enters every other trap
  by hand with the right cause and tval, without leaving ``emu_start``;
- an access to an address with neither RAM nor MMIO (unicorn stops with the PC at the
  instruction): a load/store/fetch access fault in the guest, or, with ``mmio_exits``, an
  ``MmioRead``/``MmioWrite`` exit answered with ``complete_read``.

MMIO windows registered with a handler are ``mmio_map``-ed and served inline, on this thread,
by calling the handler; they never leave ``run()``. ``ebreak`` makes unicorn stop with an
error; it becomes a breakpoint trap. Anything else unicorn reports is ``FailEntry``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from unicorn import (
    UC_ARCH_RISCV,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_PROT,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ_PROT,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE_PROT,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_RISCV64,
    UC_PROT_EXEC,
    Uc,
    UcError,
)
from unicorn import riscv_const as rc

from axaddrspace import AccessWidth, GuestPhysAddr, Stage2Mapper, sign_extend

from ...arch import ArchVCpu
from ...errors import PendingReadError
from ...exits import AxVCpuExitReason, FailEntry, Halt, MmioRead, MmioWrite, Nothing
from .riscv_decode import (
    CSR_MIP,
    WFI,
    AccessKind,
    MemAccess,
    decode_csr,
    decode_mem,
    insn_length,
    is_ebreak,
)
from .riscv_irq import IRQ_MSIP, MIP_BITS, HartInterrupts, highest
from .riscv_mmu import Access, faulting_address, read_phys, translate
from .riscv_regs import CSR_IDS, FPR_IDS, GPR_IDS, PC, PRIV, PRIV_M, RegFile, set_mhartid
from .riscv_trap import (
    EXC_BREAKPOINT,
    EXC_ECALL_U,
    EXC_ILLEGAL_INSN,
    EXC_INSN_ACCESS,
    EXC_INSN_PAGE_FAULT,
    EXC_LOAD_ACCESS,
    EXC_LOAD_MISALIGNED,
    EXC_LOAD_PAGE_FAULT,
    EXC_STORE_ACCESS,
    EXC_STORE_MISALIGNED,
    EXC_STORE_PAGE_FAULT,
    enter_trap,
    interrupt_enabled,
)
from .shared import SharedHarts

PRIV_S = 1
SBI_EXT_RFENCE = 0x5246_4E43  # "RFNC"
SBI_RFENCE_FENCE_I = 0
SBI_LEGACY_REMOTE_FENCE_I = 0x05
SBI_EXT_HSM = 0x0048_534D  # "HSM"
SBI_HSM_HART_START = 0
_A6, _A7 = rc.UC_RISCV_REG_X16, rc.UC_RISCV_REG_X17

_U64 = (1 << 64) - 1
_UNTIL = _U64  # an odd address is never a PC: slices end by count, wfi or error only
_X0 = rc.UC_RISCV_REG_X0
_MIP, _MIE, _MSTATUS, _MIDELEG, _SATP = (CSR_IDS[n] for n in ("mip", "mie", "mstatus", "mideleg", "satp"))
_DATA_FAULTS = {
    EXC_LOAD_MISALIGNED: Access.LOAD,
    EXC_LOAD_ACCESS: Access.LOAD,
    EXC_STORE_MISALIGNED: Access.STORE,
    EXC_STORE_ACCESS: Access.STORE,
    EXC_LOAD_PAGE_FAULT: Access.LOAD,
    EXC_STORE_PAGE_FAULT: Access.STORE,
}
_LOAD_TO_STORE_CAUSE = {
    EXC_LOAD_MISALIGNED: EXC_STORE_MISALIGNED,
    EXC_LOAD_ACCESS: EXC_STORE_ACCESS,
    EXC_LOAD_PAGE_FAULT: EXC_STORE_PAGE_FAULT,
}
_FETCH_FAULTS = (EXC_INSN_ACCESS, EXC_INSN_PAGE_FAULT)
_MEMORY_ERRORS = {
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_PROT,
    UC_ERR_WRITE_PROT,
    UC_ERR_FETCH_PROT,
}
_WIDTHS = {1: AccessWidth.BYTE, 2: AccessWidth.WORD, 4: AccessWidth.DWORD, 8: AccessWidth.QWORD}


@dataclass(frozen=True, slots=True)
class _MemFault:
    """What unicorn's unmapped/protection hook saw: the physical address and the access."""

    access: int
    addr: int
    size: int
    value: int


@dataclass(frozen=True, slots=True)
class _PendingRead:
    decoded: MemAccess
    pc: int
    width: int


class RiscvSoftVCpu(ArchVCpu):
    """A riscv64 hart (rv64imafdc + S and U modes, Sv39/Sv48) on a unicorn engine of its own."""

    def __init__(self, shared: SharedHarts, hart: int, irqs: HartInterrupts, slice_instructions: int) -> None:
        self._shared = shared  # what the harts of the VM share; not the backend (no import cycle)
        self.hart = hart
        self._irqs = irqs
        self._slice = slice_instructions
        # mypy reads unicorn.Uc as the Python 2 binding's (no cpu argument): unicorn/unicorn.py picks the
        # binding by sys.version_info.major, which mypy does not evaluate. The Python 3 binding takes cpu.
        self._uc: Any = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64, rc.UC_CPU_RISCV64_SIFIVE_U54)  # type: ignore[call-arg]
        self._regs = RegFile(self._uc)
        self.engine_lock = threading.RLock()
        self._slice_thread: int | None = None
        self._mem_fault: _MemFault | None = None
        self._fail: str | None = None
        self._slice_traps = 0  # traps entered in this slice: a fetch fault is not counted as an instruction
        self._pending_read: _PendingRead | None = None
        self._mmio_windows: list[tuple[int, int]] = []
        self._closed = False
        self._halted = False
        self._parked_in_firmware = False  # the wfi that halted the hart ran in M mode
        self._code_generation = shared.code_generation  # the last code change this engine has seen
        self.traps_entered = 0
        self.time_reads = 0
        self.translation_flushes = 0
        self._uc.hook_add(UC_HOOK_INTR, self._on_exception)
        unmapped = UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED
        prot = UC_HOOK_MEM_READ_PROT | UC_HOOK_MEM_WRITE_PROT | UC_HOOK_MEM_FETCH_PROT
        self._uc.hook_add(unmapped | prot, self._on_bad_access)
        set_mhartid(self._uc, self._regs, hart)
        irqs.on_own_thread = self._apply_line_now

    # -- ArchVCpu -----------------------------------------------------------------------------------

    def setup(self, entry: GuestPhysAddr, stage2: Stage2Mapper | None) -> None:
        """PC at ``entry`` in M mode; RAM comes from the backend's own stage-2, not ``stage2``."""
        with self.engine_lock:
            self._check_open()
            self._regs.set_priv(PRIV_M)
            self._regs.set_pc(int(entry))
            self._pending_read = None

    def run(self) -> AxVCpuExitReason:
        self._check_open()
        if self._pending_read is not None:
            raise PendingReadError(f"hart {self.hart}: answer the pending MMIO read with complete_read() first")
        turns = self._shared.turns
        if turns is not None:
            turns.acquire()
        try:
            with self.engine_lock:
                self._check_open()
                return self._run_slice()
        finally:
            if turns is not None:
                turns.release()

    def complete_read(self, value: int) -> None:
        pending = self._pending_read
        if pending is None:
            raise PendingReadError(f"hart {self.hart}: no MMIO read is waiting for a value")
        decoded = pending.decoded
        bits = pending.width * 8
        value = sign_extend(value, bits, 64) if decoded.signed else value & ((1 << bits) - 1)
        with self.engine_lock:
            self._check_open()
            if decoded.fp:
                boxed = value | (_U64 ^ 0xFFFF_FFFF) if pending.width == 4 else value  # NaN-boxing
                self._regs.write(rc.UC_RISCV_REG_F0 + decoded.reg, boxed)
            elif decoded.reg:
                self._regs.write(_X0 + decoded.reg, value)
            self._regs.set_pc(pending.pc + decoded.length)
        self._pending_read = None

    def get_register(self, name: str) -> int:
        with self.engine_lock:
            self._check_open()
            return self._register_access(name, None)

    def set_register(self, name: str, value: int) -> None:
        with self.engine_lock:
            self._check_open()
            self._register_access(name, value)

    def inject_interrupt(self, vector: int) -> None:
        """Raise MIP bit ``vector`` once (a pulse): S bits until the guest clears them, M until taken."""
        if vector not in MIP_BITS:
            raise ValueError(f"interrupt {vector} is not a MIP bit this hart has ({sorted(MIP_BITS)})")
        self._irqs.pulse_line(vector)

    def wait_for_interrupt(self, timeout: float) -> bool:
        """Block until an interrupt enabled in mie is pending (lines, timer), a kick (True), or
        ``timeout`` (False)."""
        with self.engine_lock:
            self._check_open()
            mie, mip = self._regs.read_csrs(_MIE, _MIP)
        return self._irqs.wait(timeout, mie, mip)

    def kick(self) -> None:
        """Make ``wait_for_interrupt`` return now, from any thread."""
        self._irqs.kick()

    def close(self) -> None:
        """Free the engine now (its translation cache and maps); the vCPU is unusable after."""
        self._shared.stage2.detach(self)  # before the engine lock: map() takes them the other way round
        with self.engine_lock:
            if self._closed:
                return
            self._closed = True
            self._irqs.on_own_thread = None
            uc, self._uc = self._uc, None
            release = getattr(uc, "_Uc__finalizer", None)  # the binding's own uc_close, run once
            if release is not None:
                release()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"hart {self.hart}: the vCPU is closed")

    # -- stage-2 and MMIO (called by SoftStage2 and the backend) -------------------------------------

    def map_ram(self, gpa: int, size: int, host_addr: int, perms: int) -> None:
        with self.engine_lock:
            if not self._closed:
                self._uc.mem_map_ptr(gpa, size, perms, host_addr)

    def unmap_ram(self, gpa: int, size: int) -> None:
        with self.engine_lock:
            if not self._closed:
                self._uc.mem_unmap(gpa, size)

    def set_mmio_windows(self, windows: list[tuple[int, int]]) -> None:
        """Map page-aligned ``(start, size)`` windows served inline by the backend's handler."""
        with self.engine_lock:
            for start, size in self._mmio_windows:
                self._uc.mem_unmap(start, size)
            self._mmio_windows = []
            for start, size in windows:
                try:
                    self._uc.mmio_map(start, size, self._mmio_read, start, self._mmio_write, start)
                except UcError as err:
                    raise ValueError(
                        f"MMIO window [{start:#x}, +{size:#x}) overlaps guest RAM or another window ({err})"
                    ) from err
                self._mmio_windows.append((start, size))

    def _mmio_read(self, _uc: Any, offset: int, size: int, base: int) -> int:
        width = _WIDTHS.get(size)
        handler = self._shared.mmio_handler
        if width is None or handler is None:
            return (1 << (8 * size)) - 1
        return handler.read(base + offset, width) & width.mask

    def _mmio_write(self, _uc: Any, offset: int, size: int, value: int, base: int) -> None:
        width = _WIDTHS.get(size)
        handler = self._shared.mmio_handler
        if width is not None and handler is not None:
            handler.write(base + offset, width, value & width.mask)

    # -- one slice --------------------------------------------------------------------------------------

    def _run_slice(self) -> AxVCpuExitReason:
        regs = self._regs
        self._take_interrupt()
        self._halted = False
        pc = regs.pc
        self._mem_fault = None
        self._fail = None
        self._slice_traps = 0
        self._slice_thread = threading.get_ident()
        try:
            self._uc.emu_start(pc, _UNTIL, count=self._slice)
        except UcError as err:
            return self._on_stop_error(err)
        finally:
            self._slice_thread = None
        if self._fail is not None:
            return FailEntry(0, self._fail)
        return self._after_slice()

    def _after_slice(self) -> AxVCpuExitReason:
        """Tell a wfi from a spent count: the instruction before the PC is a wfi."""
        regs = self._regs
        pc = regs.pc
        priv = regs.priv
        if self._read_virt(pc - 4, 4, Access.FETCH, priv) != WFI.to_bytes(4, "little"):
            return Nothing()
        m_pending = self._apply_lines()
        mie, mip = regs.read_csrs(_MIE, _MIP)
        if (mip | m_pending) & mie:
            return Nothing()  # wfi falls through; the next run() takes the interrupt
        self._halted = True
        self._parked_in_firmware = priv == PRIV_M
        return Halt()

    def _apply_lines(self) -> int:
        """Bring the recorded S-level line changes into unicorn's MIP; the M bits pending now."""
        s_set, s_clear, m_pending, rose = self._irqs.take()
        if s_set or s_clear:
            mip = self._regs.read_csr(_MIP)
            self._regs.write_csr(_MIP, (mip | s_set) & ~s_clear)
        generation = self._shared.code_generation
        woken_in_firmware = self._halted and self._parked_in_firmware and rose & (1 << IRQ_MSIP)
        if generation != self._code_generation or woken_in_firmware:
            self._code_generation = generation
            self.flush_translations()
        return m_pending

    def _announces_new_code(self) -> bool:
        """An SBI call after which other harts must run what RAM holds now: remote fence.i (RFENCE,
        or legacy extension 5) or HSM hart_start. Per the SBI spec, a7 is the extension, a6 the
        function."""
        extension, function = self._regs.read_many(_A7, _A6)
        return (
            (extension == SBI_EXT_RFENCE and function == SBI_RFENCE_FENCE_I)
            or extension == SBI_LEGACY_REMOTE_FENCE_I
            or (extension == SBI_EXT_HSM and function == SBI_HSM_HART_START)
        )

    def flush_translations(self) -> None:
        """Drop the engine's translated code, so the hart next runs what RAM holds now.

        Each engine notices code changes only when it wrote them itself; code another hart or
        the VMM wrote over pages this engine already ran stays stale until flushed. Guests say
        when that happens: Linux follows new code with an SBI remote fence.i, and starts a hart
        with SBI hart_start, so those calls bump the backend's code generation and every hart
        flushes when it sees a newer one; a hart parked in firmware (M-mode wfi) and woken by an
        IPI flushes too. Idle harts woken from S-mode wfi keep their code: flushing on every IPI
        halved SMP boot speed. The VMM calls this after writing code into a running guest.
        """
        with self.engine_lock:
            self._check_open()
            self._uc.ctl_flush_tb()
            self.translation_flushes += 1

    def _take_interrupt(self) -> None:
        """Enter the highest pending M-level interrupt if it is enabled (unicorn drops them);
        in M mode, answer a read of mip at the PC with them pending (see ``_emulate_mip_access``)."""
        m_pending = self._apply_lines()
        if not m_pending:
            return
        regs = self._regs
        priv = regs.priv
        mie, mstatus, mideleg = regs.read_csrs(_MIE, _MSTATUS, _MIDELEG)
        irq = highest(m_pending & mie)
        if irq is not None and interrupt_enabled(irq, priv=priv, mstatus=mstatus, mideleg=mideleg):
            enter_trap(regs, irq, interrupt=True, epc=regs.pc, tval=0, priv=priv)
            self._irqs.taken(irq)
            self.traps_entered += 1
            priv = PRIV_M
        if priv == PRIV_M:
            self._emulate_mip_access()

    def _emulate_mip_access(self) -> None:
        """Run the csr instruction on mip at the PC, if it is one that reads, with the M bits.

        Unicorn keeps MSIP, MTIP and MEIP out of its mip (software cannot write them, and
        nothing else sets them), so a read it executes misses them. Firmware waiting with
        interrupts masked executes wfi, which returns when an interrupt enabled in mie is
        pending whatever mstatus.MIE says, and then reads mip to see which (privileged spec
        3.3.3, "Wait for Interrupt"): OpenSBI 1.1's secondary harts wait for the cold-boot
        hart so, U-Boot's secondary harts for an IPI. Unicorn ends every slice at a wfi, so
        that read is the first instruction of the next slice, and is done here. The write
        part, if any, goes through unicorn, which keeps only the bits software may write.
        """
        regs = self._regs
        pc = regs.pc
        insn = self._fetch_insn(pc, PRIV_M)
        op = decode_csr(insn) if insn is not None else None
        if op is None or op.csr != CSR_MIP or not op.rd:
            return  # not a read of mip: unicorn runs it, the M bits do not matter to it
        native = regs.read_csr(_MIP)
        old = native | self._irqs.m_pending()
        if not op.is_read_only:
            operand = op.source if op.uses_immediate else self._regs.read(_X0 + op.source) if op.source else 0
            regs.write_csr(_MIP, op.new_value(native, operand))
        regs.write(_X0 + op.rd, old)
        regs.set_pc(pc + 4)

    def _apply_line_now(self, irq: int, level: bool) -> bool:
        """An S-level line changed on this hart's own thread mid-slice (an MMIO handler): apply it.

        Waiting for the slice to end would leave, say, SEIP set after the guest claimed the
        PLIC interrupt, and the guest would take it again and again until then.
        """
        if self._slice_thread != threading.get_ident():
            return False
        mip = self._regs.read_csr(_MIP)
        bit = 1 << irq
        self._regs.write_csr(_MIP, mip | bit if level else mip & ~bit)
        return True

    # -- synchronous exceptions (INTR hook, inside emu_start) ------------------------------------------

    def _on_exception(self, uc: Any, intno: int, _user_data: object) -> None:
        regs = self._regs
        pc, priv = regs.read_many(PC, PRIV)
        pc = (pc - 4) & _U64  # cpu-exec.c adds 4 before calling the hook, whatever the length
        priv &= 3
        cause, tval = intno, 0
        if intno == EXC_ILLEGAL_INSN:
            insn = self._fetch_insn(pc, priv)
            if insn is not None and self._emulate_time_read(insn):
                return  # the PC already points past the 4-byte csr instruction
            tval = insn or 0
        elif intno == EXC_ECALL_U:
            cause = EXC_ECALL_U + priv  # unicorn reports every ecall as cause 8: U=8, S=9, M=11
            if priv == PRIV_S and self._announces_new_code():
                self._shared.code_generation += 1
        elif intno in _DATA_FAULTS:
            cause, tval = self._data_fault(pc, priv, intno)
        elif intno in _FETCH_FAULTS:
            tval = self._fetch_fault_tval(pc, priv)
        elif intno == EXC_BREAKPOINT:
            tval = pc
        elif not 0 <= intno < 16:
            self._fail = f"unicorn reported exception {intno} at pc {pc:#x} (priv {priv})"
            uc.emu_stop()
            return
        enter_trap(regs, cause, interrupt=False, epc=pc, tval=tval, priv=priv)
        self.traps_entered += 1
        self._slice_traps += 1
        if self._slice_traps >= self._slice:
            # A trap vector the guest cannot fetch (an unmapped stvec) faults again before any
            # instruction runs, so the count never ends the slice: end it here, with the trap
            # entered, so run() returns and the VMM can still stop the VM.
            uc.emu_stop()

    def _emulate_time_read(self, insn: int) -> bool:
        """rdtime / csrr rd, time: unicorn has no time CSR, so answer with mtime here."""
        op = decode_csr(insn)
        if op is None or op.csr != 0xC01 or not op.is_read_only:
            return False
        if op.rd:
            self._regs.write(_X0 + op.rd, self._shared.mtime())
        self.time_reads += 1
        return True

    def _data_fault(self, pc: int, priv: int, cause: int) -> tuple[int, int]:
        """(cause, tval) of a load/store/AMO fault, from the decoded faulting instruction.

        Unicorn reports AMOs that fault on their read as load faults; the spec makes every
        SC/AMO fault a store/AMO fault (cause + 2).
        """
        insn = self._fetch_insn(pc, priv)
        decoded = decode_mem(insn) if insn is not None else None
        if decoded is None:
            return cause, 0
        if decoded.kind is AccessKind.AMO and cause in _LOAD_TO_STORE_CAUSE:
            cause = _LOAD_TO_STORE_CAUSE[cause]
        va = self._effective_address(decoded)
        if cause in (EXC_LOAD_PAGE_FAULT, EXC_STORE_PAGE_FAULT):
            satp, mstatus = self._regs.read_csrs(_SATP, _MSTATUS)
            memory = self._shared.stage2.memory
            access = _DATA_FAULTS[cause]
            va = faulting_address(memory, va, decoded.width, access, priv=priv, satp=satp, mstatus=mstatus)
        return cause, va

    def _fetch_fault_tval(self, pc: int, priv: int) -> int:
        """pc, or the start of the next page when only the second half of the instruction faults."""
        if (pc & 0xFFF) != 0xFFE or self._read_virt(pc, 2, Access.FETCH, priv) is None:
            return pc
        return pc + 2

    def _effective_address(self, decoded: MemAccess) -> int:
        base = self._regs.read(_X0 + decoded.base) if decoded.base else 0
        return (base + decoded.offset) & _U64

    # -- memory faults and errors (after emu_start raised) ----------------------------------------------

    def _on_bad_access(self, _uc: Any, access: int, addr: int, size: int, value: int, _user_data: object) -> bool:
        if self._mem_fault is None:
            self._mem_fault = _MemFault(access, addr, size, value)
        return False  # unicorn stops with the PC at the instruction; the trap is entered after

    def _on_stop_error(self, err: UcError) -> AxVCpuExitReason:
        regs = self._regs
        pc = regs.pc
        priv = regs.priv
        fault, self._mem_fault = self._mem_fault, None
        if err.errno in _MEMORY_ERRORS and fault is not None:
            return self._on_memory_fault(fault, pc, priv)
        if err.errno in (UC_ERR_INSN_INVALID, UC_ERR_EXCEPTION):
            insn = self._fetch_insn(pc, priv)
            if insn is not None and is_ebreak(insn):  # unicorn stops on ebreak instead of trapping
                enter_trap(regs, EXC_BREAKPOINT, interrupt=False, epc=pc, tval=pc, priv=priv)
                self.traps_entered += 1
                return Nothing()
        if self._fail is not None:
            return FailEntry(0, self._fail)
        return FailEntry(0, f"unicorn: {err} at pc {pc:#x} (priv {priv}, hart {self.hart})")

    def _on_memory_fault(self, fault: _MemFault, pc: int, priv: int) -> AxVCpuExitReason:
        if fault.access in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT):
            enter_trap(self._regs, EXC_INSN_ACCESS, interrupt=False, epc=pc, tval=pc, priv=priv)
            self.traps_entered += 1
            return Nothing()
        insn = self._fetch_insn(pc, priv)
        decoded = decode_mem(insn) if insn is not None else None
        unmapped = fault.access in (UC_MEM_READ_UNMAPPED, UC_MEM_WRITE_UNMAPPED)
        if unmapped and self._shared.mmio_exits and self._shared.mmio_handler is None:
            exit_reason = self._mmio_exit(fault, decoded, pc)
            if exit_reason is not None:
                return exit_reason
        store_like = fault.access in (UC_MEM_WRITE_UNMAPPED, UC_MEM_WRITE_PROT)
        if decoded is not None:
            store_like = decoded.kind.is_store_like
            tval = self._effective_address(decoded)
        else:
            tval = fault.addr
        cause = EXC_STORE_ACCESS if store_like else EXC_LOAD_ACCESS
        enter_trap(self._regs, cause, interrupt=False, epc=pc, tval=tval, priv=priv)
        self.traps_entered += 1
        return Nothing()

    def _mmio_exit(self, fault: _MemFault, decoded: MemAccess | None, pc: int) -> AxVCpuExitReason | None:
        width = _WIDTHS.get(fault.size)
        if decoded is None or width is None or decoded.kind is AccessKind.AMO:
            return None  # not a plain load or store: the guest gets an access fault instead
        addr = GuestPhysAddr(fault.addr)
        if decoded.kind is AccessKind.STORE:
            self._regs.set_pc(pc + decoded.length)
            return MmioWrite(addr, width, fault.value & width.mask)
        self._pending_read = _PendingRead(decoded, pc, fault.size)
        return MmioRead(addr, width, reg=decoded.reg, signed=decoded.signed)

    # -- guest memory by virtual address ------------------------------------------------------------------

    def _read_virt(self, va: int, size: int, access: Access, priv: int) -> bytes | None:
        """``size`` bytes at virtual ``va`` as the hart would see them, or None.

        Guest RAM is read through the VM's guest memory (``stage2.memory``). Translated
        instruction fetches go through the engine's own MMU (``uc_vmem_read``: 1 us, and by
        construction what the hart's TLB gave it); data reads and the fallback walk in Python.
        """
        va &= _U64
        memory = self._shared.stage2.memory
        if priv == PRIV_M and access is Access.FETCH:
            return read_phys(memory, va, size)  # M-mode fetches are not translated
        if access is Access.FETCH and self._regs.can_read_virtual:
            if (va & 0xFFF) + size <= 0x1000:
                return self._regs.read_virtual(va, size, UC_PROT_EXEC)
            first = 0x1000 - (va & 0xFFF)
            head = self._regs.read_virtual(va, first, UC_PROT_EXEC)
            tail = self._regs.read_virtual(va + first, size - first, UC_PROT_EXEC)
            return None if head is None or tail is None else head + tail
        satp, mstatus = self._regs.read_csrs(_SATP, _MSTATUS)
        out = b""
        while size > 0:
            n = min(size, 0x1000 - (va & 0xFFF))
            pa = translate(memory, va, access, priv=priv, satp=satp, mstatus=mstatus)
            chunk = None if pa is None else read_phys(memory, pa, n)
            if chunk is None:
                return None
            out += chunk
            va = (va + n) & _U64
            size -= n
        return out

    def _fetch_insn(self, pc: int, priv: int) -> int | None:
        """The instruction bits at ``pc`` (16 for a compressed one), or None if unreadable."""
        if (pc & 0xFFF) <= 0xFFC:  # both halves in one page: one read
            word = self._read_virt(pc, 4, Access.FETCH, priv)
            if word is not None:
                insn = int.from_bytes(word, "little")
                return insn if insn & 3 == 3 else insn & 0xFFFF
        low = self._read_virt(pc, 2, Access.FETCH, priv)
        if low is None:
            return None
        half = int.from_bytes(low, "little")
        if insn_length(half) == 2:
            return half
        high = self._read_virt(pc + 2, 2, Access.FETCH, priv)
        return None if high is None else half | int.from_bytes(high, "little") << 16

    # -- registers by name ------------------------------------------------------------------------------

    def _register_access(self, name: str, value: int | None) -> int:
        regs = self._regs
        if name == "pc":
            if value is not None:
                regs.set_pc(value)
            return regs.pc
        if name == "priv":
            if value is not None:
                regs.set_priv(value)
            return regs.priv
        regid = GPR_IDS.get(name) or FPR_IDS.get(name)
        if regid is not None:
            if value is not None and regid != _X0:  # x0 stays zero
                regs.write(regid, value)
            return regs.read(regid) if regid != _X0 else 0
        regid = CSR_IDS.get(name)
        if regid is None:
            raise KeyError(f"riscv64 soft vCPU has no register {name!r}")
        if value is not None:
            if name == "mhartid":
                set_mhartid(self._uc, regs, value)
            else:
                regs.write_csr(regid, value)
        return regs.read_csr(regid)

    def __repr__(self) -> str:
        return f"RiscvSoftVCpu(hart={self.hart})"
