from __future__ import annotations

from axaddrspace import AccessWidth, AddrRange, AddrSpace, GuestPhysAddr, InMemoryStage2, MappingFlags
from axdevice import BaseDeviceOps, EmuDeviceType, PortBus
from axvcpu import (
    CpuUp,
    Halt,
    Hypercall,
    IoRead,
    IoWrite,
    MmioRead,
    MmioWrite,
    NestedPageFault,
    Nothing,
    SysRegRead,
    SystemDown,
)
from axvm import DeviceBuses, Handled, handle_exit, sign_extend


class Register(BaseDeviceOps):
    """A one-register MMIO device remembering what was written."""

    def __init__(self, base: int, value: int = 0) -> None:
        self.base, self.value, self.writes = base, value, []

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Dummy

    @property
    def address_range(self) -> AddrRange:
        return AddrRange.from_start_size(self.base, 8)

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        return self.value

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.writes.append((addr - self.base, width, value))


def buses_with_register(value: int = 0) -> tuple[DeviceBuses, Register]:
    buses = DeviceBuses()
    device = Register(0x1000_0000, value)
    buses.mmio.add(device)
    return buses, device


def test_mmio_read_and_write_reach_the_device() -> None:
    buses, device = buses_with_register(0x1234)
    assert handle_exit(MmioRead(GuestPhysAddr(0x1000_0000), AccessWidth.WORD), buses) == Handled(0x1234)
    assert handle_exit(MmioWrite(GuestPhysAddr(0x1000_0004), AccessWidth.DWORD, 7), buses) == Handled()
    assert device.writes == [(4, AccessWidth.DWORD, 7)]


def test_signed_mmio_read_is_sign_extended_to_the_register() -> None:
    buses, _ = buses_with_register(0x80)
    exit_reason = MmioRead(GuestPhysAddr(0x1000_0000), AccessWidth.BYTE, reg=5, signed=True)
    assert handle_exit(exit_reason, buses) == Handled(0xFFFF_FFFF_FFFF_FF80)
    assert sign_extend(0x7F, 8, 64) == 0x7F
    assert sign_extend(0x8000, 16, 32) == 0xFFFF_8000


class Faulty(Register):
    """A device with a bug: every access raises."""

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        raise ZeroDivisionError("device bug")

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        raise ZeroDivisionError("device bug")


def test_a_raising_device_gets_the_defined_answer_and_is_reported_per_device() -> None:
    buses, _ = buses_with_register()
    buses.mmio.add(Faulty(0x2000_0000))
    assert buses.device_errors() == {}
    assert handle_exit(MmioRead(GuestPhysAddr(0x2000_0000), AccessWidth.DWORD), buses) == Handled(0xFFFF_FFFF)
    assert handle_exit(MmioWrite(GuestPhysAddr(0x2000_0000), AccessWidth.DWORD, 1), buses) == Handled()
    assert handle_exit(MmioRead(GuestPhysAddr(0x1000_0000), AccessWidth.DWORD), buses) == Handled(0)
    assert buses.device_errors() == {"mmio bus: Faulty (Dummy) at [0x20000000, 0x20000008)": 2}


def test_unmapped_accesses_get_the_defined_answer() -> None:
    buses = DeviceBuses()
    assert handle_exit(MmioRead(GuestPhysAddr(0xDEAD_0000), AccessWidth.DWORD), buses) == Handled(0xFFFF_FFFF)
    assert handle_exit(IoRead(0x80, AccessWidth.BYTE), buses) == Handled(0xFF)
    assert handle_exit(IoWrite(0x80, AccessWidth.BYTE, 1), buses) == Handled()
    assert handle_exit(SysRegRead(0x300), buses) == Handled((1 << 64) - 1)
    assert buses.mmio.unhandled_reads == 1 and buses.port.unhandled_writes == 1


def test_page_fault_populates_a_lazy_area_once() -> None:
    space = AddrSpace(0, 1 << 32, InMemoryStage2())
    space.map_alloc(GuestPhysAddr(0x10_0000), 0x10_0000, MappingFlags.READ | MappingFlags.WRITE, populate=False)
    fault = NestedPageFault(GuestPhysAddr(0x10_2000), MappingFlags.WRITE)
    assert handle_exit(fault, DeviceBuses(), space) == Handled()
    assert handle_exit(fault, DeviceBuses(), space) is None
    assert handle_exit(NestedPageFault(GuestPhysAddr(0x9000_0000), MappingFlags.READ), DeviceBuses(), space) is None


def test_exits_for_the_vmm_are_returned_unhandled() -> None:
    for exit_reason in (Halt(), SystemDown(3), CpuUp(1, GuestPhysAddr(0x8000)), Hypercall(1, (2, 3))):
        assert handle_exit(exit_reason, DeviceBuses()) is None
    assert handle_exit(Nothing(), DeviceBuses()) == Handled()


def test_port_bus_is_used_for_io_exits() -> None:
    buses = DeviceBuses(port=PortBus())
    assert handle_exit(IoRead(0x3F8, AccessWidth.BYTE), buses) == Handled(0xFF)
    assert buses.port.unhandled_reads == 1 and buses.mmio.unhandled_reads == 0
