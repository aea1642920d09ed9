"""The device manager: one VM's emulated devices, where they sit, which interrupts they use, and
the one way in for every guest access to them.

It owns the three buses and the device lock. Placement is checked here, for the config's
devices and the machine's own alike: a range over guest RAM or over another device, or an
interrupt another device already uses, is a ``PlacementError`` naming both devices (two devices
share an interrupt only when both were attached with ``shared_irqs``). Guest accesses come in
two ways and both end here, under the same lock: vCPU exits (``handle_exit``, from
``AxVM.run_vcpu``) and MMIO a backend serves inline from inside its run (``read``/``write``,
handed to the backend as its MMIO handler). The VMM's own device calls (console input, network
frames) take ``lock`` too, so device models need no locks of their own.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from axaddrspace import AccessWidth, AddrRange, AddrSpace, InclusiveRange
from axdevice import BaseDeviceOps, DeviceOverlapError, MmioBus, PortBus, SysRegBus
from axvcpu import AxVCpuExitReason

from .dispatch import DeviceBuses, Handled, handle_exit


class BusKind(enum.Enum):
    """Which bus a device sits on."""

    MMIO = "mmio"
    PORT = "port"
    SYSREG = "sysreg"


@dataclass(frozen=True)
class DeviceOwner:
    """Who placed a device, as messages name it."""

    label: str
    """"devices.emu_devices[1] 'b'" for a config entry, "the riscv64 machine's Plic ..." otherwise."""
    entry: int | None = None
    """The device's index in ``devices.emu_devices`` when the config placed it."""


class PlacementError(ValueError):
    """A device cannot be attached as asked. ``blame`` is the device to change (a config entry
    whenever one is involved), ``field`` the entry's field at fault (None: its whole entry)."""

    def __init__(self, message: str, blame: DeviceOwner, field: str | None = None) -> None:
        super().__init__(message)
        self.blame = blame
        self.field = field


@dataclass(frozen=True)
class UnhandledAccesses:
    """Guest accesses a bus answered itself because no device covered them."""

    reads: int
    writes: int


@dataclass(frozen=True)
class _IrqClaim:
    owner: DeviceOwner
    shared: bool


