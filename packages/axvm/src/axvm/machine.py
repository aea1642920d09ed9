"""What differs between the machines a VM can be: platform devices, interrupt wiring, boot.

A machine is chosen by the config's architecture. It adds the devices every such machine has
(so a config written for AxVisor, which lists none of them, still gets a console), says how a
device's ``irq_id`` becomes an interrupt line, and prepares the vCPUs and in-memory tables for
the boot protocol the loader chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from axdevice import IrqLine

from .config import Arch, AxVMCrateConfig

if TYPE_CHECKING:
    from .devices import BuiltDevice, DeviceContext
    from .vm import AxVM


@dataclass(frozen=True)
class BootPlan:
    """How the loaded images want to be entered.

    ``protocol``: "raw" (the config's entry point and the machine's own boot info), "linux"
    (Linux's boot protocol for the architecture, ``params`` = zero page or DTB address), "pvh"
    (x86 PVH, ``params`` = start_info), "firmware" (riscv/arm firmware entry with a DTB at
    ``params``).
    """

    entry: int
    protocol: str = "raw"
    params: int | None = None
    cmdline: bytes = b""


@dataclass(frozen=True)
class BootArea:
    """Guest RAM the machine writes at boot (page tables, a device tree): images must stay out."""

    what: str
    gpa: int
    size: int


class Machine(Protocol):
    arch: Arch

    def irq_line(self, vm: AxVM, irq: int) -> IrqLine: ...

    def boot_areas(self, config: AxVMCrateConfig) -> Sequence[BootArea]: ...

    def platform_devices(self, ctx: DeviceContext) -> Sequence[BuiltDevice]: ...

    def prepare_boot(self, vm: AxVM, plan: BootPlan) -> None: ...


class GenericMachine:
    """Interrupts straight to the backend, no platform devices, no register setup: for
    architectures without a machine model yet and for scripted tests."""

    def __init__(self, arch: Arch) -> None:
        self.arch = arch

    def irq_line(self, vm: AxVM, irq: int) -> IrqLine:
        return vm.backend.irq_line(irq)

    def boot_areas(self, config: AxVMCrateConfig) -> Sequence[BootArea]:
        return ()

    def platform_devices(self, ctx: DeviceContext) -> Sequence[BuiltDevice]:
        return ()

    def prepare_boot(self, vm: AxVM, plan: BootPlan) -> None:
        pass


def machine_for(arch: Arch) -> Machine:
    if arch is Arch.X86_64:
        from .machines.x86.machine import X86Machine

        return X86Machine()
    if arch is Arch.RISCV64:
        from .machines.riscv.machine import RiscvVirtMachine

        return RiscvVirtMachine()
    return GenericMachine(arch)
