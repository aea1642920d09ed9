"""``attach_debugger``: the backend's debug controls for a vCPU, attached to it.

Kept out of the backends' vCPU modules: a debugger wraps the engine from outside (the soft
backend's unicorn hooks, KVM_SET_GUEST_DEBUG), and ``VCpu.run`` consults it only when one is
attached. Backends are imported here only when the vCPU is theirs."""

from __future__ import annotations

from ..debug import Debugger
from ..vcpu import VCpu


class DebugUnsupported(Exception):
    """This vCPU's backend has no debug controls."""


def attach_debugger(vcpu: VCpu) -> Debugger:
    """The vCPU's debugger (a ``GuestDebug``), created and attached on first use."""
    if vcpu.debug is not None:
        return vcpu.debug
    arch = vcpu.arch
    module = type(arch).__module__
    debug: Debugger
    if module.endswith(".soft.riscv64"):
        from .soft.riscv_debug import HartDebug

        debug = HartDebug.for_hart(arch)
    elif module.endswith(".kvm.vcpu"):
        from .kvm.debug import KvmDebug

        debug = KvmDebug.for_vcpu(arch)
    else:
        raise DebugUnsupported(f"{type(arch).__name__}: no debug controls on this backend")
    vcpu.debug = debug
    return debug


def detach_debugger(vcpu: VCpu) -> None:
    """Remove every breakpoint, watchpoint and step, release a held stop, and take the debugger
    off: ``run`` then costs what it did before any debugger came."""
    debug = vcpu.debug
    if debug is None:
        return
    debug.clear()
    debug.set_listener(None)
    vcpu.debug = None
