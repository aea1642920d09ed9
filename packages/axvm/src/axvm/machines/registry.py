"""Which machine a VM of each architecture is: the table ``AxVM`` and the image planner consult.

The machines import only the machine interface (``axvm.machine``), the device manager, the
device builders and the config; nothing here or below imports the VM (import-linter holds it).
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Arch
from ..machine import GenericMachine, Machine
from .arm.machine import ArmVirtMachine
from .riscv.machine import RiscvVirtMachine
from .x86.machine import X86Machine

MACHINES: dict[Arch, Callable[[], Machine]] = {
    Arch.X86_64: X86Machine,
    Arch.RISCV64: RiscvVirtMachine,
    Arch.AARCH64: ArmVirtMachine,
}
"""A new machine for each VM (a machine keeps its VM's interrupt controllers)."""


def machine_for(arch: Arch) -> Machine:
    """The machine for ``arch``; a generic one (numbered interrupt lines, nothing else) where
    there is no machine model yet."""
    factory = MACHINES.get(arch)
    return factory() if factory is not None else GenericMachine(arch)
