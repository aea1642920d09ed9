"""KvmVm: memory slots behind the Stage2Mapper interface, dirty logging, irq lines, irqfd, ioeventfd."""

from __future__ import annotations

import os

import pytest

from axaddrspace import (
    AccessWidth,
    AddrSpace,
    AddrSpaceError,
    GuestMemoryError,
    GuestMemoryRegion,
    GuestPhysAddr,
    MappingFlags,
    Stage2Mapper,
)
from axvcpu import Halt, IoWrite, MmioWrite
from axvcpu.backends.kvm import KvmVm, KvmX86Backend
from axvcpu.backends.kvm.slots import SlotTable

from . import kvm_programs as prog
from .kvm_guest import kvm_guest, require_kvm

RWX = MappingFlags.READ | MappingFlags.WRITE | MappingFlags.EXECUTE
COM1 = 0x3F8
MIB = 1 << 20


def test_slots_follow_the_stage2_contract() -> None:
    require_kvm()
    regions = {
        gpa: GuestMemoryRegion.anonymous(gpa, size)
        for gpa, size in ((0, 2 * MIB), (2 * MIB, 2 * MIB), (3 * MIB, 2 * MIB), (8 * MIB, MIB))
    }
    with KvmVm(irqchip=False, pit=False) as vm:
        assert isinstance(vm, Stage2Mapper)
        vm.map(regions[0], RWX)
        vm.map(regions[2 * MIB], RWX)
        assert (vm.slot_at(0), vm.slot_at(3 * MIB), vm.slot_at(4 * MIB)) == (0, 1, None)
        with pytest.raises(AddrSpaceError, match=r"overlaps KVM slot 1"):
            vm.map(regions[3 * MIB], RWX)
        with pytest.raises(AddrSpaceError, match="aligned"):  # regions cannot be; the table checks too
            SlotTable(8).reserve(8 * MIB + 0x10, 4096, int(regions[0].host_addr), RWX, 0)
        with pytest.raises(AddrSpaceError, match="not one KVM slot"):
            vm.unmap(GuestPhysAddr(0), MIB)
        vm.unmap(GuestPhysAddr(0), 2 * MIB)
        assert vm.mapping_at(0) is None
        vm.map(regions[8 * MIB], RWX)
        assert vm.slot_at(8 * MIB) == 0  # the lowest free id is reused
    for region in regions.values():
        region.close()


def test_addrspace_maps_through_the_vm_and_read_guest_sees_ram() -> None:
    require_kvm()
    with KvmVm(irqchip=False, pit=False) as vm:
        space = AddrSpace(GuestPhysAddr(0), 1 << 32, vm)
        space.map_alloc(GuestPhysAddr(0x10_0000), MIB, RWX)
        space.memory.write(0x10_0100, b"guest bytes")
        assert vm.read_guest(0x10_0100, 11) == b"guest bytes"
        with pytest.raises(GuestMemoryError):
            vm.read_guest(0x10_0000 + MIB - 4, 8)  # runs off the slot
        space.clear()
        assert vm.mappings == ()


def test_read_guest_goes_through_the_attached_guest_memory_only() -> None:
    require_kvm()
    with KvmVm(irqchip=False, pit=False) as vm:
        space = AddrSpace(GuestPhysAddr(0), 1 << 32, vm)
        assert vm.memory is space.memory  # the address space handed over its one memory
        space.map_alloc(GuestPhysAddr(0x10_0000), MIB, RWX, populate=False)  # in memory, no slot yet
        space.memory.write(0x10_0200, b"lazy")
        assert vm.mappings == () and vm.read_guest(0x10_0200, 4) == b"lazy"
        space.close()
        with pytest.raises(GuestMemoryError):
            vm.read_guest(0x10_0200, 4)  # released: nothing to read, no dangling host address
        space.close()  # twice is safe


