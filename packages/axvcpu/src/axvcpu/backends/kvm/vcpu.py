"""One KVM vCPU: an ``ArchVCpu`` and ``X86VCpu`` over a vCPU fd and its shared kvm_run page.

The run loop's hot path is: flush registers only if the VMM changed some, enter KVM_RUN (the GIL
is released for the whole call), and decode the exit from the shared page. Everything else
(registers, MSRs, LAPIC, FPU) is an ioctl made only when asked for.

Threads. ``run``, ``complete_read`` and the register methods belong to the vCPU's own thread
(KVM serialises vCPU ioctls, so from elsewhere they would wait for KVM_RUN to return).
``kick`` and ``inject_interrupt`` may be called from any thread.

Reads. KVM finishes an IN or MMIO load only when KVM_RUN is entered again, so between a read
exit and the next ``run()`` the registers show the state before the load: a value written to
RAX then would be overwritten by the completion. Answer with ``complete_read`` instead.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from axaddrspace import PAGE_SIZE, GuestMemoryError, GuestPhysAddr, Stage2Mapper, Stage2Mapping

from ...arch import ArchVCpu
from ...exits import AxVCpuExitReason, Nothing
from ...x86 import Segment
from . import state
from .cpuid import CpuidEntry, for_vcpu
from .decode import ExitDecoder
from .errors import KvmError, check
from .kick import kick_signal
from .regs import FpuState, RegisterCache
from .system import Kvm


class VCpuParent(Protocol):
    """What a vCPU uses of its VM (``KvmVm`` is one): named here so this module need not import
    vm.py, which creates the vCPUs (no import cycle)."""

    @property
    def kvm(self) -> Kvm: ...

    @property
    def ffi(self) -> Any: ...

    @property
    def lib(self) -> Any: ...

    @property
    def fd(self) -> int: ...

    @property
    def irqchip(self) -> bool: ...

    @property
    def quiet_ports(self) -> Any: ...

    @property
    def quiet_sink(self) -> Callable[[int, int], object] | None: ...

    def mapping_at(self, gpa: int) -> Stage2Mapping | None: ...

    def read_guest(self, gpa: int, size: int) -> bytes: ...

_NOTHING = Nothing()
_QUIET = 1 << 56
"""AXV_EXIT_QUIET: axv_run counted quiet port accesses before this exit (see _ffi.py)."""
_MAX_INSN = 15
"""Longest x86 instruction, the most code bytes worth showing in a failure."""
_XSAVE_MXCSR = 24 // 4
"""MXCSR sits at byte 24 of the legacy FXSAVE region that starts every XSAVE image (SDM vol. 1, 10.5.1)."""
_XSAVE_XSTATE_BV = 512 // 4
"""XSTATE_BV, the low word of the XSAVE header at byte 512: which state components are not in init state."""


class KvmVCpu(ArchVCpu):
    """A vCPU of ``vm`` with id ``vcpu_id`` (also its APIC id); made by ``KvmVm.create_vcpu``."""

    def __init__(self, vm: VCpuParent, vcpu_id: int) -> None:
        self.vm = vm
        self.vcpu_id = vcpu_id
        self._ffi: Any = vm.ffi
        self._lib: Any = vm.lib
        self._run_decode = self._lib.axv_run  # KVM_RUN and the decoding of the common exits, in C
        self._tid = 0  # kernel thread id of the thread that last entered KVM_RUN, for kick()
        self._in_run = False  # between the interrupt check and the end of KVM_RUN
        self._irqs: deque[int] = deque()  # vectors for KVM_INTERRUPT (no in-kernel irqchip only)
        self._wake = threading.Event()
        self._raw: mmap.mmap | None = None
        self._run: Any = None
        self.stage2: Stage2Mapper | None = None
        self.fd = check(self._lib.axv_ioctl_int(vm.fd, self._lib.KVM_CREATE_VCPU, vcpu_id), "KVM_CREATE_VCPU")
        try:
            # The whole mapping: kvm_run, then the PIO data page its io.data_offset points into.
            self._raw = mmap.mmap(self.fd, vm.kvm.vcpu_mmap_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._run = self._ffi.from_buffer("struct kvm_run *", self._raw)
            self._regs = RegisterCache(self._ffi, self._lib, self._ioctl)
            self._decoder = ExitDecoder(self._ffi, self._lib, self._run, self._raw, self._where)
            self._quiet_counts = self._ffi.new("uint64_t[2]")  # quiet port reads, writes not yet reported
            self._run_args: Any = (self.fd, self._run, len(self._raw), self._decoder.mmio_out, vm.quiet_ports,
                                   self._quiet_counts)
            self._kick_signal = kick_signal()
            self.set_cpuid(for_vcpu(vm.kvm.supported_cpuid(), vcpu_id))
        except BaseException:
            self.close()
            raise

    def _ioctl(self, name: str, request: int, arg: Any) -> int:
        return check(self._lib.axv_ioctl_ptr(self.fd, request, arg), name)

    # -- ArchVCpu ----------------------------------------------------------------------------------

    def setup(self, entry: GuestPhysAddr, stage2: Stage2Mapper | None) -> None:
        """Set RIP to ``entry`` and nothing else: the VMM sets the remaining state afterwards.

        RIP is relative to CS.base, which at x86 reset is 0xffff0000: a VMM starting anywhere
        but the reset vector also sets CS (and usually the whole long-mode state).
        """
        self.stage2 = stage2
        self._regs.set("rip", int(entry))

    def run(self) -> AxVCpuExitReason:
        """Enter the guest until the next exit; Nothing() after a kick or a signal."""
        decoder = self._decoder
        if decoder.io_left:
            return decoder.next_io()  # the rest of a string I/O, without entering KVM
        regs = self._regs
        if regs.touched:
            regs.before_run()
        self._tid = threading.get_native_id()
        self._in_run = True  # before looking at the queue: see inject_interrupt
        try:
            if self._irqs:
                self._offer_interrupt()
            packed = self._run_decode(*self._run_args)
        finally:
            self._in_run = False
        if packed >= _QUIET or packed < 0:
            packed = self._report_quiet(packed)
        if packed < 0:
            if packed == -errno.EINTR:
                self._run.immediate_exit = 0  # the kick is consumed
                return _NOTHING
            raise KvmError("KVM_RUN", -packed, f"vCPU {self.vcpu_id}")
        return decoder.decode_packed(packed)

    def complete_read(self, value: int) -> None:
        self._decoder.complete_read(value)

    def _report_quiet(self, packed: int) -> int:
        """Hand the quiet port accesses counted in C to the VM's sink; ``packed`` without the flag."""
        counts = self._quiet_counts
        reads, writes = int(counts[0]), int(counts[1])
        if reads or writes:
            counts[0] = counts[1] = 0
            sink = self.vm.quiet_sink
            if sink is not None:
                sink(reads, writes)
        return packed & ~_QUIET if packed >= 0 else packed

    def get_register(self, name: str) -> int:
        return self._regs.get(name)

    def set_register(self, name: str, value: int) -> None:
        self._regs.set(name, value)

    def inject_interrupt(self, vector: int) -> None:
        """Queue ``vector`` for KVM_INTERRUPT, delivered when the guest can take it (any thread).

        Only for VMs without the in-kernel irqchip; with it, interrupts go through
        ``KvmVm.irq_line(gsi)`` or ``KvmVm.irqfd(gsi)`` to the in-kernel PIC/IOAPIC.
        """
        if self.vm.irqchip:
            raise RuntimeError(f"vCPU {self.vcpu_id}: the VM has the in-kernel irqchip; raise interrupts "
                               f"through KvmVm.irq_line(gsi) or KvmVm.irqfd(gsi), not inject_interrupt")
        if not 0 <= vector <= 0xFF:
            raise ValueError(f"interrupt vector {vector} is not 0..255")
        self._irqs.append(vector)
        self._wake.set()
        # If run() has not set _in_run yet, it will see the vector before entering KVM; if it
        # has, it may be in KVM_RUN already, so bring it out to offer the vector now.
        if self._in_run and self._tid != threading.get_native_id():
            self.kick()

    def _offer_interrupt(self) -> None:
        """Inject the first queued vector if the guest can take it, else ask KVM to exit when it can."""
        run = self._run
        if run.ready_for_interrupt_injection and run.if_flag:
            irq = self._ffi.new("struct kvm_interrupt *")
            irq.irq = self._irqs.popleft()
            self._ioctl("KVM_INTERRUPT", self._lib.KVM_INTERRUPT, irq)
        run.request_interrupt_window = 1 if self._irqs else 0

    def wait_for_interrupt(self, timeout: float) -> bool:
        """After a Halt: True as soon as ``inject_interrupt`` queues a vector, False after ``timeout``."""
        self._wake.clear()
        return bool(self._irqs) or self._wake.wait(timeout)

    def kick(self) -> None:
        """Make the current or next KVM_RUN of this vCPU return Nothing() soon (any thread).

        immediate_exit stays set until a KVM_RUN has returned EINTR, so a kick is never lost:
        if it lands while the vCPU thread is busy in Python, the next run() returns at once.
        The signal goes to the thread that last entered KVM_RUN; if that thread is elsewhere,
        the no-op handler makes it harmless.
        """
        run, tid = self._run, self._tid
        if run is None:
            return
        run.immediate_exit = 1  # a KVM_RUN about to start returns at once
        if tid:
            result = self._lib.axv_tgkill(tid, self._kick_signal)  # one in progress returns EINTR
            if result < 0 and result != -errno.ESRCH:  # ESRCH: that thread has ended, nothing runs
                raise KvmError("tgkill", -result, f"kicking vCPU {self.vcpu_id}")

    def close(self) -> None:
        """Unmap kvm_run and close the vCPU fd (idempotent; not while another thread runs it)."""
        self._run_args = None  # run() after close never reaches a reused fd or the unmapped page
        if self._run is not None:
            self._ffi.release(self._run)
            self._run = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- X86VCpu ---------------------------------------------------------------------------------

    def get_segment(self, name: str) -> Segment:
        return self._regs.get_segment(name)

    def set_segment(self, name: str, segment: Segment) -> None:
        self._regs.set_segment(name, segment)

    def get_descriptor_table(self, name: str) -> tuple[int, int]:
        return self._regs.get_descriptor_table(name)

    def set_descriptor_table(self, name: str, base: int, limit: int) -> None:
        self._regs.set_descriptor_table(name, base, limit)

    def get_msrs(self, indices: Iterable[int]) -> dict[int, int]:
        """KVM_GET_MSRS; KvmError naming the first MSR KVM would not read."""
        wanted = list(indices)
        msrs, _keep = self._msr_buffer(wanted)
        done = self._ioctl("KVM_GET_MSRS", self._lib.KVM_GET_MSRS, msrs)
        if done < len(wanted):
            raise KvmError("KVM_GET_MSRS", errno.EINVAL, f"MSR {wanted[done]:#x} is not readable")
        return {int(msrs.entries[i].index): int(msrs.entries[i].data) for i in range(len(wanted))}

    def set_msrs(self, values: Mapping[int, int]) -> None:
        """KVM_SET_MSRS; KvmError naming the first MSR KVM refused."""
        wanted = list(values.items())
        msrs, _keep = self._msr_buffer([index for index, _ in wanted])
        for i, (_, value) in enumerate(wanted):
            msrs.entries[i].data = value
        done = self._ioctl("KVM_SET_MSRS", self._lib.KVM_SET_MSRS, msrs)
        if done < len(wanted):
            index, value = wanted[done]
            raise KvmError("KVM_SET_MSRS", errno.EINVAL, f"MSR {index:#x} refused value {value:#x}")

    def _msr_buffer(self, indices: list[int]) -> tuple[Any, Any]:
        """A kvm_msrs header plus ``len(indices)`` kvm_msr_entry (its flexible array); keep both alive."""
        ffi = self._ffi
        buf = ffi.new("char[]", ffi.sizeof("struct kvm_msrs") + len(indices) * ffi.sizeof("struct kvm_msr_entry"))
        msrs = ffi.cast("struct kvm_msrs *", buf)
        msrs.nmsrs = len(indices)
        for i, index in enumerate(indices):
            msrs.entries[i].index = index
        return msrs, buf

    # -- KVM-specific state ------------------------------------------------------------------------

    def set_cpuid(self, entries: Iterable[CpuidEntry]) -> None:
        """KVM_SET_CPUID2: what CPUID reports to the guest (set before the first run)."""
        ffi = self._ffi
        items = list(entries)
        # A kvm_cpuid2 header followed by len(items) kvm_cpuid_entry2 (its flexible array).
        buf = ffi.new("char[]", ffi.sizeof("struct kvm_cpuid2") + len(items) * ffi.sizeof("struct kvm_cpuid_entry2"))
        cpuid = ffi.cast("struct kvm_cpuid2 *", buf)
        cpuid.nent = len(items)
        for i, entry in enumerate(items):
            entry.to_c(cpuid.entries[i])
        self._ioctl("KVM_SET_CPUID2", self._lib.KVM_SET_CPUID2, cpuid)

    def get_lapic(self) -> bytes:
        """The local APIC's register page (KVM_GET_LAPIC; needs the in-kernel irqchip)."""
        self._need_irqchip("get_lapic")
        state = self._ffi.new("struct kvm_lapic_state *")
        self._ioctl("KVM_GET_LAPIC", self._lib.KVM_GET_LAPIC, state)
        return bytes(self._ffi.buffer(state.regs))

    def set_lapic(self, regs: bytes) -> None:
        self._need_irqchip("set_lapic")
        state = self._ffi.new("struct kvm_lapic_state *")
        size = self._ffi.sizeof(state.regs)
        if len(regs) != size:
            raise ValueError(f"a LAPIC register page is {size} bytes, not {len(regs)}")
        self._ffi.memmove(state.regs, regs, size)
        self._ioctl("KVM_SET_LAPIC", self._lib.KVM_SET_LAPIC, state)

    def _need_irqchip(self, what: str) -> None:
        if not self.vm.irqchip:
            raise RuntimeError(f"vCPU {self.vcpu_id}: {what} needs the in-kernel irqchip (KvmVm(irqchip=True))")

    def get_mp_state(self) -> int:
        """KVM_MP_STATE_* (RUNNABLE 0, UNINITIALIZED 1 for an AP waiting for INIT/SIPI, HALTED 3...)."""
        state = self._ffi.new("struct kvm_mp_state *")
        self._ioctl("KVM_GET_MP_STATE", self._lib.KVM_GET_MP_STATE, state)
        return int(state.mp_state)

    def set_mp_state(self, mp_state: int) -> None:
        state = self._ffi.new("struct kvm_mp_state *")
        state.mp_state = mp_state
        self._ioctl("KVM_SET_MP_STATE", self._lib.KVM_SET_MP_STATE, state)

    def get_fpu(self) -> FpuState:
        """x87 control/status/tag words (KVM_GET_FPU) and MXCSR (from KVM_GET_XSAVE: KVM_GET_FPU omits it)."""
        fpu = self._ffi.new("struct kvm_fpu *")
        self._ioctl("KVM_GET_FPU", self._lib.KVM_GET_FPU, fpu)
        xsave = self._xsave()
        mxcsr = int(xsave.region[_XSAVE_MXCSR]) if xsave is not None else int(fpu.mxcsr)
        return FpuState(int(fpu.fcw), int(fpu.fsw), int(fpu.ftwx), mxcsr)

    def set_fpu(self, state: FpuState | None = None) -> None:
        """Load ``state`` (default: the reset state) with all x87 and XMM registers zero.

        KVM_SET_FPU ignores MXCSR, and where the guest state is an XSAVE image it only takes
        effect while the image marks x87/SSE as in use. So the image is prepared first (MXCSR,
        XSTATE_BV bits 0 and 1) and KVM_SET_FPU then fills in the x87 and XMM registers.
        """
        state = state or FpuState()
        xsave = self._xsave()
        if xsave is not None:
            xsave.region[_XSAVE_MXCSR] = state.mxcsr
            xsave.region[_XSAVE_XSTATE_BV] |= 0b11
            self._ioctl("KVM_SET_XSAVE", self._lib.KVM_SET_XSAVE, xsave)
        fpu = self._ffi.new("struct kvm_fpu *")  # zeroed
        fpu.fcw, fpu.fsw, fpu.ftwx, fpu.mxcsr = state.fcw, state.fsw, state.ftwx, state.mxcsr
        self._ioctl("KVM_SET_FPU", self._lib.KVM_SET_FPU, fpu)

    def _xsave(self) -> Any:
        """The vCPU's XSAVE image, or None where KVM has no KVM_CAP_XSAVE."""
        if self.vm.kvm.check_extension(self._lib.KVM_CAP_XSAVE) <= 0:
            return None
        xsave = self._ffi.new("struct kvm_xsave *")
        self._ioctl("KVM_GET_XSAVE", self._lib.KVM_GET_XSAVE, xsave)
        return xsave

    def translate(self, linear_address: int) -> int | None:
        """The guest physical address the guest's own page tables give ``linear_address``, or None."""
        tr = self._ffi.new("struct kvm_translation *")
        tr.linear_address = linear_address
        self._ioctl("KVM_TRANSLATE", self._lib.KVM_TRANSLATE, tr)
        return int(tr.physical_address) if tr.valid else None

    # -- failure descriptions ----------------------------------------------------------------------

    def _where(self, with_code: bool) -> str:
        """"at RIP 0x..." (and the code bytes there) for FailEntry details; never raises."""
        try:
            rip = self._regs.get("rip")
        except KvmError as error:
            return f"at an unknown RIP ({error})"
        text = f"at RIP {rip:#x}"
        return f"{text}, instruction bytes {self._code_at(rip)}" if with_code else text

    def _code_at(self, rip: int) -> str:
        try:
            linear = (self._regs.get_segment("cs").base + rip) % (1 << 64)
            gpa = self.translate(linear)
            if gpa is None:
                return "unreadable (the guest's page tables do not map RIP)"
            mapping = self.vm.mapping_at(gpa)
            if mapping is None:
                return f"unreadable (guest physical {gpa:#x} is not RAM)"
            size = min(_MAX_INSN, PAGE_SIZE - gpa % PAGE_SIZE, int(mapping.gpa) + mapping.size - gpa)
            return self.vm.read_guest(gpa, size).hex(" ")
        except (KvmError, GuestMemoryError) as error:
            return f"unreadable ({error})"

    # -- snapshots (kvm/state.py) ----------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        """This vCPU's full state as plain data (``state.save_vcpu``); call it between runs."""
        self._regs.before_run()  # register writes not yet made go in first; the cache is dropped
        return state.save_vcpu(self._ffi, self._lib, self._ioctl, state.readable_msr(self.get_msrs))

    def load_state(self, saved: Mapping[str, Any]) -> None:
        """Put a saved state back (``state.load_vcpu``: KvmStateError naming a bad part)."""
        self._regs.before_run()
        state.load_vcpu(self._ffi, self._lib, self._ioctl, self.set_msrs, saved)

    def __repr__(self) -> str:
        return f"KvmVCpu(id={self.vcpu_id}, fd={self.fd})"
