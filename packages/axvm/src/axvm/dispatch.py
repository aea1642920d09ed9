"""Exit dispatch: what the VM does about one vCPU exit, as a plain function.

Accesses to devices (MMIO, port, system register) and lazily allocated memory are handled
here, inline on the vCPU's thread, and never leave the VM; everything else (Halt, Hypercall,
CpuUp, SystemDown, failures) is returned for the VMM to decide. No backend is needed to test
it: hand it an exit and the buses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from axaddrspace import AccessWidth, AddrSpace, sign_extend
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

    def device_errors(self) -> dict[str, int]:
        """Guest accesses that raised inside a device, per device: device bugs, reported by the VMM."""
        return {**self.mmio.device_error_counts, **self.port.device_error_counts, **self.sysreg.device_error_counts}

SYSREG_WIDTH = AccessWidth.QWORD
"""System registers are accessed whole, at 64 bits."""


@dataclass(frozen=True, slots=True)
class Handled:
    """The exit was dealt with; ``read_value`` answers a read exit."""

    read_value: int | None = None


HANDLED = Handled()


def _mmio_read(exit_reason: MmioRead, buses: DeviceBuses, addrspace: AddrSpace | None) -> Handled:
    value = buses.mmio.read(exit_reason.addr, exit_reason.width)
    if exit_reason.signed:
        value = sign_extend(value, exit_reason.width.bits, exit_reason.reg_width.bits)
    return Handled(value)


def _mmio_write(exit_reason: MmioWrite, buses: DeviceBuses, addrspace: AddrSpace | None) -> Handled:
    buses.mmio.write(exit_reason.addr, exit_reason.width, exit_reason.data)
    return HANDLED


def _io_read(exit_reason: IoRead, buses: DeviceBuses, addrspace: AddrSpace | None) -> Handled:
    return Handled(buses.port.read(exit_reason.port, exit_reason.width))


def _io_write(exit_reason: IoWrite, buses: DeviceBuses, addrspace: AddrSpace | None) -> Handled:
    buses.port.write(exit_reason.port, exit_reason.width, exit_reason.data)
    return HANDLED


def _sysreg_read(exit_reason: SysRegRead, buses: DeviceBuses, addrspace: AddrSpace | None) -> Handled:
    return Handled(buses.sysreg.read(exit_reason.addr, SYSREG_WIDTH))


def _sysreg_write(exit_reason: SysRegWrite, buses: DeviceBuses, addrspace: AddrSpace | None) -> Handled:
    buses.sysreg.write(exit_reason.addr, SYSREG_WIDTH, exit_reason.value)
    return HANDLED


def _page_fault(exit_reason: NestedPageFault, buses: DeviceBuses, addrspace: AddrSpace | None) -> Handled | None:
    if addrspace is not None and addrspace.handle_page_fault(exit_reason.addr, exit_reason.access_flags):
        return HANDLED
    return None


def _nothing(exit_reason: Nothing, buses: DeviceBuses, addrspace: AddrSpace | None) -> Handled:
    return HANDLED


_HANDLERS: dict[type, Callable[[Any, DeviceBuses, AddrSpace | None], Handled | None]] = {
    IoWrite: _io_write,
    IoRead: _io_read,
    MmioWrite: _mmio_write,
    MmioRead: _mmio_read,
    SysRegRead: _sysreg_read,
    SysRegWrite: _sysreg_write,
    NestedPageFault: _page_fault,
    Nothing: _nothing,
}
"""One handler per exit type the VM deals with itself: a dict lookup per exit, not a chain of
isinstance checks, since this runs on every exit."""


def handle_exit(exit_reason: AxVCpuExitReason, buses: DeviceBuses,
                addrspace: AddrSpace | None = None) -> Handled | None:
    """Handle ``exit_reason`` if it is the VM's business; None hands it to the caller."""
    handler = _HANDLERS.get(type(exit_reason))
    return None if handler is None else handler(exit_reason, buses, addrspace)
