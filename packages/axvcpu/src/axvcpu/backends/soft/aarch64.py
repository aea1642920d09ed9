"""``Aarch64SoftVCpu``: one arm64 vCPU at EL1 on its own unicorn engine, on the VM's shared RAM.

How a machine drives it (the arm virt board in axvm):

- Create it through ``SoftAarch64Backend.create_vcpu(i)``; its MPIDR_EL1 reads ``mpidr_of(i)``
  (Aff0 = i % 8, Aff1 = i // 8, as QEMU's virt board numbers CPUs): use the same values in the
  device tree's ``cpu@`` reg and for PSCI CPU_ON targets. ``setup(entry)`` puts it at EL1h with
  DAIF masked, the MMU off; Linux's boot protocol wants x0 = the DTB address
  (``set_register("x0", dtb)``).
- IRQ: ``backend.irq_input(i)`` is the vCPU's IRQ line; the GIC's CPU interface output drives it
  (``set_level``) from any thread. Between slices the vCPU enters the IRQ (VBAR_EL1 + 0x80 +
  the source block, ELR/SPSR_EL1 saved, DAIF masked) when PSTATE.I is clear.
- Timers: the virtual (PPI 27) and physical (PPI 30) timer outputs are reported through the
  backend's timer sink, ``set_timer_sink(sink)``: ``sink(vcpu_id, ppi, level)`` on the vCPU's
  thread, whenever a level changes (between slices and when the guest writes a timer control
  register). The machine raises the PPI at the GIC, which drives the IRQ line back.
- WFI returns ``Halt()``; ``wait_for_interrupt(timeout)`` sleeps until the IRQ line is high,
  the next timer deadline, a ``kick()``, or the timeout.
- HVC and SMC (PSCI and any other SMCCC call) return ``Hypercall(nr=w0, args=(x1..x6))`` with
  the PC past the instruction; ``last_call`` says which conduit (``"hvc"``/``"smc"``) and its
  immediate. The machine answers by writing x0 (``set_register("x0", result)``) and runs on;
  for CPU_ON it starts the target vCPU itself (setup, x0 = context id), for SYSTEM_OFF it stops.
  The CPU model knows no PSCI: the machine's PSCI function decides.
- MMIO: windows given to ``backend.set_mmio_handler`` are served inline; with ``mmio_exits``
  and no handler, a single-register load/store to an address with no RAM leaves ``run()`` as
  ``MmioRead``/``MmioWrite`` (answered by ``complete_read``); otherwise it is a synchronous
  external abort in the guest (ESR with the instruction syndrome, FAR).

Theory of operation. Unicorn's arm64 CPU (Cortex-A57, EL2 and EL3 implemented) starts at EL1h.
The vCPU makes EL1 non-secure with EL2 in AArch64 (SCR_EL3.NS, .HCE, .RW; HCR_EL2.RW) so that
HVC and SMC reach the exception hook instead of being undefined, EL1 reads VMPIDR_EL2 as its
MPIDR, and CNTHCTL_EL2 lets EL1 use the physical counter and timer. ``run()`` is one
count-bounded slice, ``emu_start(pc, count=slice)``. Unicorn enters no exception itself: every
synchronous exception comes to the INTR hook (SVC/HVC/SMC with the PC past the instruction,
undefined instructions, BRK and aborts with the PC at it), and is entered here with an ESR built
by ``aarch64_exceptions`` from the instruction (``aarch64_decode``) and, for translation faults,
a walk of the guest's tables (``aarch64_mmu``). Accesses to addresses with neither RAM nor MMIO
stop unicorn with the PC at the instruction. IRQs are entered between slices; one that waits
while PSTATE.I is set shortens the slices, and after a wfi it woke the vCPU single-steps to the
guest's unmask (``_step_to_unmask``). An MSR hook, behind a C filter that lets only the timer
registers reach Python (``aarch64_msr_filter``), keeps the timer controls unicorn drops.
Hooks unicorn calls often (exceptions, device windows, MSR) are raw ctypes callbacks, not the
binding's wrappers, which cost about 10 us more a call. ``save_state``/``load_state`` carry the
vCPU's full state for a VM snapshot (``aarch64_state`` says what is and is not saved).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unicorn import (
    UC_ARCH_ARM64,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_PROT,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ_PROT,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE_PROT,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MODE_ARM,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    Uc,
    UcError,
)
from unicorn import arm64_const as ac

from axaddrspace import AccessWidth, GuestPhysAddr, Stage2Mapper

from ...arch import ArchVCpu
from ...errors import PendingReadError
from ...exits import AxVCpuExitReason, FailEntry, Halt, Hypercall, MmioRead, MmioWrite, Nothing
from . import aarch64_regs as r
from . import aarch64_state
from .aarch64_decode import MemAccess, decode_access, is_wfi, loaded_value
from .aarch64_exceptions import (
    EC_BRK64,
    EC_SVC64,
    EC_UNKNOWN,
    FSC_ALIGNMENT,
    FSC_EXTERNAL,
    PSTATE_EL1H,
    PSTATE_I,
    VECTOR_IRQ,
    VECTOR_SYNC,
    current_el,
    data_abort_esr,
    entry_pstate,
    esr,
    immediate_esr,
    instruction_abort_esr,
    switches_stack,
    vector_offset,
)
from .aarch64_irq import IrqInput
from .aarch64_mmu import Walk, fault_status
from .aarch64_msr_filter import SYS_HOOK
from .aarch64_msr_filter import load as load_msr_filter
from .aarch64_timer import PHYS, VIRT, GenericTimers, GuestCounter
from .hart_context import NO_TURNS, HartContext

try:
    from unicorn.unicorn_py3.unicorn import uclib as _uclib
except ImportError:  # pragma: no cover - a different binding layout
    _uclib = None  # type: ignore[assignment]

__all__ = ["Aarch64SoftVCpu", "hook_gaps", "mpidr_of"]

_U64 = (1 << 64) - 1
_UNTIL = _U64  # never a PC: slices end by count, wfi, a stop or an error
_DAIF_RESET = 0x3C0
FSC_TRANSLATION_L3 = 0x07
WATCH_INSTRUCTIONS = 2048
"""Instructions stepped, looking for an unmask, after a wfi woken by a masked IRQ (``_step_to_unmask``)."""
MASKED_SLICE_INSTRUCTIONS = 10_000
"""The slice bound while an IRQ waits masked: the unmask is seen within this many instructions."""

# qemu/target/arm/cpu.h exception numbers, as the INTR hook reports them
EXCP_UDEF = 1
EXCP_SWI = 2
EXCP_PREFETCH_ABORT = 3
EXCP_DATA_ABORT = 4
EXCP_BKPT = 7
EXCP_HVC = 11
EXCP_SMC = 13

_SCR_NS, _SCR_HCE, _SCR_RW = 1, 1 << 8, 1 << 10
_HCR_RW = 1 << 31
_CNTHCTL_EL1PCTEN_EL1PCEN = 3

_TIMER_CTL = {r.CNTV_CTL_EL0: VIRT, r.CNTP_CTL_EL0: PHYS}
_TIMER_CVAL = {r.CNTV_CVAL_EL0: VIRT, r.CNTP_CVAL_EL0: PHYS}
_TIMER_TVAL = {(3, 3, 14, 3, 0): VIRT, (3, 3, 14, 2, 0): PHYS}
_CVAL_REG = {VIRT: r.CNTV_CVAL_EL0, PHYS: r.CNTP_CVAL_EL0}
_CTL_REG = {VIRT: r.CNTV_CTL_EL0, PHYS: r.CNTP_CTL_EL0}

_FAULT_HOOKS = (
    UC_HOOK_MEM_READ_UNMAPPED
    | UC_HOOK_MEM_WRITE_UNMAPPED
    | UC_HOOK_MEM_FETCH_UNMAPPED
    | UC_HOOK_MEM_READ_PROT
    | UC_HOOK_MEM_WRITE_PROT
    | UC_HOOK_MEM_FETCH_PROT
)
_FETCHES = {UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT}
_WIDTHS = {1: AccessWidth.BYTE, 2: AccessWidth.WORD, 4: AccessWidth.DWORD, 8: AccessWidth.QWORD}

_INTR_HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
"""unicorn's uc_cb_hookintr_t."""

