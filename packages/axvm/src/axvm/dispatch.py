"""Exit dispatch: what the VM does about one vCPU exit, as a plain function.

Accesses to devices (MMIO, port, system register) and lazily allocated memory are handled
here, inline on the vCPU's thread, and never leave the VM; everything else (Halt, Hypercall,
CpuUp, SystemDown, failures) is returned for the VMM to decide. No backend is needed to test
it: hand it an exit and the buses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from axaddrspace import AccessWidth, AddrSpace
from axdevice import MmioBus, PortBus, SysRegBus
from axvcpu import (
    AxVCpuExitReason,
    IoRead,
    IoWrite,
    MmioRead,
    MmioWrite,
    NestedPageFault,
    Nothing,
    SysRegRead,
    SysRegWrite,
)


@dataclass
class DeviceBuses:
    """The three buses a VM's emulated devices sit on."""

    mmio: MmioBus = field(default_factory=MmioBus)
    port: PortBus = field(default_factory=PortBus)
    sysreg: SysRegBus = field(default_factory=SysRegBus)

SYSREG_WIDTH = AccessWidth.QWORD
"""System registers are accessed whole, at 64 bits."""


@dataclass(frozen=True, slots=True)
class Handled:
    """The exit was dealt with; ``read_value`` answers a read exit."""

    read_value: int | None = None


HANDLED = Handled()


def sign_extend(value: int, bits: int, to_bits: int) -> int:
    """Sign-extend a ``bits``-wide value to ``to_bits`` (a signed load such as riscv's lb)."""
    value &= (1 << bits) - 1
    if value >> (bits - 1):
        value -= 1 << bits
    return value & ((1 << to_bits) - 1)


def handle_exit(exit_reason: AxVCpuExitReason, buses: DeviceBuses,
                addrspace: AddrSpace | None = None) -> Handled | None:
    """Handle ``exit_reason`` if it is the VM's business; None hands it to the caller."""
    match exit_reason:
        case MmioRead(addr=addr, width=width, reg_width=reg_width, signed=signed):
            value = buses.mmio.read(addr, width)
            if signed:
                value = sign_extend(value, width.bits, reg_width.bits)
            return Handled(value)
        case MmioWrite(addr=addr, width=width, data=data):
            buses.mmio.write(addr, width, data)
            return HANDLED
        case IoRead(port=port, width=width):
            return Handled(buses.port.read(port, width))
        case IoWrite(port=port, width=width, data=data):
            buses.port.write(port, width, data)
            return HANDLED
        case SysRegRead(addr=addr):
            return Handled(buses.sysreg.read(addr, SYSREG_WIDTH))
        case SysRegWrite(addr=addr, value=value):
            buses.sysreg.write(addr, SYSREG_WIDTH, value)
            return HANDLED
        case NestedPageFault(addr=addr, access_flags=access):
            if addrspace is not None and addrspace.handle_page_fault(addr, access):
                return HANDLED
            return None
        case Nothing():
            return HANDLED
        case _:
            return None
