"""``RiscvSoftVCpu``: one riscv64 hart on its own unicorn engine.

This module drives the engine: slices, the glue that enters traps unicorn does not enter
itself, register access. What a fault means is decided elsewhere, by pure functions
(``riscv_fault``: trap cause and tval, rdtime, MMIO accesses; ``riscv_mmu``: the page walk);
guest memory as the hart sees it is read by ``HartMemory`` (``riscv_vmem``), registers by
name by ``RegFile``; what the harts of a VM share comes in a ``HartContext``; which ecalls make every hart drop its
translated code is the ecall observer's call (the machine installs one that knows SBI).

Theory of operation. ``run()`` is one slice: apply the hart's interrupt lines (and drop the
translations of pages written behind the engine's back), enter a pending M-level interrupt by
hand if it is enabled, then run the engine. Nothing stops unicorn from another thread (that
corrupted one boot in three). Two engines bound a slice:

- C (``fast_slice``, the default where it builds): ``emu_start`` with no count; a C block hook
  ends the slice before a block when another thread raised the hart's event flag (a line, a
  kick, an IPI, a stage-2 change, code to invalidate), when mtime reaches mtimecmp, or after a
  bound of blocks; a C INTR hook answers rdtime and enters ecall traps itself;
- Python (the reference): ``emu_start(pc, count=slice)``, whose per-instruction count hook
  costs about a fifth of the engine's speed, and a Python INTR hook for every exception.

On the C engine unmapped/protection hooks cover only addresses outside RAM and device windows
(recomputed with every mapping change): a hook over a RAM page sends each store to it down
unicorn's slow path; the C engine flushes the TLB after each new translation instead, so a
store through another mapping of a code page still takes that path and drops the code.
The slice ends in one of four ways, each decoded here:

- the count or the block bound ran out, or an event or the timer ended it: ``Nothing()``, so
  the VM loop can look at stop requests;
- the guest executed ``wfi`` (unicorn returns with the PC after it): ``Halt()`` unless an
  interrupt is pending and enabled in mie. Unicorn's mip never holds the M-level bits, so a
  csr instruction on mip at the start of a slice in M mode is run here, with them: every wfi
  ends a slice, so the read that follows a wfi (how firmware with interrupts masked looks for
  the IPI that woke it) always sees them;
- a synchronous exception: unicorn calls the INTR hook instead of trapping (with the PC
  already advanced by 4 and every ecall as cause 8). The hook (in C, or the Python one the C
  hook hands the rest to) emulates reads of the ``time`` CSR in place (rdtime is the most
  frequent trap of a Linux boot), tells the ecall observer of an ecall it watches, and enters
  every other trap by hand with the right cause and tval, without leaving ``emu_start``;
- an access to an address with neither RAM nor MMIO (unicorn stops with the PC at the
  instruction): a load/store/fetch access fault in the guest, or, with ``mmio_exits``, an
  ``MmioRead``/``MmioWrite`` exit answered with ``complete_read``.

MMIO windows registered with a handler are ``mmio_map``-ed and served inline, on this thread,
by calling the handler; they never leave ``run()``. ``ebreak`` makes unicorn stop with an
error; it becomes a breakpoint trap. Anything else unicorn reports is ``FailEntry``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
    UC_MEM_READ_PROT,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_RISCV64,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn import riscv_const as rc

from axaddrspace import PAGE_SIZE, GuestPhysAddr, Stage2Mapper

from ...arch import ArchVCpu
from ...errors import PendingReadError
from ...exits import AxVCpuExitReason, FailEntry, Halt, Hypercall, MmioRead, MmioWrite, Nothing
from ...riscv_sbi import EID_HVC
from . import code_buffer, riscv_state
from .engine_ranges import CodeRanges, hook_gaps, pages_within
from .fast_slice import WINDOW_TIMER, WINDOW_UART, FastClock, FastHart
from .hart_context import NO_TURNS, HartContext
from .riscv_decode import WFI, is_ebreak
from .riscv_fault import (
    DATA_FAULTS,
    FETCH_FAULTS,
    WIDTHS,
    MmioAccess,
    TimeRead,
    Trap,
    bad_access,
    data_fault,
    ecall_trap,
    fetch_fault,
    illegal_instruction,
    loaded_value,
    mip_read,
    reads_mip,
)
from .riscv_irq import IRQ_MSIP, MIP_BITS, MTIMECMP_RESET, HartInterrupts, highest
from .riscv_mmu import Access
from .riscv_priv import EXC_BREAKPOINT, EXC_ECALL_U, EXC_ILLEGAL_INSN
from .riscv_regs import CSR_IDS, PC, PRIV, PRIV_M, PRIV_S, PRIV_U, RegFile, set_mhartid
from .riscv_trap import enter_trap, interrupt_enabled
from .riscv_vmem import HartMemory

_U64 = (1 << 64) - 1
_UNTIL = _U64  # an odd address is never a PC: slices end by count, wfi or error only
_WFI_BYTES = WFI.to_bytes(4, "little")
_X0 = rc.UC_RISCV_REG_X0
_A6, _A7 = 16, 17
_HYPERCALL_ARGS = range(10, 16)  # a0..a5
HYPERCALL_ECALLS = ((PRIV_S, EID_HVC, None), (PRIV_U, EID_HVC, None))
"""The ecalls the C hook hands to Python as AxVisor hypercalls (priv, a7, a6 or None)."""
_MIP, _MIE, _MSTATUS, _MIDELEG, _SATP = (CSR_IDS[n] for n in ("mip", "mie", "mstatus", "mideleg", "satp"))
_ALL_PERMS = UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC
_FAULT_HOOKS = (
    UC_HOOK_MEM_READ_UNMAPPED
    | UC_HOOK_MEM_WRITE_UNMAPPED
    | UC_HOOK_MEM_FETCH_UNMAPPED
    | UC_HOOK_MEM_READ_PROT
    | UC_HOOK_MEM_WRITE_PROT
    | UC_HOOK_MEM_FETCH_PROT
)
TCG_BUFFER_BYTES = 64 << 20
"""unicorn's translated-code buffer per engine (default 1 GiB, resident as it fills): a Linux
boot translates ~140k blocks; past the buffer unicorn flushes and retranslates."""
_MEMORY_ERRORS = {
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_PROT,
    UC_ERR_WRITE_PROT,
    UC_ERR_FETCH_PROT,
}
_BAD_ACCESSES = {  # what unicorn's unmapped/protection hook reports: (the access, whether unmapped)
    UC_MEM_READ_UNMAPPED: (Access.LOAD, True),
    UC_MEM_WRITE_UNMAPPED: (Access.STORE, True),
    UC_MEM_FETCH_UNMAPPED: (Access.FETCH, True),
    UC_MEM_READ_PROT: (Access.LOAD, False),
    UC_MEM_WRITE_PROT: (Access.STORE, False),
    UC_MEM_FETCH_PROT: (Access.FETCH, False),
}


@dataclass(frozen=True, slots=True)
class _MemFault:
    """What unicorn's unmapped/protection hook saw: the physical address and the access."""

    access: int
    addr: int
    size: int
    value: int