class DeviceManager:
    """The buses, the device lock, placement and interrupt allocation of one VM."""

    def __init__(self, ram: Iterable[AddrRange] = ()) -> None:
        """``ram``: guest RAM as the config lays it out; no MMIO device may cover any of it."""
        self.buses = DeviceBuses()
        self.lock = threading.Lock()
        """Held for every device access: vCPU exits, inline MMIO, and the VMM's own calls."""
        self._ram = list(ram)
        self._owners: dict[int, DeviceOwner] = {}  # id() of each attached device
        self._irqs: dict[int, list[_IrqClaim]] = {}

    def bus(self, kind: BusKind) -> MmioBus | PortBus | SysRegBus:
        if kind is BusKind.MMIO:
            return self.buses.mmio
        return self.buses.port if kind is BusKind.PORT else self.buses.sysreg

    # -- placement and interrupts ------------------------------------------------------------

    def attach(
        self,
        device: BaseDeviceOps,
        kind: BusKind,
        owner: DeviceOwner,
        irqs: Sequence[int] = (),
        *,
        shared_irqs: bool = False,
        over_ram: bool = False,
    ) -> None:
        """Put ``device`` on its bus and give it ``irqs``, or change nothing and raise
        PlacementError (over RAM, over another device, an interrupt in use). ``over_ram`` skips
        the RAM check, for a machine's own device at its board's fixed address: the config's
        RAM regions are not held to the board's memory map."""
        device_range = device.address_range
        if kind is BusKind.MMIO and isinstance(device_range, AddrRange) and not over_ram:  # others: the bus refuses
            for ram in self._ram:
                if ram.overlaps(device_range):
                    raise PlacementError(f"MMIO range {device_range} overlaps guest RAM {ram}", owner)
        collision = self._irq_collision(owner, irqs, shared_irqs)
        bus = self.bus(kind)
        try:
            bus.add(device)
        except DeviceOverlapError as error:
            other = self._owner_overlapping(bus, device)
            raise PlacementError(f"{error}, placed by {other.label}; expected another base_gpa", owner) from None
        if collision is not None:
            bus.remove(device)
            raise collision
        self._owners[id(device)] = owner
        for irq in irqs:
            self._irqs.setdefault(irq, []).append(_IrqClaim(owner, shared_irqs))

    def detach(self, device: BaseDeviceOps, kind: BusKind) -> None:
        """Take ``device`` off its bus and free its interrupts (a device added at run time)."""
        self.bus(kind).remove(device)
        owner = self._owners.pop(id(device), None)
        for irq, claims in list(self._irqs.items()):
            kept = [claim for claim in claims if claim.owner is not owner]
            if kept:
                self._irqs[irq] = kept
            else:
                del self._irqs[irq]

    def is_taken(self, device: BaseDeviceOps, kind: BusKind) -> bool:
        """Whether ``device``'s range overlaps a device already on its bus (a machine's own
        device then yields to the one the config placed there)."""
        return any(_overlap(other.address_range, device.address_range) for other in self.bus(kind).devices)

    def _irq_collision(self, owner: DeviceOwner, irqs: Sequence[int], shared: bool) -> PlacementError | None:
        for irq in irqs:
            for claim in self._irqs.get(irq, ()):
                if shared and claim.shared:
                    continue
                # Blame a config entry whenever one is involved: that is what a user can change.
                blame, other = owner, claim.owner
                if owner.entry is None and claim.owner.entry is not None:
                    blame, other = claim.owner, owner
                return PlacementError(
                    f"irq {irq} is also the interrupt of {other.label}; expected an irq_id no other device uses",
                    blame,
                    "irq_id",
                )
        return None

    def _owner_overlapping(self, bus: MmioBus | PortBus | SysRegBus, device: BaseDeviceOps) -> DeviceOwner:
        for other in bus.devices:
            if other is not device and _overlap(other.address_range, device.address_range):
                return self._owners.get(id(other), DeviceOwner("a device placed by hand"))
        return DeviceOwner("another device")

    def owner(self, device: BaseDeviceOps) -> DeviceOwner | None:
        return self._owners.get(id(device))

    @property
    def interrupts(self) -> dict[int, tuple[str, ...]]:
        """Each interrupt in use, with the devices using it (by label)."""
        return {irq: tuple(claim.owner.label for claim in claims) for irq, claims in sorted(self._irqs.items())}

    def mmio_windows(self) -> list[tuple[int, int]]:
        """(start, size) of every MMIO device: what a backend serving MMIO inline must trap."""
        return [(device.address_range.start, device.address_range.size) for device in self.buses.mmio.devices]

    # -- guest accesses ------------------------------------------------------------------------

    def handle_exit(self, exit_reason: AxVCpuExitReason, addrspace: AddrSpace | None = None) -> Handled | None:
        """One vCPU exit, under the device lock: see ``dispatch.handle_exit``."""
        with self.lock:
            return handle_exit(exit_reason, self.buses, addrspace)

    def read(self, addr: int, width: AccessWidth) -> int:
        """An MMIO read a backend serves inline, under the device lock."""
        with self.lock:
            return self.buses.mmio.read(addr, width)

    def write(self, addr: int, width: AccessWidth, value: int) -> None:
        """An MMIO write a backend serves inline, under the device lock."""
        with self.lock:
            self.buses.mmio.write(addr, width, value)

    # -- counters ------------------------------------------------------------------------------

    def count_port_misses(self, reads: int, writes: int) -> None:
        """Port accesses no device covered that the backend answered itself (its quiet ports),
        counted as the bus counts its own."""
        with self.lock:
            self.buses.port.unhandled_reads += reads
            self.buses.port.unhandled_writes += writes

    def ports_without_devices(self) -> bytes:
        """A bitmap of the x86 ports no device covers (bit ``port % 8`` of byte ``port // 8``)."""
        bits = bytearray(b"\xff" * (PORT_SPACE // 8))
        for device in self.buses.port.devices:
            rng = device.address_range
            for port in range(max(rng.start, 0), min(rng.end + 1, PORT_SPACE)):  # PortRange ends are inclusive
                bits[port // 8] &= ~(1 << (port % 8))
        return bytes(bits)

    def device_errors(self) -> dict[str, int]:
        """Guest accesses that raised inside a device, per device (device bugs)."""
        return self.buses.device_errors()

    def unhandled(self) -> dict[BusKind, UnhandledAccesses]:
        """Per bus, guest accesses no device covered (answered all-ones, writes dropped)."""
        return {
            kind: UnhandledAccesses(self.bus(kind).unhandled_reads, self.bus(kind).unhandled_writes) for kind in BusKind
        }


PORT_SPACE = 0x1_0000
"""x86 I/O ports 0..0xffff."""


def _overlap(first: AddrRange | InclusiveRange, second: AddrRange | InclusiveRange) -> bool:
    """Whether two device ranges share an address (ranges of different kinds never share a bus)."""
    if isinstance(first, AddrRange) and isinstance(second, AddrRange):
        return first.overlaps(second)
    if isinstance(first, InclusiveRange) and isinstance(second, InclusiveRange):
        return first.overlaps(second)
    return False
