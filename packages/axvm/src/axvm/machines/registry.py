"""Which machine a VM of each architecture is: the table ``AxVM`` and the image planner consult.

The machines import only the machine interface (``axvm.machine``), the device manager, the
device builders and the config; nothing here or below imports the VM (import-linter holds it).
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Arch
from ..machine import GenericMachine, Machine


# Each machine's modules (its devices, tables, device tree writer) are imported by its factory,
# so a process that runs riscv VMs never loads the x86 or arm machine.
def _x86_machine() -> Machine:
    from .x86.machine import X86Machine

    return X86Machine()


def _riscv_machine() -> Machine:
    from .riscv.machine import RiscvVirtMachine

    return RiscvVirtMachine()


def _arm_machine() -> Machine:
    from .arm.machine import ArmVirtMachine

    return ArmVirtMachine()


MACHINES: dict[Arch, Callable[[], Machine]] = {
    Arch.X86_64: _x86_machine,
    Arch.RISCV64: _riscv_machine,
    Arch.AARCH64: _arm_machine,
}
"""A new machine for each VM (a machine keeps its VM's interrupt controllers)."""


def machine_for(arch: Arch) -> Machine:
    """The machine for ``arch``; a generic one (numbered interrupt lines, nothing else) where
    there is no machine model yet."""
    factory = MACHINES.get(arch)
    return factory() if factory is not None else GenericMachine(arch)
