"""Random guest accesses against buses holding a few devices, checked against a plain model.

The guest picks every address (up to the top of the 64-bit space, as a plain int or as the
GuestPhysAddr a backend hands over), width and value. Whatever it picks, a read answers within
its width (the device's value, or all ones when no device takes the whole access or the device
fails), a write reaches exactly the device that covers it, nothing raises, and the counters say
what happened.
"""

from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import AccessWidth, AddrRange, GuestPhysAddr, PortRange, SysRegRange
from axdevice import BaseDeviceOps, DeviceOverlapError, EmuDeviceType, MmioBus, PortBus, SysRegBus

TOP = 1 << 64


class Device(BaseDeviceOps):
    """Answers reads with ``value`` (which may be wider than the access, negative, or None),
    or raises on every access when ``broken``; records what reached it."""

    def __init__(self, rng: AddrRange | PortRange | SysRegRange, value: object, broken: bool) -> None:
        self._rng = rng
        self.value = value
        self.broken = broken
        self.reads: list[tuple[int, AccessWidth]] = []
        self.writes: list[tuple[int, AccessWidth, int]] = []

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Dummy

    @property
    def address_range(self) -> AddrRange | PortRange | SysRegRange:
        return self._rng

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        self.reads.append((int(addr), width))
        if self.broken:
            raise RuntimeError("device bug")
        return self.value  # type: ignore[return-value]

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.writes.append((int(addr), width, value))
        if self.broken:
            raise KeyError("device bug")


BUSES = {
    "mmio": (MmioBus, TOP, lambda start, size: AddrRange(start, min(start + size, TOP))),
    "port": (PortBus, 1 << 16, lambda start, size: PortRange(start, min(start + size, 1 << 16) - 1)),
    "sysreg": (SysRegBus, TOP, lambda start, size: SysRegRange(start, min(start + size, TOP) - 1)),
}


device_specs = st.lists(
    st.tuples(
        st.one_of(st.sampled_from([0, 0x1000, 0x3F8, 0xFFF8, TOP - 16, TOP - 8, TOP - 1]), st.integers(0, TOP - 1)),
        st.one_of(st.sampled_from([1, 2, 4, 8, 16, 0x100, 0x1000]), st.integers(1, 1 << 20)),
        st.one_of(st.integers(0, TOP - 1), st.integers(-(1 << 70), 1 << 70), st.none()),
        st.booleans(),
    ),
    min_size=1,
    max_size=5,
)
# (write?, width, value, address: random or near a device edge / zero / the top, as GuestPhysAddr?)
accesses = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from(list(AccessWidth)),
        st.integers(-(1 << 70), 1 << 70),
        st.one_of(st.integers(0, TOP - 1), st.tuples(st.integers(0, 63), st.integers(-9, 9))),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200)
@given(kind=st.sampled_from(sorted(BUSES)), specs=device_specs, program=accesses)
def test_random_accesses_match_the_model(kind: str, specs: list, program: list) -> None:
    logger = logging.getLogger("axdevice.bus")
    logger.disabled = True  # thousands of "unhandled" lines would only slow the run down
    try:
        run_program(kind, specs, program)
    finally:
        logger.disabled = False


def run_program(kind: str, specs: list, program: list) -> None:
    bus_type, limit, make_range = BUSES[kind]
    bus = bus_type()
    devices: list[Device] = []
    for start, size, value, broken in specs:
        start %= limit
        device = Device(make_range(start, size), value, broken)
        try:
            bus.add(device)
        except DeviceOverlapError:
            assert any(device.address_range.overlaps(other.address_range) for other in devices)
            continue
        devices.append(device)
    points = [0, limit - 1, limit - 8]
    for device in devices:
        rng = device.address_range
        points += [rng.start, rng.start + rng.size]
    expected = {"unhandled_reads": 0, "unhandled_writes": 0, "device_errors": 0}
    for is_write, width, value, where, typed in program:
        if isinstance(where, tuple):
            addr = min(max(points[where[0] % len(points)] + where[1], 0), limit - 1)
        else:
            addr = where % limit
        target = next(
            (
                d
                for d in devices
                if d.address_range.start <= addr and addr + width <= d.address_range.start + d.address_range.size
            ),
            None,
        )
        address = GuestPhysAddr(addr) if typed and kind == "mmio" else addr
        if is_write:
            bus.write(address, width, value)
            if target is None:
                expected["unhandled_writes"] += 1
            else:
                assert target.writes[-1] == (addr, width, value & width.mask)
                expected["device_errors"] += target.broken
        else:
            got = bus.read(address, width)
            assert 0 <= got <= width.mask
            if target is None:
                expected["unhandled_reads"] += 1
                assert got == width.mask
            else:
                assert target.reads[-1] == (addr, width)
                fails = target.broken or not isinstance(target.value, int)  # None & mask raises in the bus
                expected["device_errors"] += fails
                assert got == (width.mask if fails else target.value & width.mask)
        assert {name: getattr(bus, name) for name in expected} == expected


def test_an_access_running_past_the_top_of_the_address_space_reads_all_ones() -> None:
    """A GuestPhysAddr (what backends hand over) plus the width would leave 64 bits: before the
    fix the bus raised AddressOverflowError out of the VMM instead of answering."""
    bus = MmioBus()
    device = Device(AddrRange(TOP - 0x100, TOP), 0x1234, broken=False)
    bus.add(device)
    assert bus.read(GuestPhysAddr(TOP - 4), AccessWidth.QWORD) == AccessWidth.QWORD.mask
    bus.write(GuestPhysAddr(TOP - 1), AccessWidth.WORD, 1)
    assert bus.read(GuestPhysAddr(TOP - 4), AccessWidth.DWORD) == 0x1234
    assert (bus.unhandled_reads, bus.unhandled_writes, device.writes) == (1, 1, [])
