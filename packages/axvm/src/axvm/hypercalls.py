"""AxVisor's hypercalls (axhvc), served by the VM: codes, arguments, results, per-arch registers.

Theory of operation. A guest calls the hypervisor with its architecture's instruction: riscv64
``ecall`` with a7 = ``EID_HVC`` (0x485643, "HVC"), the code in a6 and arguments in a0..a5;
aarch64 ``hvc #0`` with the code in x0 and arguments in x1..x6; x86_64 ``vmcall`` with the code
in rax and arguments in rdi, rsi, rdx, rcx (on KVM, which keeps ``vmcall`` in the kernel, the same
registers and ``out %eax, $0xe0``: the x86 machine's doorbell). The vCPU reports a
``Hypercall(nr, args)`` exit;
``HypercallTable.handle`` runs the handler for the code on the vCPU's thread and writes the
result where the guest reads it: riscv64 an SBI return (a0 = error, a1 = value), aarch64 x0 and
x86_64 rax (the value, or the negative error code).

Everything here is guest input: an unknown code is NOT_SUPPORTED, a pointer outside guest RAM
INVALID_ADDRESS, a size out of bounds INVALID_PARAM; a handler never raises into the VM loop (a
Python handler that raises is logged and answers FAILED).

Handlers: ``HyperVisorDebug`` (2) logs its arguments and counts; the IVC calls (3..6) are the
``ivc`` module's; ``HypervisorDisable`` and ``PrepareDisable`` (0, 1) make sense only for a
type-1 hypervisor that hands the machine to its guest, and answer NOT_SUPPORTED. Anyone may add
a handler for another code (``axvisor.VM.on_hypercall``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from axvcpu import Hypercall, VCpu
from axvcpu.riscv_sbi import EID_HVC

log = logging.getLogger(__name__)

__all__ = ["EID_HVC", "HvError", "HyperCallCode", "HypercallContext", "HypercallError", "HypercallTable"]


class HyperCallCode(enum.IntEnum):
    """axhvc's codes, AxVisor's names."""

    HypervisorDisable = 0
    HyperVisorPrepareDisable = 1
    HyperVisorDebug = 2
    HIVCPublishChannel = 3
    HIVCSubscribChannel = 4
    HIVCUnPublishChannel = 5
    HIVCUnSubscribChannel = 6


class HvError(enum.IntEnum):
    """Why a hypercall failed; the values are SBI's error codes (RISC-V SBI 3.0 table 1), which
    riscv64 guests get in a0 and aarch64/x86_64 guests as the negative return value."""

    FAILED = -1
    NOT_SUPPORTED = -2
    INVALID_PARAM = -3
    DENIED = -4
    INVALID_ADDRESS = -5
    ALREADY_AVAILABLE = -6


class HypercallError(Exception):
    """A handler's refusal: ``error`` goes back to the guest, the message to the VMM's log."""

    def __init__(self, error: HvError, message: str) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class HypercallContext:
    """What a handler sees: the VM's id, the calling vCPU's index and the call itself."""

    vm_id: int
    vcpu_id: int
    call: Hypercall


HypercallHandler = Callable[[HypercallContext], int]
"""``handler(context) -> value``; raise ``HypercallError`` to answer an error."""

_U64 = (1 << 64) - 1


def write_result(vcpu: VCpu, arch: str, value: int | None, error: HvError | None) -> None:
    """Put a hypercall's outcome where ``arch``'s guests read it (see the module docstring)."""
    if arch == "riscv64":
        vcpu.set_register("a0", (error or 0) & _U64)
        if error is None:
            vcpu.set_register("a1", (value or 0) & _U64)
        return
    register = {"aarch64": "x0", "x86_64": "rax"}.get(arch)
    if register is None:
        raise ValueError(f"no hypercall return register for {arch} guests")
    vcpu.set_register(register, (int(error) if error is not None else value or 0) & _U64)


class HypercallTable:
    """One VM's hypercall handlers by code, with counts of the calls it served."""

    def __init__(self, vm_id: int, arch: str) -> None:
        self.vm_id = vm_id
        self.arch = arch
        self._handlers: dict[int, HypercallHandler] = {HyperCallCode.HyperVisorDebug: self._debug}
        self.counts: dict[int, int] = {}
        self.debug_calls: list[tuple[int, ...]] = []
        """The arguments of the last ``DEBUG_KEPT`` HyperVisorDebug calls, oldest first."""

    DEBUG_KEPT = 64

    def register(self, code: int, handler: HypercallHandler) -> None:
        """Serve ``code`` with ``handler`` (replacing the one it had)."""
        self._handlers[code] = handler

    def unregister(self, code: int) -> None:
        self._handlers.pop(code, None)

    def handler_for(self, code: int) -> HypercallHandler | None:
        return self._handlers.get(code)

    def handle(self, vcpu: VCpu, vcpu_id: int, call: Hypercall) -> None:
        """Serve ``call`` on the calling vCPU's thread and write its result into the vCPU."""
        self.counts[call.nr] = self.counts.get(call.nr, 0) + 1
        handler = self._handlers.get(call.nr)
        value: int | None = None
        error: HvError | None = None
        if handler is None:
            error = HvError.NOT_SUPPORTED
        else:
            try:
                value = handler(HypercallContext(self.vm_id, vcpu_id, call))
            except HypercallError as refusal:
                log.info("VM %d vCPU %d: hypercall %d refused: %s", self.vm_id, vcpu_id, call.nr, refusal)
                error = refusal.error
            except Exception:
                log.exception("VM %d vCPU %d: hypercall %d handler failed", self.vm_id, vcpu_id, call.nr)
                error = HvError.FAILED
            else:
                if not isinstance(value, int):
                    log.warning("VM %d: hypercall %d handler returned %r, not an int", self.vm_id, call.nr, value)
                    value, error = None, HvError.FAILED
        write_result(vcpu, self.arch, value, error)

    def _debug(self, context: HypercallContext) -> int:
        args = tuple(context.call.args)
        log.info("VM %d vCPU %d: HyperVisorDebug %s", self.vm_id, context.vcpu_id, " ".join(f"{a:#x}" for a in args))
        self.debug_calls.append(args)
        del self.debug_calls[: -self.DEBUG_KEPT]
        return 0