def test_read_only_memory_reads_natively_and_writes_exit_as_mmio() -> None:
    with kvm_guest(prog.READ_ONLY_PROBE) as guest:
        rom = GuestMemoryRegion.anonymous(0x80_0000, 0x1000)
        guest.memory.add_region(rom)  # closed with the guest
        rom.view[0] = 0x5A
        guest.backend.stage2.map(rom, MappingFlags.READ)
        assert guest.vcpu.run() == IoWrite(COM1, AccessWidth.BYTE, 0x5A)
        assert guest.vcpu.run() == MmioWrite(GuestPhysAddr(0x80_0000), AccessWidth.BYTE, 0x77)
        assert rom.view[0] == 0x5A


def test_dirty_log_reports_the_page_the_guest_wrote() -> None:
    with kvm_guest(prog.DIRTY_ONE_PAGE, log_dirty=True) as guest:
        vm = guest.backend.vm
        slot = vm.slot_at(0)
        assert slot is not None
        vm.get_dirty_log(slot)  # start from a clean log
        assert guest.vcpu.run() == IoWrite(COM1, AccessWidth.BYTE, 0)
        bitmap = vm.get_dirty_log(slot)
        page = 0x20_0000 // 4096
        assert len(bitmap) == 0x40_0000 // 4096 // 8
        assert bitmap[page // 8] >> (page % 8) & 1
        assert not bitmap[(page + 64) // 8]  # an untouched page
        again = vm.get_dirty_log(slot)
        assert not again[page // 8] >> (page % 8) & 1  # reading the log cleared it


@pytest.mark.parametrize(("datamatch", "swallowed"), [(None, True), (1, True), (2, False)])
def test_ioeventfd_takes_matching_writes_without_an_exit(datamatch: int | None, swallowed: bool) -> None:
    with kvm_guest(prog.OUT_0X500_THEN_COM1) as guest:
        fd = guest.backend.vm.ioeventfd(0x500, 1, datamatch=datamatch, pio=True)
        if not swallowed:
            assert guest.vcpu.run() == IoWrite(0x500, AccessWidth.BYTE, 1)
        assert guest.vcpu.run() == IoWrite(COM1, AccessWidth.BYTE, 2)
        if swallowed:
            assert int.from_bytes(os.read(fd, 8), "little") == 1
        else:
            with pytest.raises(BlockingIOError):
                os.read(fd, 8)
        assert guest.vcpu.run() == Halt()


def test_ioeventfd_arguments_are_checked() -> None:
    with kvm_guest(prog.OUT_A) as guest:
        with pytest.raises(ValueError, match="length 3"):
            guest.backend.vm.ioeventfd(0x500, 3)
        with pytest.raises(ValueError, match="datamatch"):
            guest.backend.vm.ioeventfd(0x500, 0, datamatch=1)


def test_irq_lines_and_irqfd_need_the_irqchip() -> None:
    require_kvm()
    with KvmX86Backend(irqchip=True) as backend:
        assert backend.name == "kvm" and backend.stage2 is backend.vm
        line = backend.irq_line(4)
        line.set_level(True)
        line.set_level(False)
        line.pulse()
        fd = backend.vm.irqfd(5)
        os.write(fd, (1).to_bytes(8, "little"))  # KVM consumes it in the kernel
        with pytest.raises(ValueError, match="GSI 24"):
            backend.irq_line(24)
    with KvmX86Backend(irqchip=False) as backend, pytest.raises(RuntimeError, match="irqchip"):
        backend.irq_line(4)


def test_pit_without_irqchip_is_refused() -> None:
    require_kvm()
    with pytest.raises(ValueError, match="PIT needs the in-kernel irqchip"):
        KvmVm(irqchip=False, pit=True)


def test_close_closes_vcpus_first_and_is_idempotent() -> None:
    require_kvm()
    backend = KvmX86Backend()
    vcpu = backend.create_vcpu(0)
    backend.close()
    assert vcpu.fd == -1 and backend.vm.fd == -1
    backend.close()
