"""Random exits into ``handle_exit``: every field a backend fills from the guest, at its extremes.

The VM's exit dispatch runs on every exit with values the guest chose (addresses up to the top
of the 64-bit space, widths, data wider than the access, register widths of signed loads). It
must handle each device access with an answer that fits the register, hand everything else to
the caller, and never raise.
"""

from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import AccessWidth, AddrRange, AddrSpace, GuestPhysAddr, InMemoryStage2, MappingFlags, PortRange
from axaddrspace import SysRegRange as SysRegs
from axdevice import BaseDeviceOps, EmuDeviceType
from axvcpu import (
    CpuDown,
    CpuUp,
    ExternalInterrupt,
    FailEntry,
    Halt,
    Hypercall,
    IoRead,
    IoWrite,
    MmioRead,
    MmioWrite,
    NestedPageFault,
    Nothing,
    SendIpi,
    SysRegRead,
    SysRegWrite,
    SystemDown,
    Unsupported,
)
from axvm import DeviceBuses, Handled, handle_exit

TOP = 1 << 64
U64 = TOP - 1
LAZY = AddrRange(0x10_0000, 0x20_0000)  # a lazily allocated area the page-fault exits may hit


class Register(BaseDeviceOps):
    """A device that answers every read with ``value``, whatever the width."""

    def __init__(self, rng: AddrRange | PortRange | SysRegs, value: int) -> None:
        self._rng, self.value = rng, value

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Dummy

    @property
    def address_range(self) -> AddrRange | PortRange | SysRegs:
        return self._rng

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        return self.value

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.value = value


def buses() -> DeviceBuses:
    result = DeviceBuses()
    result.mmio.add(Register(AddrRange(0x1000_0000, 0x1000_0100), U64))
    result.mmio.add(Register(AddrRange(TOP - 0x100, TOP), 0x8000_0000_0000_0080))  # the very top
    result.port.add(Register(PortRange(0x3F8, 0x3FF), 0xFFFF_FF80))
    result.port.add(Register(PortRange(0xFFF0, 0xFFFF), -1))
    result.sysreg.add(Register(SysRegs(0x300, 0x3FF), 1 << 70))
    return result


addresses = st.one_of(
    st.sampled_from(
        [
            0,
            0x1000_0000,
            0x1000_00FC,
            0x1000_0100,
            TOP - 0x100,
            TOP - 8,
            TOP - 4,
            TOP - 1,
            LAZY.start,
            LAZY.end - 1,
            LAZY.end,
        ]
    ),
    st.integers(0, U64),
)
ports = st.one_of(st.sampled_from([0x3F8, 0x3FF, 0xFFFE, 0xFFFF, 0]), st.integers(0, 0xFFFF))
values = st.one_of(st.integers(0, U64), st.integers(-(1 << 80), 1 << 80))
widths = st.sampled_from(list(AccessWidth))
gpas = addresses.map(GuestPhysAddr)
flags = st.integers(0, 0x3F).map(MappingFlags)

device_exits = st.one_of(
    st.builds(MmioRead, gpas, widths, st.integers(0, 31), widths, st.booleans()),
    st.builds(MmioWrite, gpas, widths, values),
    st.builds(IoRead, ports, widths),
    st.builds(IoWrite, ports, widths, values),
    st.builds(SysRegRead, addresses, st.integers(0, 31)),
    st.builds(SysRegWrite, addresses, values),
    st.builds(NestedPageFault, gpas, flags),
    st.just(Nothing()),
)
vmm_exits = st.one_of(
    st.builds(Hypercall, values, st.lists(values, max_size=6).map(tuple)),
    st.just(Halt()),
    st.builds(CpuUp, st.integers(0, 1 << 32), gpas, values),
    st.builds(CpuDown, values),
    st.builds(SystemDown, values, st.booleans()),
    st.builds(FailEntry, values, st.text(max_size=20)),
    st.builds(ExternalInterrupt, values),
    st.builds(SendIpi, values, values),
    st.builds(Unsupported, values, st.text(max_size=20)),
)


@settings(max_examples=150)
@given(program=st.lists(st.one_of(device_exits, vmm_exits), min_size=1, max_size=20))
def test_random_exits_are_handled_or_handed_back_never_raised(program: list) -> None:
    logging.getLogger("axdevice.bus").disabled = True  # "unhandled access" lines only slow the run
    try:
        run_program(program)
    finally:
        logging.getLogger("axdevice.bus").disabled = False


def run_program(program: list) -> None:
    devices = buses()
    space = AddrSpace(0, TOP, InMemoryStage2())
    space.map_alloc(GuestPhysAddr(LAZY.start), LAZY.size, MappingFlags.READ | MappingFlags.WRITE, populate=False)
    for exit_reason in program:
        result = handle_exit(exit_reason, devices, space)
        if isinstance(exit_reason, MmioRead):
            assert isinstance(result, Handled) and result.read_value is not None
            bits = exit_reason.reg_width.bits if exit_reason.signed else exit_reason.width.bits
            assert 0 <= result.read_value < 1 << max(bits, exit_reason.width.bits)
        elif isinstance(exit_reason, IoRead):
            assert isinstance(result, Handled) and 0 <= result.read_value <= exit_reason.width.mask
        elif isinstance(exit_reason, SysRegRead):
            assert isinstance(result, Handled) and 0 <= result.read_value <= U64
        elif isinstance(exit_reason, NestedPageFault):
            assert result is None or result == Handled()
            if result is not None:
                assert LAZY.contains(int(exit_reason.addr))
        elif isinstance(exit_reason, MmioWrite | IoWrite | SysRegWrite | Nothing):
            assert result == Handled()
        else:
            assert result is None  # the VMM's business: handed back untouched
