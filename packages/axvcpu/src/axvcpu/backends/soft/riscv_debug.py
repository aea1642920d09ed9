"""``HartDebug``: breakpoints, watchpoints and single step on one hart's unicorn engine.

Theory of operation (see ``axvcpu.debug`` for the contract). Every control is a unicorn hook
bounded to exactly what was asked, so code and data outside it run at full speed:

- a breakpoint is a ``UC_HOOK_CODE`` hook on ``[addr, addr]``; its callback stops the engine
  before the instruction executes (unicorn leaves the PC at ``addr``). Hardware breakpoints
  are the same hooks: the engine has no debug registers to run out of;
- a watchpoint is a ``UC_HOOK_MEM_READ``/``UC_HOOK_MEM_WRITE`` hook on the watched range of
  virtual addresses; the access completes and the engine stops after the instruction;
- a single step is a ``UC_HOOK_CODE`` hook over every address, there only until the step
  ends: its callback lets the first instruction run and stops the engine at the second.

Unicorn applies a hook only to code translated after it is added, so every change flushes
the engine's translation cache. A stop made by a callback is only recorded there; ``after_slice``
(called by the hart once ``emu_start`` returned) turns it into ``Nothing`` and tells the
listener, and ``before_slice`` keeps the hart out of the engine until ``release``.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_PROT_EXEC, UC_PROT_READ
from unicorn import riscv_const as rc

from ...debug import DebugListener, DebugStop, StopReason, WatchKind
from ...exits import AxVCpuExitReason, Nothing

try:
    from unicorn.unicorn_py3.unicorn import uclib as _uclib
except ImportError:  # another layout of the binding: no translation of our own
    _uclib = None  # type: ignore[assignment]  # the try branch typed it as a CDLL
_vmem_translate = getattr(_uclib, "uc_vmem_translate", None)  # unicorn >= 2.1; not in the Python binding
if _vmem_translate is not None:
    _vmem_translate.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64))
    _vmem_translate.restype = ctypes.c_int

HELD_WAIT_SECONDS = 0.002
"""How long one ``run`` of a stopped hart waits before returning Nothing: the VM loop comes
back at once, so this bounds the spinning until the debugger's pause takes the thread."""
MAX_BREAKPOINTS = 4096
MAX_WATCHPOINTS = 64
"""Bounds on what a debugger may install (each is a hook and a translation cache flush)."""


