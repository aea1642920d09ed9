"""One KVM virtual machine: its memory slots (axaddrspace's Stage2Mapper), interrupt lines and vCPUs.

Guest RAM reaches KVM as regions of the VM's one ``GuestMemory``: the address space attaches
that memory and hands over each region to map; the VM reads guest RAM (the code bytes in a
failure report) only through it, never through a slot's host address.

On x86 the VM is built in the order KVM requires: the TSS and identity-map pages (needed by
Intel's real-mode emulation, placed just below the 4 GiB BIOS area as QEMU does), then the
in-kernel PIC/IOAPIC/LAPIC and the PIT, all before the first vCPU.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from axaddrspace import (
    PAGE_SIZE,
    AddrSpaceError,
    AttachedMemory,
    GuestMemoryError,
    GuestMemoryReader,
    GuestMemoryRegion,
    GuestPhysAddr,
    MappingFlags,
    Stage2Mapping,
    region_to_map,
)

from .errors import KvmError, check
from .eventfds import EventfdWatcher
from .slots import Slot, SlotTable
from .system import Kvm
from .vcpu import KvmVCpu

TSS_ADDR = 0xFFFB_D000
"""Three pages KVM needs for the real-mode TSS on Intel; below the BIOS ROM at 0xfffc0000."""
IDENTITY_MAP_ADDR = 0xFFFB_C000
"""One page for the identity page table KVM uses for unpaged guests on Intel (EPT)."""
DEFAULT_MEMSLOTS = 32
"""Slots to assume when KVM_CAP_NR_MEMSLOTS says nothing (kernels before it always had 32)."""


class KvmIrqLine:
    """One GSI of the in-kernel interrupt controllers, driven by KVM_IRQ_LINE (axdevice's IrqLine)."""

    __slots__ = ("_levels", "_vm", "gsi")

    def __init__(self, vm: KvmVm, gsi: int) -> None:
        self._vm = vm
        self.gsi = gsi
        # One prepared argument per level, never modified, so device threads may share the line.
        self._levels = (vm.ffi.new("struct kvm_irq_level *"), vm.ffi.new("struct kvm_irq_level *"))
        for level, arg in enumerate(self._levels):
            arg.irq = gsi
            arg.level = level

    def set_level(self, level: bool) -> None:
        """Assert (True) or deassert (False) the line."""
        self._vm._ioctl_ptr("KVM_IRQ_LINE", self._vm.lib.KVM_IRQ_LINE, self._levels[1 if level else 0])

    def pulse(self) -> None:
        """One edge: raise then lower the line."""
        self.set_level(True)
        self.set_level(False)

    def __repr__(self) -> str:
        return f"KvmIrqLine(gsi={self.gsi})"


class KvmVm:
    """A KVM VM fd; ``irqchip`` and ``pit`` create the in-kernel interrupt controllers and PIT."""

    def __init__(self, kvm: Kvm | None = None, *, irqchip: bool = True, pit: bool = True) -> None:
        self._owns_kvm = kvm is None
        self.kvm = kvm if kvm is not None else Kvm()
        self.ffi: Any = self.kvm.ffi
        self.lib: Any = self.kvm.lib
        lib = self.lib
        self.fd = -1
        self.irqchip = irqchip
        self._lock = threading.Lock()
        self._vcpus: list[KvmVCpu] = []
        self._eventfds: list[int] = []
        self._watcher: EventfdWatcher | None = None
        # Ports no device answers (a bitmap, then the C side's ports-seen-once bitmap): see
        # axv_run in _ffi.py. All clear until set_quiet_ports.
        self.quiet_ports: Any = self.ffi.new("uint8_t[]", 2 * self.lib.AXV_QUIET_BITMAP)
        self.quiet_sink: Callable[[int, int], object] | None = None
        self._memory = AttachedMemory()
        try:
            self.fd = check(lib.axv_ioctl_int(self.kvm.fd, lib.KVM_CREATE_VM, 0), "KVM_CREATE_VM")
            self._slots = SlotTable(self.kvm.check_extension(lib.KVM_CAP_NR_MEMSLOTS) or DEFAULT_MEMSLOTS)
            self.readonly_mem = self.kvm.check_extension(lib.KVM_CAP_READONLY_MEM) > 0
            self._setup_x86(irqchip, pit)
            self.insn_bytes_on_failure = self._enable_exit_on_emulation_failure()
        except BaseException:
            self.close()
            raise

    def _setup_x86(self, irqchip: bool, pit: bool) -> None:
        lib = self.lib
        self._ioctl_int("KVM_SET_TSS_ADDR", lib.KVM_SET_TSS_ADDR, TSS_ADDR)
        identity = self.ffi.new("uint64_t *", IDENTITY_MAP_ADDR)
        self._ioctl_ptr("KVM_SET_IDENTITY_MAP_ADDR", lib.KVM_SET_IDENTITY_MAP_ADDR, identity)
        if irqchip:
            self._ioctl_int("KVM_CREATE_IRQCHIP", lib.KVM_CREATE_IRQCHIP, 0)
        if pit:
            if not irqchip:
                raise ValueError("the in-kernel PIT needs the in-kernel irqchip: pass irqchip=True or pit=False")
            config = self.ffi.new("struct kvm_pit_config *")
            config.flags = lib.KVM_PIT_SPEAKER_DUMMY  # port 0x61 reads as a speaker, as QEMU does
            self._ioctl_ptr("KVM_CREATE_PIT2", lib.KVM_CREATE_PIT2, config)

    def _enable_exit_on_emulation_failure(self) -> bool:
        """Ask KVM to include the failing instruction's bytes in emulation-failure exits, if it can."""
        lib = self.lib
        if self.kvm.check_extension(lib.KVM_CAP_EXIT_ON_EMULATION_FAILURE) <= 0:
            return False
        cap = self.ffi.new("struct kvm_enable_cap *")
        cap.cap = lib.KVM_CAP_EXIT_ON_EMULATION_FAILURE
        cap.args[0] = 1
        return bool(lib.axv_ioctl_ptr(self.fd, lib.KVM_ENABLE_CAP, cap) == 0)

    # -- ioctl helpers ------------------------------------------------------------------------------

    def _ioctl_ptr(self, name: str, request: int, arg: Any) -> int:
        return check(self.lib.axv_ioctl_ptr(self.fd, request, arg), name)

    def _ioctl_int(self, name: str, request: int, arg: int) -> int:
        return check(self.lib.axv_ioctl_int(self.fd, request, arg), name)

    # -- Stage2Mapper -------------------------------------------------------------------------------

    @property
    def memory(self) -> GuestMemoryReader:
        """The VM's guest memory, which ``read_guest`` reads (empty until attached)."""
        return self._memory.memory

    def attach_memory(self, memory: GuestMemoryReader) -> None:
        with self._lock:
            self._memory.attach(memory, len(self._slots.slots))

    def map(self, region: GuestMemoryRegion, flags: MappingFlags, *, log_dirty: bool = False) -> None:
        """Back ``region``'s guest range with its host memory in a free KVM memory slot.

        Without MappingFlags.WRITE the slot is read-only (guest writes exit as MMIO writes);
        ``log_dirty`` turns on dirty-page logging for ``get_dirty_log``.
        """
        gpa, size, host_addr = region_to_map(region)
        lib = self.lib
        kvm_flags = lib.KVM_MEM_LOG_DIRTY_PAGES if log_dirty else 0
        if not flags & MappingFlags.WRITE:
            if not self.readonly_mem:
                raise AddrSpaceError(f"read-only stage-2 mapping at {int(gpa):#x}: this KVM lacks "
                                     f"KVM_CAP_READONLY_MEM")
            kvm_flags |= lib.KVM_MEM_READONLY
        slot = self._slots.reserve(int(gpa), size, int(host_addr), flags, kvm_flags)
        try:
            self._set_region(slot, size)
        except KvmError:
            self._slots.discard(slot)
            raise

    def unmap(self, gpa: GuestPhysAddr, size: int) -> None:
        """Delete the slot that maps exactly ``[gpa, gpa + size)`` (KVM: the same slot with size 0)."""
        slot = self._slots.release(int(gpa), size)
        try:
            self._set_region(slot, 0)
        except KvmError:
            self._slots.restore(slot)
            raise

    def _set_region(self, slot: Slot, size: int) -> None:
        region = self.ffi.new("struct kvm_userspace_memory_region *")
        region.slot = slot.id
        region.flags = slot.kvm_flags
        region.guest_phys_addr = int(slot.mapping.gpa)
        region.memory_size = size
        region.userspace_addr = int(slot.mapping.host_addr)
        self._ioctl_ptr("KVM_SET_USER_MEMORY_REGION", self.lib.KVM_SET_USER_MEMORY_REGION, region)

    @property
    def mappings(self) -> tuple[Stage2Mapping, ...]:
        return tuple(slot.mapping for slot in self._slots.slots)

    def slot_at(self, gpa: int) -> int | None:
        """The id of the KVM slot holding ``gpa`` (for ``get_dirty_log``), or None."""
        slot = self._slots.lookup(gpa)
        return slot.id if slot is not None else None

    def mapping_at(self, gpa: int) -> Stage2Mapping | None:
        slot = self._slots.lookup(gpa)
        return slot.mapping if slot is not None else None

    def read_guest(self, gpa: int, size: int) -> bytes:
        """Bytes of guest RAM at ``gpa``, read through the VM's guest memory (for error messages).

        GuestMemoryError where any byte is not RAM, or the memory was released (VM teardown):
        nothing here touches a host address.
        """
        if not 0 <= gpa < 1 << 64:
            raise GuestMemoryError(gpa, size, "is outside the 64-bit guest physical address space")
        return self.memory.read(GuestPhysAddr(gpa), size)

    def get_dirty_log(self, slot_id: int) -> bytes:
        """KVM_GET_DIRTY_LOG: one bit per page of the slot (bit n of byte n // 8), cleared by the read."""
        slot = self._slots.by_id(slot_id)
        if slot is None:
            raise KeyError(f"no KVM memory slot {slot_id}")
        pages = slot.mapping.size // PAGE_SIZE
        bitmap = self.ffi.new("uint64_t[]", (pages + 63) // 64)  # KVM writes whole 64-bit words
        log = self.ffi.new("struct kvm_dirty_log *")
        log.slot = slot_id
        log.dirty_bitmap = bitmap
        self._ioctl_ptr("KVM_GET_DIRTY_LOG", self.lib.KVM_GET_DIRTY_LOG, log)
        return bytes(self.ffi.buffer(bitmap))[: (pages + 7) // 8]

    # -- interrupts and notifications ---------------------------------------------------------------

    def irq_line(self, gsi: int) -> KvmIrqLine:
        """An interrupt line into the in-kernel PIC/IOAPIC pin ``gsi`` (0..23)."""
        if not self.irqchip:
            raise RuntimeError("irq lines need the in-kernel irqchip (create the VM with irqchip=True); "
                               "without it use KvmVCpu.inject_interrupt")
        if not 0 <= gsi < self.lib.KVM_IOAPIC_NUM_PINS:
            raise ValueError(f"GSI {gsi} is not an IOAPIC pin 0..{self.lib.KVM_IOAPIC_NUM_PINS - 1}")
        return KvmIrqLine(self, gsi)

    def irqfd(self, gsi: int) -> int:
        """An eventfd wired to ``gsi`` with KVM_IRQFD: writing 1 to it pulses the line in the kernel.

        The VM owns the fd and closes it with the VM.
        """
        self.irq_line(gsi)  # the same checks
        fd = self._new_eventfd()
        irqfd = self.ffi.new("struct kvm_irqfd *")
        irqfd.fd = fd
        irqfd.gsi = gsi
        self._register_eventfd(fd, "KVM_IRQFD", self.lib.KVM_IRQFD, irqfd)
        return fd

    def ioeventfd(self, addr: int, length: int, datamatch: int | None = None, pio: bool = False) -> int:
        """An eventfd KVM signals when the guest writes ``[addr, addr + length)`` (no exit to Python).

        ``length`` 0 matches any write width; ``datamatch`` only writes of that value; ``pio``
        selects the port space. The VM owns the fd and closes it with the VM.
        """
        if length not in (0, 1, 2, 4, 8):
            raise ValueError(f"ioeventfd length {length} is not 0, 1, 2, 4 or 8")
        if datamatch is not None and length == 0:
            raise ValueError("ioeventfd datamatch needs a length of 1, 2, 4 or 8")
        lib = self.lib
        fd = self._new_eventfd()
        event = self.ffi.new("struct kvm_ioeventfd *")
        event.addr = addr
        event.len = length
        event.fd = fd
        event.flags = (lib.KVM_IOEVENTFD_FLAG_PIO if pio else 0) | (
            lib.KVM_IOEVENTFD_FLAG_DATAMATCH if datamatch is not None else 0)
        event.datamatch = datamatch or 0
        self._register_eventfd(fd, "KVM_IOEVENTFD", lib.KVM_IOEVENTFD, event)
        return fd

    def notify_on_write(self, addr: int, length: int, callback: Callable[[], object],
                        datamatch: int | None = None, pio: bool = False) -> int:
        """An ``ioeventfd`` whose signals call ``callback`` on the VM's eventfd thread.

        The matching guest writes never leave KVM; ``callback`` runs once per wake-up of that
        thread, however many writes it covers (see eventfds.py). Returns the eventfd.
        """
        fd = self.ioeventfd(addr, length, datamatch, pio)
        with self._lock:
            if self._watcher is None:
                self._watcher = EventfdWatcher(f"kvm-vm{self.fd}-eventfds")
            watcher = self._watcher
        watcher.watch(fd, callback)
        return fd

    def set_quiet_ports(self, bitmap: bytes, sink: Callable[[int, int], object]) -> None:
        """Ports (bit ``port % 8`` of byte ``port // 8``) whose accesses the vCPUs answer without
        returning to Python after the first one: reads all-ones, writes dropped, counted and
        handed to ``sink(reads, writes)`` by the vCPU thread when its run returns.

        Set before the vCPUs run: the bitmap is read by every vCPU's KVM_RUN loop.
        """
        size = self.lib.AXV_QUIET_BITMAP
        if len(bitmap) != size:
            raise ValueError(f"a quiet-port bitmap is {size} bytes (one bit per port), not {len(bitmap)}")
        self.quiet_sink = sink
        self.ffi.memmove(self.quiet_ports, bitmap, size)

    def stop_notifications(self) -> None:
        """Stop calling ``notify_on_write`` callbacks (waits for one in progress); idempotent.

        A VM being torn down calls this before the devices the callbacks reach are released.
        """
        with self._lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()

    def _new_eventfd(self) -> int:
        return os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    def _register_eventfd(self, fd: int, name: str, request: int, arg: Any) -> None:
        try:
            self._ioctl_ptr(name, request, arg)
        except KvmError:
            os.close(fd)
            raise
        with self._lock:
            self._eventfds.append(fd)

    # -- the guest clock ----------------------------------------------------------------------------

    def get_clock(self) -> int:
        """KVM_GET_CLOCK: the VM's kvmclock in nanoseconds (what a guest using kvmclock reads)."""
        data = self.ffi.new("struct kvm_clock_data *")  # the header's struct: KVM fills clock and flags
        self._ioctl_ptr("KVM_GET_CLOCK", self.lib.KVM_GET_CLOCK, data)
        return int(data.clock)

    def set_clock(self, nanoseconds: int) -> None:
        """KVM_SET_CLOCK: the kvmclock reads ``nanoseconds`` now and counts on from there.

        flags stay 0 (ffi.new zeroes the struct): no KVM_CLOCK_REALTIME adjustment, so the value
        is taken as it is, which is what a resume after a pause needs.
        """
        data = self.ffi.new("struct kvm_clock_data *")
        data.clock = nanoseconds
        self._ioctl_ptr("KVM_SET_CLOCK", self.lib.KVM_SET_CLOCK, data)

    # -- vCPUs and teardown -------------------------------------------------------------------------

    def create_vcpu(self, vcpu_id: int) -> KvmVCpu:
        """KVM_CREATE_VCPU with ``vcpu_id`` (also its APIC id); the VM closes it on close()."""
        vcpu = KvmVCpu(self, vcpu_id)
        with self._lock:
            self._vcpus.append(vcpu)
        return vcpu

    @property
    def vcpus(self) -> tuple[KvmVCpu, ...]:
        with self._lock:
            return tuple(self._vcpus)

    def close(self) -> None:
        """Close the vCPUs, the eventfds, the VM fd and (if this VM opened it) /dev/kvm."""
        self.stop_notifications()
        with self._lock:
            vcpus, self._vcpus = self._vcpus, []
            eventfds, self._eventfds = self._eventfds, []
        for vcpu in vcpus:
            vcpu.close()
        for fd in eventfds:
            os.close(fd)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._owns_kvm:
            self.kvm.close()

    def __enter__(self) -> KvmVm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
