"""``VmDebugTarget``: the ``DebugTarget`` a gdb session drives, over one VM of a ``VmManager``.

Theory of operation. gdb talks to a stopped VM: the manager's pause (every vCPU parked at the
gate, the guest clock stopped). Registers are read on the parked vCPU's own thread (the
manager's ``debug_call``) and cached until the VM runs again; memory is read by virtual
address, each page walked through that vCPU's page tables (``guest_inspect.translate``; a
riscv hart in M mode is untranslated) and then read from guest RAM, never from a device window.
Breakpoints, watchpoints and single step are the vCPUs' own debuggers (``axvcpu.debug``),
set on every vCPU, since gdb's breakpoints are the program's and any vCPU may run it.

A stop comes from a vCPU thread through ``on_stop`` (a breakpoint, a watchpoint, the end of a
step); the server then pauses the whole VM and tells the session. Continue releases every
vCPU's hold and resumes the VM; a step arms the one vCPU and resumes the VM (the others run
until the stepped one stops, as gdb's default scheduler-locking allows).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from axvcpu import VCpu
from axvcpu.backends.debug import DebugUnsupported, attach_debugger, detach_debugger
from axvcpu.debug import DebugStop, WatchKind

from .. import guest_inspect
from ..vmtypes import ManagerError, VmInfo, VMState
from .session import BreakKind
from .target_xml import DESCRIPTIONS, Register, TargetDescription

if TYPE_CHECKING:
    from axvm import AxVM

log = logging.getLogger(__name__)

T = TypeVar("T")


class DebugManager(Protocol):
    """What the stub needs of ``axvisor.manager.VmManager`` (named here, not imported: the
    manager starts the stub)."""

    def get(self, vm_id: int) -> VmInfo: ...
    def start(self, vm_id: int, paused: bool = ...) -> VmInfo: ...
    def pause(self, vm_id: int, timeout: float = ...) -> VmInfo: ...
    def resume(self, vm_id: int) -> VmInfo: ...
    def stop(self, vm_id: int, force: bool = ..., graceful: bool = ..., timeout: float = ...) -> VmInfo: ...
    def debug_call(self, vm_id: int, vcpu: int, function: Callable[[AxVM, int], T]) -> T: ...


PAGE = 4096
_PRIV_M = 3
_FCSR_FIELDS = {"fflags": (0, 0x1F), "frm": (5, 0x7)}


class VmDebugTarget:
    """One VM seen by gdb; ``on_stop(vcpu, stop)`` hears every debug stop of its vCPUs."""

    def __init__(self, manager: DebugManager, vm_id: int, on_stop: Callable[[int, DebugStop], None]) -> None:
        self.manager = manager
        self.vm_id = vm_id
        info = manager.get(vm_id)
        self.arch = info.arch
        if self.arch not in DESCRIPTIONS:
            raise DebugUnsupported(f"no gdb target description for {self.arch} guests")
        self.description: TargetDescription = DESCRIPTIONS[self.arch]
        self._cpus = info.cpus
        self._on_stop = on_stop
        self._cache: dict[int, dict[str, int | None]] = {}
        self._breakpoints: set[tuple[BreakKind, int, int]] = set()

    # -- on the vCPU threads --------------------------------------------------------------------

    def _call(self, vcpu: int, function: Callable[[AxVM, int], Any]) -> Any:
        return self.manager.debug_call(self.vm_id, vcpu, function)

    def _each_vcpu(self, function: Callable[[VCpu, int], Any]) -> list[Any]:
        return [self._call(index, lambda vm, n: function(vm.vcpus[n], n)) for index in range(self._cpus)]

    def _debugger(self, vcpu: VCpu, index: int) -> Any:
        debug = attach_debugger(vcpu)
        debug.set_listener(lambda stop: self._on_stop(index, stop))
        return debug

    # -- DebugTarget ------------------------------------------------------------------------------

    def threads(self) -> list[int]:
        return list(range(self._cpus))

    def read_register(self, vcpu: int, register: Register) -> int | None:
        values = self._cache.get(vcpu)
        if values is None:
            registers = self.description.registers
            values = self._call(vcpu, lambda vm, n: {r.name: _read(vm.vcpus[n], r) for r in registers})
            self._cache[vcpu] = values
        return values.get(register.name)

    def write_register(self, vcpu: int, register: Register, value: int) -> bool:
        if register.source is None:
            return False
        self._cache.pop(vcpu, None)
        return bool(self._call(vcpu, lambda vm, n: _write(vm.vcpus[n], register, value)))

    def read_memory(self, vcpu: int, addr: int, length: int) -> bytes:
        return bytes(self._call(vcpu, lambda vm, n: self._access(vm, n, addr, length, None)))

    def write_memory(self, vcpu: int, addr: int, data: bytes) -> bool:
        written = self._call(vcpu, lambda vm, n: self._access(vm, n, addr, len(data), data))
        if written:  # code may have changed under translated blocks: every engine drops them
            self._each_vcpu(lambda v, _n: _flush(v))
        return bool(written) and len(written) == len(data)

    def set_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool | None:
        try:
            done = self._each_vcpu(lambda v, n: _insert(self._debugger(v, n), kind, addr, length))
        except DebugUnsupported:
            return None
        if not all(done):
            self._each_vcpu(lambda v, n: _remove(self._debugger(v, n), kind, addr, length))
            return None if kind >= BreakKind.WRITE_WATCH else False
        self._breakpoints.add((kind, addr, length))
        return True

    def remove_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool | None:
        if (kind, addr, length) not in self._breakpoints:
            return False
        self._breakpoints.discard((kind, addr, length))
        self._each_vcpu(lambda v, n: _remove(self._debugger(v, n), kind, addr, length))
        return True

    def prepare_resume(self, step: int | None) -> None:
        """Arm the step (``step``'s vCPU only) and release every held stop; the VM is still paused."""
        self._cache.clear()

        def arm(vcpu: VCpu, index: int) -> None:
            if vcpu.debug is None and index != step:
                return
            debug = self._debugger(vcpu, index)
            debug.set_single_step(index == step)
            debug.release()

        self._each_vcpu(arm)

    def resume(self, step: int | None) -> None:
        self.prepare_resume(step)
        self._resume_vm()

    def interrupt(self) -> None:
        """The server pauses the VM and reports SIGINT (it owns the stop path)."""

    def detach(self) -> None:
        """Every breakpoint removed, every vCPU's debugger taken off, the VM running again."""
        self._cache.clear()
        self._breakpoints.clear()
        if self.manager.get(self.vm_id).state is VMState.PAUSED:
            self._each_vcpu(lambda v, _n: detach_debugger(v))
            self._resume_vm()

    def kill(self) -> None:
        try:
            self.manager.stop(self.vm_id, force=True)
        except ManagerError as error:
            log.info("gdb kill: %s", error)

    def _resume_vm(self) -> None:
        if self.manager.get(self.vm_id).state is VMState.PAUSED:
            self.manager.resume(self.vm_id)

    # -- memory -----------------------------------------------------------------------------------

    def _access(self, vm: AxVM, index: int, addr: int, length: int, data: bytes | None) -> bytes:
        """Read (``data`` None) or write ``length`` bytes at virtual ``addr``, page by page; what
        was read (or written) before the first page that is unmapped or not RAM."""
        memory = vm.addrspace.memory
        vcpu = vm.vcpus[index]
        done = bytearray()
        while len(done) < length:
            va = (addr + len(done)) & ((1 << 64) - 1)
            chunk = min(length - len(done), PAGE - (va % PAGE))
            gpa = self._gpa(vcpu, memory, va)
            if gpa is None or not memory.contains(gpa, chunk):
                break
            if data is None:
                done += memory.read(gpa, chunk)
            else:
                piece = data[len(done) : len(done) + chunk]
                try:
                    memory.write(gpa, piece)
                except Exception:  # a read-only region (a ROM): stop here, as at a fault
                    break
                done += piece
        return bytes(done)

    def _gpa(self, vcpu: VCpu, memory: Any, va: int) -> int | None:
        """The backend's own MMU first (unicorn's walk knows every mode it runs, Sv57 too);
        else the VMM's walker (x86 4-level, riscv Sv39/Sv48/Sv57)."""
        try:
            gpa = attach_debugger(vcpu).translate(va)
        except DebugUnsupported:
            gpa = None
        if gpa is not None:
            return gpa
        if self.arch == "riscv64" and vcpu.get_register("priv") == _PRIV_M:
            return va  # M mode is not translated (MPRV aside)
        try:
            return guest_inspect.translate(vcpu, memory, self.arch, va).gpa
        except ManagerError:  # a paging mode the walker does not know: nothing to read there
            return None


def _read(vcpu: VCpu, register: Register) -> int | None:
    if register.source is None:
        return None
    field = _FCSR_FIELDS.get(register.source)
    try:
        if field is not None:
            shift, mask = field
            return (vcpu.get_register("fcsr") >> shift) & mask
        return vcpu.get_register(register.source)
    except (KeyError, ValueError, RuntimeError):  # a register this backend does not have
        return None


def _write(vcpu: VCpu, register: Register, value: int) -> bool:
    assert register.source is not None
    field = _FCSR_FIELDS.get(register.source)
    try:
        if field is not None:
            shift, mask = field
            fcsr = vcpu.get_register("fcsr")
            vcpu.set_register("fcsr", (fcsr & ~(mask << shift)) | ((value & mask) << shift))
        else:
            vcpu.set_register(register.source, value)
        return True
    except (KeyError, ValueError, RuntimeError):
        return False


def _insert(debug: Any, kind: BreakKind, addr: int, length: int) -> bool:
    if kind in (BreakKind.SOFTWARE, BreakKind.HARDWARE):
        return bool(debug.insert_breakpoint(addr, kind is BreakKind.HARDWARE))
    return bool(debug.insert_watchpoint(WatchKind(int(kind)), addr, length))


def _remove(debug: Any, kind: BreakKind, addr: int, length: int) -> bool:
    if kind in (BreakKind.SOFTWARE, BreakKind.HARDWARE):
        return bool(debug.remove_breakpoint(addr, kind is BreakKind.HARDWARE))
    return bool(debug.remove_watchpoint(WatchKind(int(kind)), addr, length))


def _flush(vcpu: VCpu) -> None:
    flush = getattr(vcpu.arch, "flush_translations", None)
    if flush is not None:
        flush()
