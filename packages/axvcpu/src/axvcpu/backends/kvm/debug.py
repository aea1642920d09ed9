"""``KvmDebug``: breakpoints, watchpoints and single step on a KVM x86 vCPU (KVM_SET_GUEST_DEBUG).

Theory of operation (see ``axvcpu.debug`` for the contract; Intel SDM vol. 3B 18.2 for the
debug registers). Every breakpoint and watchpoint takes one of the four debug address
registers DR0-DR3, described to KVM with DR7 and ``KVM_GUESTDBG_USE_HW_BP``: the guest's own
debug registers are left alone, and a hit exits to us (``KVM_EXIT_DEBUG``) instead of raising
#DB in the guest. A software breakpoint (gdb's Z0) is served the same way, so nothing is
written into guest memory; a fifth breakpoint is refused. A single step is
``KVM_GUESTDBG_SINGLESTEP`` (a #DB after one instruction, DR6.BS).

An execute breakpoint is a fault: the vCPU stops with RIP at the instruction, not executed.
A data watchpoint is a trap: the access has happened. ``after_slice`` turns the exit KVM
reports (``Unsupported(KVM_EXIT_DEBUG)``, the decoder knows nothing of debugging) into a held
stop, as the soft backend's debugger does.

On PVM (the development machines) only a single step of CPL0 code (which PVM emulates)
reaches us: debug-register hits and the trap flag in natively run CPL3 code go to the guest.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ...debug import DebugListener, DebugStop, StopReason, WatchKind
from ...exits import AxVCpuExitReason, Nothing, Unsupported

SLOTS = 4
HELD_WAIT_SECONDS = 0.002
_DR6_BS = 1 << 14  # single step
_DR7_RESERVED = 1 << 10  # reads as 1
_RW = {None: 0b00, WatchKind.WRITE: 0b01, WatchKind.ACCESS: 0b11, WatchKind.READ: 0b11}  # no read-only kind
_LEN = {1: 0b00, 2: 0b01, 8: 0b10, 4: 0b11}


@dataclass(frozen=True, slots=True)
class Slot:
    """One debug address register in use: ``watch`` None for an execute breakpoint."""

    addr: int
    watch: WatchKind | None = None
    length: int = 1


def dr7_for(slots: list[Slot | None]) -> int:
    """DR7 enabling each used slot locally, with its R/W and LEN fields (SDM 18.2.4)."""
    dr7 = _DR7_RESERVED
    for index, slot in enumerate(slots):
        if slot is None:
            continue
        dr7 |= 1 << (2 * index)
        length = 0 if slot.watch is None else _LEN[slot.length]
        dr7 |= (_RW[slot.watch] | length << 2) << (16 + 4 * index)
    return dr7


class KvmDebug:
    """The ``GuestDebug`` of one ``KvmVCpu``."""

    def __init__(self, vcpu: Any) -> None:
        self._vcpu = vcpu
        self._ffi = vcpu._ffi  # the vCPU's own bindings and run area: this module is its helper
        self._lib = vcpu._lib
        self._lock = threading.Lock()
        self._slots: list[Slot | None] = [None] * SLOTS
        self._step = False
        self._listener: DebugListener | None = None
        self._stopped: DebugStop | None = None
        self._released = threading.Event()

    @classmethod
    def for_vcpu(cls, vcpu: Any) -> KvmDebug:
        return cls(vcpu)

    # -- GuestDebug ---------------------------------------------------------------------------------

    def set_listener(self, listener: DebugListener | None) -> None:
        self._listener = listener

    def insert_breakpoint(self, addr: int, hardware: bool = False) -> bool:
        return self._take(Slot(addr))

    def remove_breakpoint(self, addr: int, hardware: bool = False) -> bool:
        return self._give(Slot(addr))

    def insert_watchpoint(self, kind: WatchKind, addr: int, length: int) -> bool:
        if length not in _LEN or addr % length:
            return False  # the debug registers watch 1, 2, 4 or 8 aligned bytes
        return self._take(Slot(addr, kind, length))

    def remove_watchpoint(self, kind: WatchKind, addr: int, length: int) -> bool:
        return self._give(Slot(addr, kind, length))

    def set_single_step(self, enabled: bool) -> None:
        with self._lock:
            if self._step != enabled:
                self._step = enabled
                self._apply()

    @property
    def stopped(self) -> DebugStop | None:
        return self._stopped

    def translate(self, va: int) -> int | None:
        """None: the VMM walks x86 page tables itself (``KVM_TRANSLATE`` is not relied on)."""
        return None

    def release(self) -> None:
        self._stopped = None
        self._released.set()

    def clear(self) -> None:
        with self._lock:
            self._slots = [None] * SLOTS
            self._step = False
            self._apply()
        self.release()

    # -- around KVM_RUN -----------------------------------------------------------------------------

    def before_slice(self) -> AxVCpuExitReason | None:
        if self._stopped is None:
            return None
        self._released.wait(HELD_WAIT_SECONDS)
        return Nothing() if self._stopped is not None else None

    def after_slice(self, exit_reason: AxVCpuExitReason) -> AxVCpuExitReason:
        if not (isinstance(exit_reason, Unsupported) and exit_reason.code == self._lib.KVM_EXIT_DEBUG):
            return exit_reason
        arch = self._vcpu._run.debug.arch
        stop = self._stop_for(int(arch.dr6), self._vcpu.get_register("rip"))
        if stop.reason is StopReason.STEP:
            self.set_single_step(False)  # one-shot
        self._released.clear()
        self._stopped = stop
        listener = self._listener
        if listener is not None:
            listener(stop)
        return Nothing()

    def _stop_for(self, dr6: int, pc: int) -> DebugStop:
        for index, slot in enumerate(self._slots):
            if slot is not None and dr6 & (1 << index):
                if slot.watch is None:
                    return DebugStop(StopReason.BREAKPOINT, pc)
                return DebugStop(StopReason.WATCHPOINT, pc, (slot.watch, slot.addr))
        return DebugStop(StopReason.STEP, pc)  # DR6.BS, or a step KVM reported without it

    # -- the ioctl ----------------------------------------------------------------------------------

    def _take(self, slot: Slot) -> bool:
        with self._lock:
            if slot in self._slots:
                return True
            if None not in self._slots:
                return False
            self._slots[self._slots.index(None)] = slot
            self._apply()
            return True

    def _give(self, slot: Slot) -> bool:
        with self._lock:
            if slot not in self._slots:
                return False
            self._slots[self._slots.index(slot)] = None
            self._apply()
            return True

    def _apply(self) -> None:
        """KVM_SET_GUEST_DEBUG with what is set now (all off: debugging disabled)."""
        lib = self._lib
        debug = self._ffi.new("struct kvm_guest_debug *")
        used = any(slot is not None for slot in self._slots)
        if used or self._step:
            debug.control = lib.KVM_GUESTDBG_ENABLE
            if self._step:
                debug.control |= lib.KVM_GUESTDBG_SINGLESTEP
            if used:
                debug.control |= lib.KVM_GUESTDBG_USE_HW_BP
                for index, slot in enumerate(self._slots):
                    debug.arch.debugreg[index] = slot.addr if slot is not None else 0
                debug.arch.debugreg[7] = dr7_for(self._slots)
        self._vcpu._ioctl("KVM_SET_GUEST_DEBUG", lib.KVM_SET_GUEST_DEBUG, debug)