@dataclass(frozen=True, slots=True)
class _PendingRead:
    access: MmioAccess
    pc: int


class RiscvSoftVCpu(ArchVCpu):
    """A riscv64 hart (rv64imafdc + S and U modes, Sv39/Sv48) on a unicorn engine of its own."""

    def __init__(
        self,
        context: HartContext,
        hart: int,
        irqs: HartInterrupts,
        slice_instructions: int,
        *,
        fast_clock: FastClock | None = None,
        slice_blocks: int | None = None,
    ) -> None:
        """``fast_clock``: run on the C engine (``fast_slice``), reading that clock; None: the
        pure-Python engine. ``slice_blocks``: the C engine's bound per slice, in blocks."""
        self._context = context  # what the harts of the VM share; not the backend (no import cycle)
        self.hart = hart
        self._irqs = irqs
        self._slice = slice_instructions
        self._slice_blocks = slice_blocks or slice_instructions
        # mypy reads unicorn.Uc as the Python 2 binding's (no cpu argument): unicorn/unicorn.py picks the
        # binding by sys.version_info.major, which mypy does not evaluate. The Python 3 binding takes cpu.
        uc: Any = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64, rc.UC_CPU_RISCV64_SIFIVE_U54)  # type: ignore[call-arg]
        self._uc = uc
        uc.ctl_set_tcg_buffer_size(TCG_BUFFER_BYTES)  # only before the engine initialises
        self._idle_code = code_buffer.IdleRelease(code_buffer.locate(uc))  # initialises the engine
        self._regs = RegFile(self._uc)
        self._memory = HartMemory(self._regs, context)
        self.engine_lock = threading.RLock()
        self._slice_thread: int | None = None
        self._mem_fault: _MemFault | None = None
        self._fail: str | None = None
        self._slice_traps = 0  # traps entered in this slice: a fetch fault is not counted as an instruction
        self._pending_read: _PendingRead | None = None
        self._hypercall: Hypercall | None = None
        self._mmio_windows: list[tuple[int, int]] = []
        self._closed = False
        self._halted = False
        self._parked_in_firmware = False  # the wfi that halted the hart ran in M mode
        self._code_generation = context.code_generation  # the last code change this engine has seen
        self._traps_entered = 0
        self._time_reads = 0
        self.translation_flushes = 0
        self.code_invalidations = 0  # pages whose translations invalidate_code dropped
        self._ram: dict[int, tuple[int, int]] = {}  # gpa -> (size, unicorn perms) mapped in this engine
        self._fault_hooks: list[int] = []
        self._code_dirty = CodeRanges()
        self._fast: FastHart | None = None
        if fast_clock is None:
            self._uc.hook_add(UC_HOOK_INTR, self._on_exception)
        else:
            self._fast = FastHart(fast_clock, self._uc, self._on_exception_c)
            self._fast.set_mtimecmp(irqs.mtimecmp)
            irqs.signal = self._fast
        self._hook_faults()
        set_mhartid(self._uc, self._regs, hart)
        irqs.on_own_thread = self._apply_line_now

    @property
    def engine(self) -> str:
        """``"c"``: slices ended by the C block hook, rdtime and ecall in C; ``"python"``: counted slices."""
        return "python" if self._fast is None else "c"

    @property
    def traps_entered(self) -> int:
        """Traps entered by hand (unicorn delivers none of these): in Python and in C."""
        fast = self._fast
        return self._traps_entered + (fast.timer_entries + fast.ecalls if fast is not None else 0)

    @property
    def time_reads(self) -> int:
        """rdtime instructions answered (in C and in Python)."""
        return self._time_reads + (self._fast.time_reads if self._fast is not None else 0)

    @property
    def uart_accesses(self) -> int:
        """UART LSR reads and THR writes taken in C (``SoftRiscvBackend.serve_uart_tx``)."""
        return 0 if self._fast is None else self._fast.uart_accesses

    @property
    def mtimecmp_writes(self) -> int:
        """Guest writes to this hart's mtimecmp taken in C (``SoftRiscvBackend.serve_mtimecmp_writes``)."""
        return 0 if self._fast is None else self._fast.mtimecmp_writes

    def end_slice(self) -> None:
        """From any thread: the running slice of the C engine ends at its next block."""
        if self._fast is not None:
            self._fast.raise_event()

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
        with self._context.turns or NO_TURNS, self.engine_lock:
            self._check_open()
            return self._run_slice()

    def complete_read(self, value: int) -> None:
        pending = self._pending_read
        if pending is None:
            raise PendingReadError(f"hart {self.hart}: no MMIO read is waiting for a value")
        insn = pending.access.insn
        value = loaded_value(insn, pending.access.width.size, value)
        with self.engine_lock:
            self._check_open()
            if insn.fp:
                self._regs.write(rc.UC_RISCV_REG_F0 + insn.reg, value)
            elif insn.reg:
                self._regs.write(_X0 + insn.reg, value)
            self._regs.set_pc(pending.pc + insn.length)
        self._pending_read = None

    def get_register(self, name: str) -> int:
        with self.engine_lock:
            self._check_open()
            return self._regs.by_name(name)

    def set_register(self, name: str, value: int) -> None:
        with self.engine_lock:
            self._check_open()
            self._regs.by_name(name, value)

    def inject_interrupt(self, vector: int) -> None:
        """Raise MIP bit ``vector`` once (a pulse): S bits until the guest clears them, M until taken."""
        if vector not in MIP_BITS:
            raise ValueError(f"interrupt {vector} is not a MIP bit this hart has ({sorted(MIP_BITS)})")
        self._irqs.pulse_line(vector)

    def wait_for_interrupt(self, timeout: float) -> bool:
        """Block until an interrupt enabled in mie is pending (lines, timer), a kick (True), or
        ``timeout`` (False)."""
        start = time.monotonic()
        with self.engine_lock:
            self._check_open()
            mie, mip = self._regs.read_csrs(_MIE, _MIP)
        woke = self._irqs.wait(timeout, mie, mip)
        if self._idle_code.waited(start, time.monotonic()):  # a while idle: give its code back
            with self.engine_lock:
                if not self._closed:  # closed meanwhile: its buffer is gone, nothing to give back
                    self.flush_translations()
                    self._idle_code.release()
        return woke

    def kick(self) -> None:
        """Make ``wait_for_interrupt`` return now, from any thread."""
        self._irqs.kick()

    def close(self) -> None:
        """Free the engine now (its translation cache and maps); the vCPU is unusable after."""
        self._context.stage2.detach(self)  # before the engine lock: map() takes them the other way round
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
        self.end_slice()  # the engine lock is held for a whole slice
        with self.engine_lock:
            if not self._closed:
                self._uc.mem_map_ptr(gpa, size, perms, host_addr)
                self._ram[gpa] = (size, perms)
                self._hook_faults()

    def unmap_ram(self, gpa: int, size: int) -> None:
        self.end_slice()
        with self.engine_lock:
            if not self._closed:
                self._uc.mem_unmap(gpa, size)
                self._ram.pop(gpa, None)
                self._hook_faults()

    def _hook_faults(self) -> None:
        """Hook unmapped and protection faults only outside RAM and device windows.

        Unicorn sends every store to a page some memory hook covers down its slow path (the
        first store to a page never marks its TLB entry dirty: cputlb.c, notdirty_write), so
        hooks over all addresses cost a fifth of a Linux boot. Faults inside RAM mapped with
        every permission cannot happen; RAM with fewer permissions stays hooked. The fast
        stores this allows need the C engine's TLB flush after each new translation (see
        ``fast_engine.c``) to notice code stored through another mapping; the Python engine,
        the reference, keeps one hook over every address and every store on the slow path.
        """
        for handle in self._fault_hooks:
            self._uc.hook_del(handle)
        covered = [(gpa, size) for gpa, (size, perms) in self._ram.items() if perms == _ALL_PERMS]
        spans = [(1, 0)] if self._fast is None else hook_gaps(covered + self._mmio_windows)  # (1, 0): all
        self._fault_hooks = [
            self._uc.hook_add(_FAULT_HOOKS, self._on_bad_access, None, begin, end) for begin, end in spans
        ]

    def invalidate_code(self, gpa: int, size: int) -> None:
        """From any thread: guest RAM ``[gpa, +size)`` was written behind the engine's back (device
        DMA, another engine); its translations are dropped on this hart's thread before its next
        slice, which this ends."""
        self._code_dirty.add(gpa, size)
        self.end_slice()

    def invalidate_code_many(self, ranges: Sequence[tuple[int, int]]) -> None:
        """``invalidate_code`` for each range of one block request: one lock, one slice end."""
        self._code_dirty.add_many(ranges)
        self.end_slice()

    def set_mmio_windows(self, windows: list[tuple[int, int]]) -> None:
        """Map page-aligned ``(start, size)`` windows served inline by the backend's handler."""
        self.end_slice()
        with self.engine_lock:
            for start, size in self._mmio_windows:
                self._uc.mem_unmap(start, size)
                if self._fast is not None:
                    self._fast.unmapped_window(start)
            self._mmio_windows = []
            try:
                for start, size in windows:
                    try:
                        self._map_window(start, size)
                    except UcError as err:
                        raise ValueError(
                            f"MMIO window [{start:#x}, +{size:#x}) overlaps guest RAM or another window ({err})"
                        ) from err
                    self._mmio_windows.append((start, size))
            finally:
                self._hook_faults()

    def _map_window(self, start: int, size: int) -> None:
        """A window the MMIO handler serves. On the C engine, registers the guest hits
        thousands of times per boot are served in C where the window holds them: this hart's
        mtimecmp (``HartContext.mtimecmp_base``; ``_replay_mtimecmp`` passes the writes on) and
        the polled transmit side of the UART (``HartContext.polled_uart``; ``_sync_uart``)."""
        fast, context = self._fast, self._context
        base, uart = context.mtimecmp_base, context.polled_uart
        compare = None if base is None else base + 8 * self.hart
        if fast is not None and compare is not None and start <= compare <= start + size - 8:
            handlers = self._window_handlers(start, self._replay_mtimecmp)
            fast.map_window(WINDOW_TIMER, start, size, compare - start, *handlers)
        elif fast is not None and uart is not None and start <= uart[0] <= start + size - 8:
            fast.set_uart_sink(uart[1].transmit)
            fast.map_window(WINDOW_UART, start, size, uart[0] - start, *self._window_handlers(start, self._sync_uart))
        else:
            self._uc.mmio_map(start, size, self._mmio_read, start, self._mmio_write, start)

    def _window_handlers(
        self, start: int, sync: Callable[[], None]
    ) -> tuple[Callable[[int, int], int], Callable[[int, int, int], None]]:
        """The Python side of a window served partly in C: ``sync`` brings the device up to
        date before the access and again after it."""

        def read(offset: int, size: int) -> int:
            sync()
            value = self._mmio_read(None, offset, size, start)
            sync()
            return value

        def write(offset: int, size: int, value: int) -> None:
            sync()
            self._mmio_write(None, offset, size, value, start)
            sync()

        return read, write

    def _sync_uart(self) -> None:
        """Hand the UART the bytes the guest wrote to THR in C, then let C serve LSR and THR
        only if the UART says polling may bypass it now (``polled_tx_lsr``). Called at the
        start of each slice and around every other access to the UART's window (the end of a
        slice only hands the bytes over); input arriving meanwhile shows in LSR from the next
        call on, or at the next LSR read C sends to Python."""
        fast, uart = self._fast, self._context.polled_uart
        if fast is not None and uart is not None:
            fast.flush_uart()
            fast.allow_uart(uart[1].polled_tx_lsr())

    def _replay_mtimecmp(self) -> None:
        """Write the mtimecmp value the guest wrote in C to the device (one 8-byte write), so
        the CLINT reads back, and snapshots, what the hart runs with. Called at the end of each
        slice (before the turn passes to another hart), before any other access to the window
        and before a trap the Python handler takes."""
        fast, base, handler = self._fast, self._context.mtimecmp_base, self._context.mmio_handler
        value = None if fast is None else fast.take_posted_mtimecmp()
        if value is not None and base is not None and handler is not None:
            handler.write(base + 8 * self.hart, WIDTHS[8], value)

    def _mmio_read(self, _uc: Any, offset: int, size: int, base: int) -> int:
        width = WIDTHS.get(size)
        handler = self._context.mmio_handler
        if width is None or handler is None:
            return (1 << (8 * size)) - 1
        return handler.read(base + offset, width) & width.mask

    def _mmio_write(self, _uc: Any, offset: int, size: int, value: int, base: int) -> None:
        width = WIDTHS.get(size)
        handler = self._context.mmio_handler
        if width is not None and handler is not None:
            handler.write(base + offset, width, value & width.mask)

    # -- one slice --------------------------------------------------------------------------------------

    def _run_slice(self) -> AxVCpuExitReason:
        regs = self._regs
        fast = self._fast
        if fast is not None:
            fast.clear_event()  # before the lines and requests are taken: later ones end the slice
            fast.watch_ecalls(self._context.ecall_observer, HYPERCALL_ECALLS)
        self._take_interrupt()
        self._halted = False
        pc = regs.pc
        self._mem_fault = None
        self._fail = None
        self._slice_traps = 0
        self._slice_thread = threading.get_ident()
        try:
            if fast is None:
                self._uc.emu_start(pc, _UNTIL, count=self._slice)
            else:
                self._sync_uart()
                fast.begin(self._slice_blocks, self._irqs.mtimecmp != MTIMECMP_RESET)
                fast.run(pc, _UNTIL)
        except UcError as err:
            self._raise_hook_error()
            return self._on_stop_error(err)
        finally:
            self._slice_thread = None
            self._replay_mtimecmp()
            if fast is not None:
                fast.flush_uart()
        self._raise_hook_error()
        if self._fail is not None:
            return FailEntry(0, self._fail)
        if self._hypercall is not None:
            call, self._hypercall = self._hypercall, None
            return call
        if fast is not None and fast.stop_reason:
            return Nothing()  # ended before a block by the C hook: not at a wfi
        return self._after_slice()

    def _raise_hook_error(self) -> None:
        """An exception the Python handler raised under the C hook, re-raised on this side of C."""
        fast = self._fast
        if fast is not None and fast.hook_error is not None:
            error, fast.hook_error = fast.hook_error, None
            raise error

    def _on_exception_c(self, intno: int) -> None:
        """What the C INTR hook leaves: the Python handler, as unicorn would have called it."""
        self._replay_mtimecmp()
        self._on_exception(self._uc, intno, None)

    def _after_slice(self) -> AxVCpuExitReason:
        """Tell a wfi from a spent count: the instruction before the PC is a wfi."""
        regs = self._regs
        pc = regs.pc
        priv = regs.priv
        if self._memory.read(pc - 4, 4, Access.FETCH, priv) != _WFI_BYTES:
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
        generation = self._context.code_generation
        woken_in_firmware = self._halted and self._parked_in_firmware and rose & (1 << IRQ_MSIP)
        if generation != self._code_generation or woken_in_firmware:
            self._code_generation = generation
            self._code_dirty.take()
            self.flush_translations()
        elif self._code_dirty:
            self._invalidate_dirty_code()
        return m_pending

    def _invalidate_dirty_code(self) -> None:
        """Drop the translations of the pages ``invalidate_code`` recorded, on this thread.

        unicorn's ``uc_ctl_remove_cache`` translates the range's start as an instruction fetch
        through the hart's current MMU (translate-all.c, uc_invalidate_tb) and then invalidates
        physically from there; in M mode that translation is the identity, so each page is
        invalidated with the host at PRIV=M, one page at a time (RAM regions need not be
        contiguous in unicorn's RAM space).
        """
        pages, overflow = self._code_dirty.take()
        if overflow:
            self.flush_translations()
            return
        in_ram = pages_within(pages, [(gpa, size) for gpa, (size, _) in self._ram.items()])
        self.code_invalidations += len(in_ram)
        if self._fast is not None:
            self._fast.invalidate_pages(in_ram)
            return
        regs = self._regs
        priv = regs.priv
        regs.set_priv(PRIV_M)
        try:
            for page in in_ram:
                self._uc.ctl_remove_cache(page, page + PAGE_SIZE)
        finally:
            regs.set_priv(priv)

    def flush_translations(self) -> None:
        """Drop the engine's translated code, so the hart next runs what RAM holds now.

        Each engine notices code changes only when it wrote them itself; code another hart or
        the VMM wrote over pages this engine already ran stays stale until flushed. Guests say
        when that happens, in their firmware's ABI: the ecall observer the machine installs
        recognises such a call (Linux follows new code with an SBI remote fence.i, and starts a
        hart with SBI hart_start): a remote fence.i bumps the context's code generation and every
        hart flushes when it sees a newer one, a hart_start drops only the started hart's code
        (the backend's ``drop_code``); a hart parked in firmware (M-mode wfi) and woken
        by an IPI flushes too. Idle harts woken from S-mode wfi keep their code: flushing on
        every IPI halved SMP boot speed. The VMM calls this after writing code into a running
        guest.
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
            self._traps_entered += 1
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
        op = reads_mip(self._memory.fetch_insn(pc, PRIV_M))
        if op is None:
            return  # not a read of mip: unicorn runs it, the M bits do not matter to it
        done = mip_read(op, regs.read_csr(_MIP), self._irqs.m_pending(), self._gpr)
        if done.written is not None:
            regs.write_csr(_MIP, done.written)
        regs.write(_X0 + done.rd, done.value)
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
        if intno == EXC_ILLEGAL_INSN:
            outcome = illegal_instruction(self._memory.fetch_insn(pc, priv))
            if isinstance(outcome, TimeRead):  # the PC already points past the 4-byte csr instruction
                if outcome.rd:
                    regs.write(_X0 + outcome.rd, self._context.mtime())
                self._time_reads += 1
                return
            trap = outcome
        elif intno == EXC_ECALL_U:
            if priv != PRIV_M and self._gpr(_A7) == EID_HVC:  # the PC is already past the ecall
                self._hypercall = Hypercall(self._gpr(_A6), tuple(self._gpr(n) for n in _HYPERCALL_ARGS))
                uc.emu_stop()
                return
            trap = ecall_trap(priv)
            observer = self._context.ecall_observer
            if observer is not None and observer.on_ecall(self.hart, priv, self._gpr):
                self._context.code_generation += 1
        elif intno in DATA_FAULTS:
            satp, mstatus = regs.read_csrs(_SATP, _MSTATUS)
            insn = self._memory.fetch_insn(pc, priv)
            memory = self._context.stage2.memory
            trap = data_fault(intno, insn, self._gpr, priv=priv, satp=satp, mstatus=mstatus, memory=memory)
        elif intno in FETCH_FAULTS:
            trap = fetch_fault(intno, pc, self._memory.fetchable(priv))
        elif intno == EXC_BREAKPOINT:
            trap = Trap(intno, pc)
        elif 0 <= intno < 16:
            trap = Trap(intno, 0)
        else:
            self._fail = f"unicorn reported exception {intno} at pc {pc:#x} (priv {priv})"
            uc.emu_stop()
            return
        enter_trap(regs, trap.cause, interrupt=False, epc=pc, tval=trap.tval, priv=priv)
        self._traps_entered += 1
        self._slice_traps += 1
        if self._slice_traps >= self._slice:
            # A trap vector the guest cannot fetch (an unmapped stvec) faults again before any
            # instruction runs, so the count never ends the slice: end it here, with the trap
            # entered, so run() returns and the VMM can still stop the VM.
            uc.emu_stop()

    def _gpr(self, n: int) -> int:
        """x register ``n`` now (the ``GprReader`` the fault decoders and the ecall observer get)."""
        return self._regs.read(_X0 + n) if n else 0

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
            insn = self._memory.fetch_insn(pc, priv)
            if insn is not None and is_ebreak(insn):  # unicorn stops on ebreak instead of trapping
                enter_trap(regs, EXC_BREAKPOINT, interrupt=False, epc=pc, tval=pc, priv=priv)
                self._traps_entered += 1
                return Nothing()
        if self._fail is not None:
            return FailEntry(0, self._fail)
        return FailEntry(0, f"unicorn: {err} at pc {pc:#x} (priv {priv}, hart {self.hart})")

    def _on_memory_fault(self, fault: _MemFault, pc: int, priv: int) -> AxVCpuExitReason:
        access, unmapped = _BAD_ACCESSES.get(fault.access, (Access.LOAD, False))
        insn = None if access is Access.FETCH else self._memory.fetch_insn(pc, priv)
        context = self._context
        outcome = bad_access(
            access,
            unmapped=unmapped,
            addr=fault.addr,
            size=fault.size,
            value=fault.value,
            pc=pc,
            insn=insn,
            gpr=self._gpr,
            mmio_exits=context.mmio_exits and context.mmio_handler is None,
        )
        if isinstance(outcome, MmioAccess):
            return self._mmio_exit(outcome, pc)
        enter_trap(self._regs, outcome.cause, interrupt=False, epc=pc, tval=outcome.tval, priv=priv)
        self._traps_entered += 1
        return Nothing()

    def _mmio_exit(self, access: MmioAccess, pc: int) -> AxVCpuExitReason:
        addr = GuestPhysAddr(access.addr)
        if access.value is not None:  # a store: done once the exit is reported
            self._regs.set_pc(pc + access.insn.length)
            return MmioWrite(addr, access.width, access.value)
        self._pending_read = _PendingRead(access, pc)
        return MmioRead(addr, access.width, reg=access.insn.reg, signed=access.insn.signed)

    # -- snapshots (riscv_state) ------------------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        """This hart's full state as plain data (``riscv_state.capture``); call it between runs."""
        with self.engine_lock:
            self._check_open()
            return riscv_state.capture(
                self._regs, self._irqs, halted=self._halted, parked_in_firmware=self._parked_in_firmware
            )

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take a saved state (``riscv_state.restore``; HartStateError naming a bad field)."""
        with self.engine_lock:
            self._check_open()
            self._halted, self._parked_in_firmware = riscv_state.restore(self._regs, self._irqs, state, self.hart)
            self._pending_read = None
            self._uc.ctl_flush_tb()

    def __repr__(self) -> str:
        return f"RiscvSoftVCpu(hart={self.hart})"
