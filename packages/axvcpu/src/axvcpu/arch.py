"""The interface an execution backend implements for one vCPU (AxVisor's AxArchVCpu).

A backend (KVM, the unicorn software CPU, a scripted fake in tests) knows how to enter the
guest and decode why it came back; it knows nothing about devices or VMs. Register names are
the architecture's own ("rip", "rax" on x86_64; "pc", "a0" on riscv64), so the interface does
not assume x86.
"""

from __future__ import annotations

import abc
import time
from typing import TYPE_CHECKING

from axaddrspace import GuestPhysAddr, Stage2Mapper

if TYPE_CHECKING:
    from .exits import AxVCpuExitReason


class ArchVCpu(abc.ABC):
    """One backend vCPU. Methods are called from the vCPU's own thread, except inject_interrupt."""

    @abc.abstractmethod
    def setup(self, entry: GuestPhysAddr, stage2: Stage2Mapper | None) -> None:
        """Prepare to run from ``entry``; ``stage2`` is the VM's mapper where the backend needs it."""

    @abc.abstractmethod
    def run(self) -> AxVCpuExitReason:
        """Run guest code until the next exit and return it decoded."""

    @abc.abstractmethod
    def complete_read(self, value: int) -> None:
        """Answer the pending MmioRead, IoRead or SysRegRead with ``value`` before the next run."""

    @abc.abstractmethod
    def get_register(self, name: str) -> int: ...

    @abc.abstractmethod
    def set_register(self, name: str, value: int) -> None: ...

    @abc.abstractmethod
    def inject_interrupt(self, vector: int) -> None:
        """Deliver (or queue) interrupt ``vector``; may be called from another thread."""

    def wait_for_interrupt(self, timeout: float) -> bool:
        """Block after a Halt until an interrupt is pending for this vCPU, or ``timeout`` seconds.

        True if woken (an interrupt pending, or a kick), False if the timeout ended the wait: a
        caller, or a test, can tell a wake-up from a timeout. Backends that know their interrupt
        sources override this to wake at once; the default simply waits, so a halted vCPU never
        spins a host core.
        """
        time.sleep(timeout)
        return False

    def kick(self) -> None:
        """Make a run() in progress on another thread return soon (with Nothing); default no-op
        for backends whose run() always returns within a bounded slice."""

    def bind(self) -> None:
        """Attach to the current host thread; the default has nothing to attach."""

    def unbind(self) -> None:
        """Detach from the host thread."""

    def close(self) -> None:
        """Release host resources (file descriptors, engines)."""