_MMIO_READ = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_void_p)
_MMIO_WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_uint64, ctypes.c_void_p)
"""unicorn's uc_cb_mmio_read_t and uc_cb_mmio_write_t; the user data is the window's base."""

_vmem_read = None
if _uclib is not None and hasattr(_uclib, "uc_vmem_read"):  # unicorn >= 2.1
    _vmem_read = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t
    )(("uc_vmem_read", _uclib))


def hook_gaps(covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ``(begin, end)`` ranges of the physical space outside every ``(start, size)``."""
    gaps: list[tuple[int, int]] = []
    cursor = 0
    for start, size in sorted(covered):
        if start > cursor:
            gaps.append((cursor, start - 1))
        cursor = max(cursor, start + size)
    if cursor <= _U64:
        gaps.append((cursor, _U64))
    return gaps


def mpidr_of(vcpu_id: int) -> int:
    """MPIDR_EL1 of vCPU ``vcpu_id``: bit 31 RES1, Aff1 = id // 8, Aff0 = id % 8 (QEMU virt)."""
    return 1 << 31 | (vcpu_id // 8) << 8 | vcpu_id % 8


@dataclass(frozen=True, slots=True)
class _MemFault:
    access: int
    addr: int
    size: int
    value: int


@dataclass(frozen=True, slots=True)
class _PendingRead:
    access: MemAccess
    pc: int


class Aarch64SoftVCpu(ArchVCpu):
    """An arm64 CPU (Cortex-A57 as unicorn models it) running its guest at EL1 and EL0."""

    def __init__(
        self,
        context: HartContext,
        vcpu_id: int,
        irq: IrqInput,
        timers: GenericTimers,
        counter: GuestCounter,
        slice_instructions: int,
    ) -> None:
        self._context = context
        self.vcpu_id = vcpu_id
        self._irq = irq
        self._timers = timers
        self._counter = counter
        self._slice = slice_instructions
        # mypy reads unicorn.Uc as the Python 2 binding's (see riscv64.py); the Python 3 one takes cpu.
        self._uc: Any = Uc(UC_ARCH_ARM64, UC_MODE_ARM, ac.UC_CPU_ARM64_A57)  # type: ignore[call-arg]
        self._regs = r.A64Regs(self._uc)
        self._insn_buf = ctypes.c_uint32()
        self.engine_lock = threading.RLock()
        self._mem_fault: _MemFault | None = None
        self._fail: str | None = None
        self._exit: AxVCpuExitReason | None = None
        self._pending_read: _PendingRead | None = None
        self._mmio_windows: list[tuple[int, int]] = []
        self._mmio_callbacks: tuple[Any, Any] | None = None  # kept alive as long as the engine
        self._counter_generation = -1
        self._engine_ctl = [0, 0]  # CNTV_CTL, CNTP_CTL as last written into the engine
        self._code_dirty = threading.Event()
        self._ram: dict[int, tuple[int, int]] = {}  # gpa -> (size, perms) of RAM this engine maps
        self._fault_hooks: list[int] = []
        self._woke_masked = False  # the last slice ended at a wfi with an IRQ pending and masked
        self._closed = False
        self.last_call: tuple[str, int] | None = None
        """The conduit ("hvc" or "smc") and immediate of the last Hypercall exit."""
        self.exceptions_entered = 0
        self.irqs_entered = 0
        self.translation_flushes = 0
        self._configure_els()
        self._sctlr_reset = self._regs.sysreg(r.SCTLR_EL1)
        self._intr_callback: Any = None
        if _uclib is None:
            self._uc.hook_add(UC_HOOK_INTR, self._on_exception)
        else:  # a raw ctypes callback: the binding's wrapper cost 13.5 us per exception, this 3.5 us
            self._intr_callback = _INTR_HOOK(lambda _uc, intno, _user: self._on_exception(self._uc, intno, None))
            handle = ctypes.c_size_t()
            status = _uclib.uc_hook_add(
                self._uc._uch,
                ctypes.byref(handle),
                UC_HOOK_INTR,
                ctypes.cast(self._intr_callback, ctypes.c_void_p),
                None,
                ctypes.c_uint64(1),
                ctypes.c_uint64(0),
            )
            if status:
                raise UcError(status)
        self._place_fault_hooks()
        self._install_msr_hook()

    def _install_msr_hook(self) -> None:
        """The MSR hook, behind the C filter that keeps non-timer registers out of Python
        (``aarch64_msr_filter``), or the binding's Python hook where the filter cannot be built."""
        self._msr_callback: Any = None
        self._msr_user: Any = None
        address = load_msr_filter()
        if address is None or _uclib is None:
            self._uc.hook_add(UC_HOOK_INSN, self._on_msr, None, 1, 0, ac.UC_ARM64_INS_MSR)
            return
        self._msr_callback = SYS_HOOK(lambda _uc, reg, cp, _user: self._on_msr(None, reg, cp.contents, None))
        self._msr_user = ctypes.c_void_p(ctypes.cast(self._msr_callback, ctypes.c_void_p).value)
        handle = ctypes.c_size_t()
        status = _uclib.uc_hook_add(
            self._uc._uch,
            ctypes.byref(handle),
            UC_HOOK_INSN,
            ctypes.c_void_p(address),
            ctypes.byref(self._msr_user),
            ctypes.c_uint64(1),
            ctypes.c_uint64(0),
            ctypes.c_int(ac.UC_ARM64_INS_MSR),
        )
        if status:
            raise UcError(status)

    def _configure_els(self) -> None:
        """Non-secure EL1 under an AArch64 EL2 the guest never enters (see the module docstring)."""
        regs = self._regs
        regs.set_sysreg(r.SCR_EL3, _SCR_NS | _SCR_HCE | _SCR_RW)
        regs.set_sysreg(r.HCR_EL2, _HCR_RW)
        regs.set_sysreg(r.CNTHCTL_EL2, _CNTHCTL_EL1PCTEN_EL1PCEN)
        regs.set_sysreg(r.VMPIDR_EL2, mpidr_of(self.vcpu_id))

    # -- ArchVCpu -----------------------------------------------------------------------------------

    def setup(self, entry: GuestPhysAddr, stage2: Stage2Mapper | None) -> None:
        """PC at ``entry``, EL1h with D, A, I, F masked, the MMU and caches off (SCTLR_EL1 as at
        reset: a CPU that PSCI CPU_ON starts again must not keep its old translation regime);
        RAM comes from the backend's stage-2."""
        with self.engine_lock:
            self._check_open()
            self._regs.set_sysreg(r.SCTLR_EL1, self._sctlr_reset)
            self._regs.write(r.PSTATE, _DAIF_RESET | PSTATE_EL1H)
            self._regs.rebuild_hflags()
            self._regs.write_many([(r.PC, int(entry))])
            self._pending_read = None

    def run(self) -> AxVCpuExitReason:
        self._check_open()
        if self._pending_read is not None:
            raise PendingReadError(f"vCPU {self.vcpu_id}: answer the pending MMIO read with complete_read() first")
        with self._context.turns or NO_TURNS, self.engine_lock:
            self._check_open()
            return self._run_slice()

    def complete_read(self, value: int) -> None:
        pending = self._pending_read
        if pending is None:
            raise PendingReadError(f"vCPU {self.vcpu_id}: no MMIO read is waiting for a value")
        with self.engine_lock:
            self._check_open()
            if pending.access.rt != 31:
                self._regs.write(r.X0 + pending.access.rt, loaded_value(pending.access, value))
            self._regs.write_many([(r.PC, pending.pc + 4)])
        self._pending_read = None

    def get_register(self, name: str) -> int:
        with self.engine_lock:
            self._check_open()
            value = self._regs.by_name(name)
            return value & 0xFFFF_FFFF if name.lower() in ("pstate", "nzcv", "fpcr", "fpsr") else value

    def set_register(self, name: str, value: int) -> None:
        with self.engine_lock:
            self._check_open()
            self._regs.by_name(name, value)

    def inject_interrupt(self, vector: int) -> None:
        """Make one IRQ pending until taken (the IRQ line is the GIC's; ``vector`` is unused)."""
        self._irq.pulse()

    def wait_for_interrupt(self, timeout: float) -> bool:
        """Block until the IRQ line is high, a timer output is due to rise, a kick (True), or
        ``timeout`` (False)."""
        with self.engine_lock:
            self._check_open()
            cvals = self._cvals()
        due = [self._counter.deadline(timer, cval) for timer, cval in self._timers.deadlines(cvals)]
        return self._irq.wait(timeout, min(due) if due else None)

    def kick(self) -> None:
        self._irq.kick()

    def close(self) -> None:
        self._context.stage2.detach(self)  # before the engine lock (SoftStage2.map takes them the other way)
        with self.engine_lock:
            if self._closed:
                return
            self._closed = True
            uc, self._uc = self._uc, None
            release = getattr(uc, "_Uc__finalizer", None)  # the binding's own uc_close, run once
            if release is not None:
                release()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"vCPU {self.vcpu_id}: the vCPU is closed")

    # -- stage-2 and MMIO (called by SoftStage2 and the backend) -------------------------------------

    def map_ram(self, gpa: int, size: int, host_addr: int, perms: int) -> None:
        with self.engine_lock:
            if not self._closed:
                self._uc.mem_map_ptr(gpa, size, perms, host_addr)
                self._ram[gpa] = (size, perms)
                self._place_fault_hooks()

    def unmap_ram(self, gpa: int, size: int) -> None:
        with self.engine_lock:
            if not self._closed:
                self._uc.mem_unmap(gpa, size)
                self._ram.pop(gpa, None)
                self._place_fault_hooks()

    def invalidate_code(self, gpa: int, size: int) -> None:
        """From any thread: guest RAM was written behind the engine's back (device DMA, the VMM's
        loads); the engine drops its translated code before its next slice."""
        self._code_dirty.set()

    def _place_fault_hooks(self) -> None:
        """Unmapped/protection hooks only outside RAM mapped with every permission and outside
        device windows: a hook whose range covers a RAM page sends every store to that page down
        unicorn's slow path (NOTES.md), and there they could never fire anyway."""
        for handle in self._fault_hooks:
            self._uc.hook_del(handle)
        covered = [(gpa, size) for gpa, (size, perms) in self._ram.items() if perms == UC_PROT_ALL]
        self._fault_hooks = [
            self._uc.hook_add(_FAULT_HOOKS, self._on_bad_access, None, begin, end)
            for begin, end in hook_gaps(covered + self._mmio_windows)
        ]

    def set_mmio_windows(self, windows: list[tuple[int, int]]) -> None:
        """Map page-aligned ``(start, size)`` windows served inline by the context's handler."""
        with self.engine_lock:
            for start, size in self._mmio_windows:
                self._uc.mem_unmap(start, size)
            self._mmio_windows = []
            for start, size in windows:
                try:
                    self._map_mmio(start, size)
                except UcError as err:
                    raise ValueError(
                        f"MMIO window [{start:#x}, +{size:#x}) overlaps guest RAM or another window ({err})"
                    ) from err
                self._mmio_windows.append((start, size))
            self._place_fault_hooks()

    def _map_mmio(self, start: int, size: int) -> None:
        """One window, its callbacks raw ctypes functions where the library handle is at hand
        (the binding's wrappers cost about 10 us more per access)."""
        if _uclib is None:
            self._uc.mmio_map(start, size, self._mmio_read, start, self._mmio_write, start)
            return
        if self._mmio_callbacks is None:
            self._mmio_callbacks = (_MMIO_READ(self._raw_mmio_read), _MMIO_WRITE(self._raw_mmio_write))
        read, write = self._mmio_callbacks
        status = _uclib.uc_mmio_map(
            self._uc._uch, start, size, read, ctypes.c_void_p(start), write, ctypes.c_void_p(start)
        )
        if status:
            raise UcError(status)

    def _raw_mmio_read(self, _uc: int, offset: int, size: int, base: int) -> int:
        try:
            return self._mmio_read(None, offset, size, base or 0)
        except Exception as err:  # a device bug must not vanish inside a ctypes callback
            self._fail = f"vCPU {self.vcpu_id}: MMIO read at {(base or 0) + offset:#x} failed: {err!r}"
            self._uc.emu_stop()
            return 0

    def _raw_mmio_write(self, _uc: int, offset: int, size: int, value: int, base: int) -> None:
        try:
            self._mmio_write(None, offset, size, value, base or 0)
        except Exception as err:
            self._fail = f"vCPU {self.vcpu_id}: MMIO write at {(base or 0) + offset:#x} failed: {err!r}"
            self._uc.emu_stop()

    def _mmio_read(self, _uc: Any, offset: int, size: int, base: int) -> int:
        width = _WIDTHS.get(size)
        handler = self._context.mmio_handler
        if width is None or handler is None:
            return (1 << (8 * size)) - 1
        return handler.read(base + offset, width) & width.mask

    def _mmio_write(self, _uc: Any, offset: int, size: int, value: int, base: int) -> None:
        width = _WIDTHS.get(size)
        handler = self._context.mmio_handler
        if width is not None and handler is not None:
            handler.write(base + offset, width, value & width.mask)

    # -- one slice ----------------------------------------------------------------------------------

    def _run_slice(self) -> AxVCpuExitReason:
        if self._code_dirty.is_set():
            self._code_dirty.clear()
            self._uc.ctl_flush_tb()
            self.translation_flushes += 1
        self._sync_counter()
        self._update_timers()
        self._take_irq()
        count = self._slice
        if self._irq.pending():  # still pending: masked
            count = min(count, MASKED_SLICE_INSTRUCTIONS)
            if self._woke_masked:
                self._woke_masked = False
                stepped = self._step_to_unmask()
                if stepped is not None:
                    return stepped
        self._woke_masked = False
        return self._emulate(count) or self._after_slice()

    def _emulate(self, count: int) -> AxVCpuExitReason | None:
        """Run up to ``count`` instructions from the PC; the exit they ended in, if any."""
        self._mem_fault = None
        self._fail = None
        self._exit = None
        try:
            self._uc.emu_start(self._regs.read(r.PC), _UNTIL, count=count)
        except UcError as err:
            return self._on_stop_error(err)
        if self._fail is not None:
            return FailEntry(0, self._fail)
        return self._exit

    def _step_to_unmask(self) -> AxVCpuExitReason | None:
        """After a wfi woken by a masked IRQ: step one instruction at a time until the guest
        unmasks (then enter the IRQ there), the IRQ goes away, or the next wfi.

        Linux's idle loop runs wfi with IRQs masked, then unmasks for a few instructions and
        masks again before its next wfi, so every slice boundary falls where PSTATE.I is set and
        a check at boundaries alone never takes the IRQ. ``msr daifclr`` has no hook of its own
        and a code hook added now would not reach code already translated (unicorn calls a
        lone code hook directly from the translation), so the first ``WATCH_INSTRUCTIONS``
        after such a wfi run in single steps. Elsewhere, while an IRQ waits masked (a long
        section with interrupts off), slices are only shortened.
        """
        for _ in range(WATCH_INSTRUCTIONS):
            if is_wfi(self._fetch(self._regs.read(r.PC))):
                return None
            done = self._emulate(1)
            if done is not None:
                return done
            if not self._irq.pending():
                return None
            if not self._regs.read(r.PSTATE) & PSTATE_I:
                self._take_irq()
                return Nothing()
        return None

    def _after_slice(self) -> AxVCpuExitReason:
        """Tell a WFI from a spent count: the instruction before the PC is a WFI."""
        pc = self._regs.read(r.PC)
        if not is_wfi(self._fetch(pc - 4)):
            return Nothing()
        self._update_timers()
        if self._irq.pending():
            self._woke_masked = True
            return Nothing()  # the WFI completes; the next run() takes the IRQ if unmasked
        return Halt()

    def _sync_counter(self) -> None:
        """Point the engine's virtual count at the VM's clock (again after a resume)."""
        generation = self._counter.generation
        if generation != self._counter_generation:
            self._regs.set_sysreg(r.CNTVOFF_EL2, self._counter.cntvoff())
            self._counter_generation = generation

    def _cvals(self) -> tuple[int, int]:
        return self._regs.sysreg(r.CNTV_CVAL_EL0), self._regs.sysreg(r.CNTP_CVAL_EL0)

    def _counts(self) -> tuple[int, int]:
        return self._counter.virtual(), self._counter.physical()

    def _update_timers(self) -> None:
        """ISTATUS into the engine's control registers (written only when it changes: only
        these writes change them), the outputs to the sink."""
        timers = self._timers
        if not (timers.ctl[VIRT] | timers.ctl[PHYS] | self._engine_ctl[VIRT] | self._engine_ctl[PHYS] | timers.resend):
            return  # both timers off and the engine shows them off: no output can change
        cvals, counts = self._cvals(), self._counts()
        for timer in (VIRT, PHYS):
            value = timers.ctl_value(timer, cvals[timer], counts[timer])
            if value != self._engine_ctl[timer]:
                self._regs.set_sysreg(_CTL_REG[timer], value)
                self._engine_ctl[timer] = value
        timers.update(cvals, counts)

    def _take_irq(self) -> None:
        if not self._irq.pending():
            return
        pstate = self._regs.read(r.PSTATE) & 0xFFFF_FFFF
        if pstate & PSTATE_I:
            return
        pc = self._regs.read(r.PC)
        self._enter(VECTOR_IRQ, pstate, elr=pc, syndrome=None, far=None)
        self._irq.taken()
        self.irqs_entered += 1

    def _enter(self, kind: int, pstate: int, *, elr: int, syndrome: int | None, far: int | None) -> None:
        """Take an exception to EL1 (module docstring of aarch64_exceptions)."""
        regs = self._regs
        pairs = [(ac.UC_ARM64_REG_ELR_EL1, elr)]
        if syndrome is not None:
            pairs.append((ac.UC_ARM64_REG_ESR_EL1, syndrome))
        if far is not None:
            pairs.append((ac.UC_ARM64_REG_FAR_EL1, far))
        if switches_stack(pstate):
            pairs.append((ac.UC_ARM64_REG_SP_EL0, regs.read(r.SP)))
            pairs.append((r.SP, regs.read(ac.UC_ARM64_REG_SP_EL1)))
        pairs.append((r.PSTATE, entry_pstate()))
        vbar = regs.read(ac.UC_ARM64_REG_VBAR_EL1)
        regs.write_many(pairs)
        regs.set_sysreg(r.SPSR_EL1, pstate)  # a CP_REG write: rebuilds hflags for the new PSTATE
        regs.write_many([(r.PC, vbar + vector_offset(pstate, kind))])
        self.exceptions_entered += 1

    # -- hooks inside emu_start ---------------------------------------------------------------------------

    def _on_msr(self, uc: Any, reg: int, cp: Any, user_data: object) -> int:
        """MSR to a timer register: done here (unicorn drops CTL writes); 0 lets unicorn run it."""
        try:
            return self._msr(cp)
        except Exception as err:  # a fault here must not escape into unicorn's callback
            self._fail = f"vCPU {self.vcpu_id}: emulating an MSR failed: {err!r}"
            self._uc.emu_stop()
            return 1

    def _msr(self, cp: Any) -> int:
        key = (cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)
        timer = _TIMER_CTL.get(key)
        if timer is not None:
            self._timers.write_ctl(timer, cp.val)
        elif (timer := _TIMER_CVAL.get(key)) is not None:
            self._regs.set_sysreg(_CVAL_REG[timer], cp.val)
        elif (timer := _TIMER_TVAL.get(key)) is not None:
            count = self._counts()[timer]
            tval = cp.val & 0xFFFF_FFFF
            tval -= (tval & 0x8000_0000) << 1
            self._regs.set_sysreg(_CVAL_REG[timer], (count + tval) & _U64)
        else:
            return 0
        self._update_timers()
        return 1

    def _on_exception(self, uc: Any, intno: int, _user_data: object) -> None:
        try:
            self._exception(uc, intno)
        except Exception as err:  # a fault in our decoding must not kill the VMM thread
            self._fail = f"vCPU {self.vcpu_id}: entering exception {intno} failed: {err!r}"
            uc.emu_stop()

    def _exception(self, uc: Any, intno: int) -> None:
        regs = self._regs
        pc = regs.read(r.PC)
        pstate = regs.read(r.PSTATE) & 0xFFFF_FFFF
        if intno in (EXCP_HVC, EXCP_SMC):  # PC past the instruction: the machine answers in x0
            insn = self._fetch(pc - 4) or 0
            self.last_call = ("hvc" if intno == EXCP_HVC else "smc", insn >> 5 & 0xFFFF)
            values = regs.read_many(*(r.X0 + i for i in range(7)))
            self._exit = Hypercall(values[0] & 0xFFFF_FFFF, tuple(values[1:]))
            uc.emu_stop()
            return
        if intno == EXCP_SWI:
            syndrome = immediate_esr(EC_SVC64, self._fetch(pc - 4) or 0)
            self._enter(VECTOR_SYNC, pstate, elr=pc, syndrome=syndrome, far=None)
        elif intno == EXCP_UDEF:
            self._enter(VECTOR_SYNC, pstate, elr=pc, syndrome=esr(EC_UNKNOWN), far=None)
        elif intno == EXCP_BKPT:
            self._enter(VECTOR_SYNC, pstate, elr=pc, syndrome=immediate_esr(EC_BRK64, self._fetch(pc) or 0), far=None)
        elif intno == EXCP_DATA_ABORT:
            self._data_abort(pc, pstate)
        elif intno == EXCP_PREFETCH_ABORT:
            el0 = current_el(pstate) == 0
            found = fault_status(self._walk(), pc, 4, write=False, fetch=True, el0=el0)
            fsc = FSC_TRANSLATION_L3 if found is None else found[0]
            self._enter(VECTOR_SYNC, pstate, elr=pc, syndrome=instruction_abort_esr(fsc, from_el0=el0), far=pc)
        else:
            self._fail = f"vCPU {self.vcpu_id}: unicorn reported exception {intno} at pc {pc:#x}"
            uc.emu_stop()

    def _data_abort(self, pc: int, pstate: int) -> None:
        """A fault unicorn's MMU found: the address from the instruction, the kind from a walk."""
        el0 = current_el(pstate) == 0
        access = self._decode(pc)
        if access is None:
            fsc, far = FSC_TRANSLATION_L3, 0
        else:
            found = fault_status(self._walk(), access.addr, access.size, write=access.write, fetch=False, el0=el0)
            if found is not None:
                fsc, far = found
            elif access.addr % access.size:  # the tables allow it: an exclusive or ordered access misaligned
                fsc, far = FSC_ALIGNMENT, access.addr
            else:  # the tables allow it now: changed since unicorn walked them; the guest retries
                fsc, far = FSC_TRANSLATION_L3, access.addr
        syndrome = data_abort_esr(access, fsc, from_el0=el0, with_syndrome=False)
        self._enter(VECTOR_SYNC, pstate, elr=pc, syndrome=syndrome, far=far)

    def _walk(self) -> Walk:
        regs = self._regs
        ttbr0, ttbr1 = regs.read_many(ac.UC_ARM64_REG_TTBR0_EL1, ac.UC_ARM64_REG_TTBR1_EL1)
        return Walk(
            memory=self._context.stage2.memory,
            sctlr=regs.sysreg(r.SCTLR_EL1),
            tcr=regs.sysreg(r.TCR_EL1),
            ttbr0=ttbr0,
            ttbr1=ttbr1,
        )

    def _decode(self, pc: int) -> MemAccess | None:
        insn = self._fetch(pc)
        if insn is None:
            return None
        sp = self._regs.read(r.SP)
        return decode_access(insn, pc, self._gpr, sp)

    def _gpr(self, n: int) -> int:
        return self._regs.read(r.X0 + n if n < 29 else (ac.UC_ARM64_REG_X29, ac.UC_ARM64_REG_X30)[n - 29])

    def _fetch(self, va: int) -> int | None:
        """The instruction word at ``va`` as the CPU sees it now (its MMU), or None."""
        va &= _U64
        if _vmem_read is not None:
            status = _vmem_read(self._uc._uch, va, UC_PROT_EXEC, ctypes.byref(self._insn_buf), 4)
            return None if status else int(self._insn_buf.value)
        try:  # pragma: no cover - bindings without uc_vmem_read: physical reads only
            return int.from_bytes(self._uc.mem_read(va, 4), "little")
        except UcError:
            return None

    # -- accesses to no RAM and no device (after emu_start raised) -------------------------------------

    def _on_bad_access(self, _uc: Any, access: int, addr: int, size: int, value: int, _user_data: object) -> bool:
        if self._mem_fault is None:
            self._mem_fault = _MemFault(access, addr, size, value)
        return False  # unicorn stops with the PC at the instruction

    def _on_stop_error(self, err: UcError) -> AxVCpuExitReason:
        regs = self._regs
        pc = regs.read(r.PC)
        pstate = regs.read(r.PSTATE) & 0xFFFF_FFFF
        fault, self._mem_fault = self._mem_fault, None
        if self._fail is not None:
            return FailEntry(0, self._fail)
        if fault is None:
            return FailEntry(0, f"unicorn: {err} at pc {pc:#x} (vCPU {self.vcpu_id})")
        el0 = current_el(pstate) == 0
        if fault.access in _FETCHES:
            self._enter(VECTOR_SYNC, pstate, elr=pc, syndrome=instruction_abort_esr(FSC_EXTERNAL, from_el0=el0), far=pc)
            return Nothing()
        access = self._decode(pc)
        context = self._context
        if access is not None and access.isv and context.mmio_exits and context.mmio_handler is None:
            return self._mmio_exit(access, fault, pc)
        syndrome = data_abort_esr(access, FSC_EXTERNAL, from_el0=el0, with_syndrome=True)
        far = access.addr if access is not None else fault.addr
        self._enter(VECTOR_SYNC, pstate, elr=pc, syndrome=syndrome, far=far)
        return Nothing()

    def _mmio_exit(self, access: MemAccess, fault: _MemFault, pc: int) -> AxVCpuExitReason:
        addr = GuestPhysAddr(fault.addr)
        width = _WIDTHS[access.size]
        if access.write:  # done once the exit is reported
            value = 0 if access.rt == 31 else self._gpr(access.rt)
            self._regs.write_many([(r.PC, pc + 4)])
            return MmioWrite(addr, width, value & width.mask)
        self._pending_read = _PendingRead(access, pc)
        reg_width = AccessWidth.QWORD if access.sf else AccessWidth.DWORD
        return MmioRead(addr, width, reg=access.rt, reg_width=reg_width, signed=access.signed)

    # -- snapshots (aarch64_state) ---------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        """This vCPU's full state as plain data (``aarch64_state.capture``); call it between runs."""
        with self.engine_lock:
            self._check_open()
            return aarch64_state.capture(
                self._regs,
                self._uc,
                self._timers,
                self._irq,
                vcpu_id=self.vcpu_id,
                physical_count=self._counter.physical(),
                woke_masked=self._woke_masked,
            )

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take a saved state (``aarch64_state.restore``; VCpuStateError naming a bad field)."""
        with self.engine_lock:
            self._check_open()
            self._woke_masked = aarch64_state.restore(
                self._regs,
                self._uc,
                self._timers,
                self._irq,
                state,
                vcpu_id=self.vcpu_id,
                physical_count=self._counter.physical(),
            )
            for timer in (VIRT, PHYS):  # ISTATUS is recomputed at the next slice
                self._regs.set_sysreg(_CTL_REG[timer], self._timers.ctl[timer])
                self._engine_ctl[timer] = self._timers.ctl[timer]
            self._counter_generation = -1
            self._pending_read = None
            self._uc.ctl_flush_tb()

    def __repr__(self) -> str:
        return f"Aarch64SoftVCpu(vcpu={self.vcpu_id})"
