"""What differs between the machines a VM can be: platform devices, interrupt wiring, boot.

A machine is chosen by the config's architecture (``machines.registry``). It adds the devices
every such machine has (so a config written for AxVisor, which lists none of them, still gets a
console), says how a device's ``irq_id`` becomes an interrupt line, and prepares the vCPUs and
in-memory tables for the boot protocol the loader chose. It never sees the whole VM: only a
``BootTarget`` (guest memory, vCPUs, config, device manager, the backend's capabilities), and
every write to the guest RAM it reserves (``boot_areas``) is its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from axaddrspace import GuestMemory
from axdevice import IrqLine
from axvcpu import AxVCpuExitReason, Hypercall, VCpu

from .capabilities import BackendCapabilities
from .config import Arch, AxVMCrateConfig
from .device_manager import DeviceManager
from .devices import BuiltDevice, DeviceContext


@dataclass(frozen=True)
class BootPlan:
    """How the loaded images want to be entered.

    ``protocol``: "raw" (the config's entry point and the machine's own boot info), "linux"
    (Linux's boot protocol for the architecture, ``params`` = zero page or DTB address), "pvh"
    (x86 PVH, ``params`` = start_info), "firmware" (riscv/arm firmware entry with a DTB at
    ``params``). The machine writes what ``params`` points at when it prepares the boot.
    """

    entry: int
    protocol: str = "raw"
    params: int | None = None
    cmdline: bytes = b""
    setup_header: bytes | None = None
    """x86 "linux": the kernel's setup header (from its bzImage, or a minimal one for a vmlinux),
    which the machine copies into the zero page."""


@dataclass(frozen=True)
class BootArea:
    """Guest RAM the machine writes at boot (page tables, a device tree): images must stay out."""

    what: str
    gpa: int
    size: int


@dataclass(frozen=True)
class BootTarget:
    """The part of a VM a machine equips and boots."""

    config: AxVMCrateConfig
    memory: GuestMemory
    vcpus: Sequence[VCpu]
    devices: DeviceManager
    backend: BackendCapabilities


class Machine(Protocol):
    arch: Arch

    def irq_line(self, target: BootTarget, irq: int) -> IrqLine:
        """The line for a device's ``irq_id``; ValueError for one this machine does not have."""
        ...

    def boot_areas(self, config: AxVMCrateConfig) -> Sequence[BootArea]: ...

    def platform_devices(self, target: BootTarget, ctx: DeviceContext) -> Sequence[BuiltDevice]: ...

    def prepare_boot(self, target: BootTarget, plan: BootPlan) -> None: ...


@runtime_checkable
class VcpuRunHooks(Protocol):
    """A machine that takes part in running its vCPUs (arm virt: power states and PSCI calls
    answered by the VMM). ``AxVM.run_vcpu`` asks ``vcpu_enter`` before each run (an exit
    returned goes to the VMM instead of running) and hands it each exit the devices did not
    handle (None: handled, run on)."""

    def vcpu_enter(self, target: BootTarget, vcpu_id: int) -> AxVCpuExitReason | None: ...

    def vcpu_exit(self, target: BootTarget, vcpu_id: int,
                  exit_reason: AxVCpuExitReason) -> AxVCpuExitReason | None: ...


@runtime_checkable
class HypercallDoorbell(Protocol):
    """A machine whose guests call the hypervisor by writing an I/O port, because the
    architecture's instruction never reaches the VMM (x86 ``vmcall`` on KVM is served in the
    kernel). ``AxVM.run_vcpu`` turns a write to ``hypercall_port`` into ``doorbell_call``'s
    Hypercall before any device sees it, and ``HypercallTable.handle`` writes the result."""

    hypercall_port: int

    def doorbell_call(self, vcpu: VCpu) -> Hypercall: ...


class GenericMachine:
    """Interrupts straight to the backend's numbered lines, no platform devices, no register
    setup: for architectures without a machine model yet."""

    def __init__(self, arch: Arch) -> None:
        self.arch = arch

    def irq_line(self, target: BootTarget, irq: int) -> IrqLine:
        return target.backend.need_irq_lines(f"the {self.arch.value} machine").irq_line(irq)

    def boot_areas(self, config: AxVMCrateConfig) -> Sequence[BootArea]:
        return ()

    def platform_devices(self, target: BootTarget, ctx: DeviceContext) -> Sequence[BuiltDevice]:
        return ()

    def prepare_boot(self, target: BootTarget, plan: BootPlan) -> None:
        pass
