"""MMIO, port and system-register buses: find the device for an address and dispatch to it.

Devices sit in three parallel lists sorted by start address (starts, exclusive ends, devices),
so a lookup is one ``bisect`` plus one comparison; ranges never overlap (``add`` refuses), so the
only candidate is the device with the greatest start <= addr.

The guest picks every address and width, so nothing it does may raise out of the bus: an
access that hits no device, or straddles the end of one, reads all ones at its width and its
write is dropped (counted, logged once per address); a device whose handler raises is answered
the same way, counted per device (``device_error_counts``, for the VMM's report) and logged once
with its traceback. This is AxVisor's dispatcher without its panic on a miss.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from typing import ClassVar, Generic, TypeVar, cast

from axaddrspace import AccessWidth, AddrRange, InclusiveRange

from .device import BaseDeviceOps

logger = logging.getLogger(__name__)

# The guest chooses which addresses miss, so the set of already-logged addresses is bounded:
# past this many, a guest scanning its address space cannot grow VMM memory or flood the log.
MAX_LOGGED_ADDRESSES = 1024

_R = TypeVar("_R", AddrRange, InclusiveRange)


class DeviceOverlapError(ValueError):
    """A device's range overlaps one already on the bus."""


def _describe(device: BaseDeviceOps, rng: object) -> str:
    try:  # also used while reporting a failing device, whose properties may fail too
        kind = device.emu_type.name
    except Exception:
        kind = "?"
    return f"{type(device).__name__} ({kind}) at {rng!r}"


class _Bus(Generic[_R]):
    """One bus implementation; subclasses fix the range kind and the name used in logs."""

    _range_type: ClassVar[type]
    name: ClassVar[str]

    def __init__(self) -> None:
        self._starts: list[int] = []  # kept sorted, for bisect
        self._ends: list[int] = []  # exclusive, whatever the range kind
        self._devices: list[BaseDeviceOps] = []
        self._logged_addrs: set[int] = set()
        self._failed_devices: dict[int, str] = {}  # id() of attached devices that failed -> their name
        self.unhandled_reads = 0
        self.unhandled_writes = 0
        self.device_errors = 0
        self.device_error_counts: dict[str, int] = {}
        """Failed accesses per device ("mmio bus: Uart16550 (...) at [...)"), kept after a removal."""

    @staticmethod
    def _exclusive_end(rng: _R) -> int:
        raise NotImplementedError

    @property
    def devices(self) -> tuple[BaseDeviceOps, ...]:
        """The attached devices in address order."""
        return tuple(self._devices)

    def add(self, device: BaseDeviceOps) -> None:
        """Attach ``device``; DeviceOverlapError if its range overlaps an attached device."""
        rng = device.address_range
        if not isinstance(rng, self._range_type):
            raise TypeError(
                f"{self.name} bus needs a {self._range_type.__name__}, "
                f"{type(device).__name__} has {type(rng).__name__} {rng!r}"
            )
        start, end = rng.start, self._exclusive_end(cast(_R, rng))  # the isinstance above checked it
        if start == end:
            raise ValueError(f"{_describe(device, rng)} has an empty range")
        i = bisect_right(self._starts, start)
        for j in (i - 1, i):
            if 0 <= j < len(self._devices) and self._starts[j] < end and start < self._ends[j]:
                other = self._devices[j]
                raise DeviceOverlapError(
                    f"{self.name} bus: {_describe(device, rng)} overlaps "
                    f"{_describe(other, other.address_range)}"
                )
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self._devices.insert(i, device)

    def remove(self, device: BaseDeviceOps) -> None:
        """Detach ``device``; ValueError if it is not attached."""
        for i, attached in enumerate(self._devices):
            if attached is device:
                del self._starts[i], self._ends[i], self._devices[i]
                self._failed_devices.pop(id(device), None)  # the id may be reused by a later device
                return
        raise ValueError(f"{type(device).__name__} is not on the {self.name} bus")

    def find(self, addr: int) -> BaseDeviceOps | None:
        """The device whose range contains ``addr``, or None."""
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._ends[i]:
            return self._devices[i]
        return None

    def read(self, addr: int, width: AccessWidth) -> int:
        """Dispatch a guest read; always answers, masked to ``width``."""
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and int(addr) + width <= self._ends[i]:  # int: a GuestPhysAddr + width may leave 64 bits
            device = self._devices[i]
            try:
                return device.handle_read(addr, width) & width.mask
            except Exception:
                self._device_failed(device, "read", addr, width)
                return width.mask
        self.unhandled_reads += 1
        self._log_unhandled("read", addr, width)
        return width.mask

    def write(self, addr: int, width: AccessWidth, value: int) -> None:
        """Dispatch a guest write; dropped if no device takes the whole access."""
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and int(addr) + width <= self._ends[i]:
            device = self._devices[i]
            try:
                device.handle_write(addr, width, value & width.mask)
            except Exception:
                self._device_failed(device, "write", addr, width)
            return
        self.unhandled_writes += 1
        self._log_unhandled("write", addr, width)

    def _log_unhandled(self, kind: str, addr: int, width: AccessWidth) -> None:
        if addr in self._logged_addrs or len(self._logged_addrs) > MAX_LOGGED_ADDRESSES:
            return
        self._logged_addrs.add(addr)
        if len(self._logged_addrs) > MAX_LOGGED_ADDRESSES:
            logger.warning(
                "%s bus: over %d unhandled addresses, no longer logging them", self.name, MAX_LOGGED_ADDRESSES
            )
            return
        logger.warning(
            "%s bus: unhandled %d-byte %s at %#x (no device covers the whole access)",
            self.name,
            int(width),
            kind,
            addr,
        )

    def _device_failed(self, device: BaseDeviceOps, kind: str, addr: int, width: AccessWidth) -> None:
        """Count a device failure, per device too; log it (with traceback) the first time per device."""
        self.device_errors += 1
        name = self._failed_devices.get(id(device))
        if name is not None:
            self.device_error_counts[name] += 1
            return
        try:  # a failing device's properties may fail too
            rng: object = device.address_range
        except Exception:
            rng = "?"
        name = f"{self.name} bus: {_describe(device, rng)}"
        self._failed_devices[id(device)] = name
        self.device_error_counts[name] = self.device_error_counts.get(name, 0) + 1
        logger.exception(
            "%s bus: %s failed on a %d-byte %s at %#x; answering as unhandled "
            "(further failures of this device are counted, not logged)",
            self.name,
            _describe(device, rng),
            int(width),
            kind,
            addr,
        )


class MmioBus(_Bus[AddrRange]):
    """Memory-mapped I/O: devices with half-open AddrRange ranges."""

    _range_type = AddrRange
    name = "mmio"

    @staticmethod
    def _exclusive_end(rng: AddrRange) -> int:
        return rng.end


class _InclusiveBus(_Bus[InclusiveRange]):
    _range_type = InclusiveRange

    @staticmethod
    def _exclusive_end(rng: InclusiveRange) -> int:
        return rng.end + 1


class PortBus(_InclusiveBus):
    """x86 I/O ports: devices with inclusive PortRange ranges."""

    name = "port"


class SysRegBus(_InclusiveBus):
    """System registers (aarch64 encodings, riscv CSRs): devices with inclusive SysRegRange ranges."""

    name = "sysreg"