class HartDebug:
    """The ``GuestDebug`` of one ``RiscvSoftVCpu``; created by its ``debugger()``."""

    def __init__(self, uc: Any, lock: threading.RLock) -> None:
        self._uc = uc
        self._lock = lock
        self._listener: DebugListener | None = None
        self._breakpoints: dict[int, Any] = {}  # addr -> hook handle
        self._hardware: set[int] = set()
        self._software: set[int] = set()
        self._watchpoints: dict[tuple[WatchKind, int, int], Any] = {}
        self._step_hook: Any = None
        self._step_seen = 0
        self._hit: DebugStop | None = None  # recorded by a callback during the slice
        self._stopped: DebugStop | None = None  # held until release
        self._released = threading.Event()

    @classmethod
    def for_hart(cls, hart: Any) -> HartDebug:
        """The debugger of a ``RiscvSoftVCpu``: its engine, under its engine lock."""
        return cls(hart._uc, hart.engine_lock)  # the hart's own engine; this module is its helper

    # -- GuestDebug ---------------------------------------------------------------------------------

    def set_listener(self, listener: DebugListener | None) -> None:
        self._listener = listener

    def insert_breakpoint(self, addr: int, hardware: bool = False) -> bool:
        with self._lock:
            owners = self._hardware if hardware else self._software
            if addr not in self._breakpoints:
                if len(self._breakpoints) >= MAX_BREAKPOINTS:
                    return False
                self._breakpoints[addr] = self._uc.hook_add(UC_HOOK_CODE, self._on_breakpoint, begin=addr, end=addr)
                self._flush()
            owners.add(addr)
            return True

    def remove_breakpoint(self, addr: int, hardware: bool = False) -> bool:
        with self._lock:
            owners = self._hardware if hardware else self._software
            if addr not in owners:
                return False
            owners.discard(addr)
            if addr not in self._hardware and addr not in self._software:
                self._uc.hook_del(self._breakpoints.pop(addr))
                self._flush()
            return True

    def insert_watchpoint(self, kind: WatchKind, addr: int, length: int) -> bool:
        key = (kind, addr, length)
        with self._lock:
            if key in self._watchpoints:
                return True
            if length < 1 or len(self._watchpoints) >= MAX_WATCHPOINTS:
                return False
            types = {WatchKind.WRITE: UC_HOOK_MEM_WRITE, WatchKind.READ: UC_HOOK_MEM_READ}.get(
                kind, UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE
            )
            end = addr + length - 1
            self._watchpoints[key] = self._uc.hook_add(types, self._on_access, kind, begin=addr, end=end)
            self._flush()
            return True

    def remove_watchpoint(self, kind: WatchKind, addr: int, length: int) -> bool:
        with self._lock:
            hook = self._watchpoints.pop((kind, addr, length), None)
            if hook is None:
                return False
            self._uc.hook_del(hook)
            self._flush()
            return True

    def set_single_step(self, enabled: bool) -> None:
        with self._lock:
            if enabled and self._step_hook is None:
                self._step_seen = 0
                self._step_hook = self._uc.hook_add(UC_HOOK_CODE, self._on_step, begin=1, end=0)
                self._flush()
            elif not enabled and self._step_hook is not None:
                self._uc.hook_del(self._step_hook)
                self._step_hook = None
                self._flush()

    @property
    def stopped(self) -> DebugStop | None:
        return self._stopped

    def translate(self, va: int) -> int | None:
        """``va`` through the engine's own MMU as the hart sees it now (whatever paging mode the
        engine runs, Sv57 included), readable or executable; None where it would fault, or
        where this unicorn has no ``uc_vmem_translate``."""
        if _vmem_translate is None:
            return None
        out = ctypes.c_uint64()
        with self._lock:
            handle = getattr(self._uc, "_uch", None)
            for prot in (UC_PROT_READ, UC_PROT_EXEC):
                if _vmem_translate(handle, va & ((1 << 64) - 1), prot, ctypes.byref(out)) == 0:
                    return out.value
        return None

    def release(self) -> None:
        self._stopped = None
        self._released.set()

    def clear(self) -> None:
        with self._lock:
            for hook in self._breakpoints.values():
                self._uc.hook_del(hook)
            for hook in self._watchpoints.values():
                self._uc.hook_del(hook)
            self._breakpoints.clear()
            self._hardware.clear()
            self._software.clear()
            self._watchpoints.clear()
            self.set_single_step(False)
            self._flush()
        self.release()

    @property
    def active(self) -> bool:
        """Anything set: breakpoints, watchpoints, a step."""
        return bool(self._breakpoints or self._watchpoints or self._step_hook is not None)

    # -- called by the hart around a slice ----------------------------------------------------------

    def before_slice(self) -> AxVCpuExitReason | None:
        """Nothing (after a short wait) while a stop is held: the hart stays out of the engine."""
        if self._stopped is None:
            return None
        self._released.wait(HELD_WAIT_SECONDS)
        return Nothing() if self._stopped is not None else None

    def after_slice(self, exit_reason: AxVCpuExitReason) -> AxVCpuExitReason:
        """A stop recorded during the slice becomes Nothing, held, and told to the listener."""
        hit, self._hit = self._hit, None
        if hit is None:
            return exit_reason
        if hit.reason is StopReason.STEP or self._step_hook is not None:
            self.set_single_step(False)  # one-shot, whatever ended it
        self._released.clear()
        hit = DebugStop(hit.reason, self._uc.reg_read(rc.UC_RISCV_REG_PC), hit.watch)  # where it stands now
        self._stopped = hit
        listener = self._listener
        if listener is not None:
            listener(hit)
        return Nothing()

    # -- engine callbacks (inside emu_start, on the hart's thread) ---------------------------------

    def _on_breakpoint(self, uc: Any, addr: int, _size: int, _data: object) -> None:
        if self._hit is None and addr in self._breakpoints:
            self._hit = DebugStop(StopReason.BREAKPOINT, addr)
            uc.emu_stop()

    def _on_step(self, uc: Any, addr: int, _size: int, _data: object) -> None:
        self._step_seen += 1
        if self._step_seen >= 2 and self._hit is None:
            self._hit = DebugStop(StopReason.STEP, addr)
            uc.emu_stop()

    def _on_access(self, uc: Any, _access: int, addr: int, _size: int, _value: int, kind: WatchKind) -> None:
        if self._hit is None:
            self._hit = DebugStop(StopReason.WATCHPOINT, 0, (kind, addr))
            uc.emu_stop()

    def _flush(self) -> None:
        """Retranslate: hooks apply only to code translated after they change."""
        self._uc.ctl_flush_tb()
