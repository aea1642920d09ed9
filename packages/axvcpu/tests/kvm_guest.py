"""Tiny x86_64 guests for the KVM tests, and the one place that decides to skip or fail.

A guest is one 4 MiB RAM region at GPA 0 with identity page tables (2 MiB pages over the first
GiB, user-accessible), a GDT, a stack, and hand-assembled code at ``CODE``. The vCPU starts
directly in 64-bit long mode at CPL0, or at CPL3 with IOPL 3 (``user=True``): on PVM hosts CPL3
code runs natively while CPL0 code is emulated instruction by instruction. A TSS with an all-open
I/O permission bitmap lets CPL3 code do port I/O on PVM too.

Skip rule: the KVM tests skip only where ``probe()`` says /dev/kvm is unusable, with its reason
in the skip message; with AXVISOR_REQUIRE_KVM=1 (set by CI where /dev/kvm works) they fail.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

import pytest

from axaddrspace import GuestMemory, GuestMemoryRegion, GuestPhysAddr, MappingFlags
from axvcpu.backends.kvm import KvmUnavailable, KvmVCpu, KvmX86Backend, _ffi, probe
from axvcpu.x86 import (
    CR0_ET,
    CR0_MP,
    CR0_NE,
    CR0_PE,
    CR0_PG,
    CR0_WP,
    CR4_OSFXSR,
    CR4_OSXMMEXCPT,
    CR4_PAE,
    EFER_LMA,
    EFER_LME,
    RFLAGS_FIXED,
    RFLAGS_IOPL3,
    Segment,
)

RAM_SIZE = 0x40_0000
PML4, PDPT, PD = 0x1000, 0x2000, 0x3000
GDT = 0x4000
IDT = 0x5000
USER_STACK = 0x7000
STACK = 0x8000
CODE = 0x1_0000
HANDLER = 0x2_0000
TSS = 0x3_0000
IO_BITMAP = 0x68
"""Offset of the TSS's I/O permission bitmap: right after the 104-byte 64-bit TSS."""
TSS_LIMIT = IO_BITMAP + 0x2000
"""The bitmap's 65536 bits plus the trailing all-ones byte the SDM requires."""
UNMAPPED = 0x1000_0000
"""A guest physical address inside the page tables' reach but outside RAM: MMIO."""

SEL_CODE, SEL_DATA, SEL_USER_DATA, SEL_USER_CODE = 0x10, 0x18, 0x23, 0x2B
GDT_ENTRIES = [
    0,
    0,
    0x00AF_9A00_0000_FFFF,  # 0x10: 64-bit code, DPL0
    0x00CF_9200_0000_FFFF,  # 0x18: data, DPL0
    0x00CF_F200_0000_FFFF,  # 0x20 (0x23 with RPL3): data, DPL3
    0x00AF_FA00_0000_FFFF,  # 0x28 (0x2b with RPL3): 64-bit code, DPL3
]


def require_kvm() -> None:
    """Skip (or, with AXVISOR_REQUIRE_KVM=1, fail) the calling test where KVM is unusable."""
    reason = probe()
    if reason is None:
        return
    if os.environ.get("AXVISOR_REQUIRE_KVM") == "1":
        pytest.fail(f"AXVISOR_REQUIRE_KVM=1 but KVM is unusable: {reason}")
    pytest.skip(f"KVM is unusable on this host: {reason}")


def require_ffi() -> ModuleType:
    """The compiled KVM bindings (for tests that need no /dev/kvm); skip or fail as require_kvm."""
    try:
        return _ffi.load()
    except KvmUnavailable as error:
        if os.environ.get("AXVISOR_REQUIRE_KVM") == "1":
            pytest.fail(f"AXVISOR_REQUIRE_KVM=1 but the KVM bindings cannot be built: {error}")
        pytest.skip(f"the KVM bindings cannot be built on this host: {error}")


@dataclass
class Guest:
    backend: KvmX86Backend
    memory: GuestMemory
    vcpu: KvmVCpu

    def close(self) -> None:
        self.backend.close()
        self.memory.close()


def _write_tables(memory: GuestMemory) -> None:
    memory.write_u64(PML4, PDPT | 0x7)  # present, writable, user
    memory.write_u64(PDPT, PD | 0x7)
    memory.write(PD, b"".join(struct.pack("<Q", (i << 21) | 0x87) for i in range(512)))  # 2 MiB pages, user
    memory.write(GDT, struct.pack(f"<{len(GDT_ENTRIES)}Q", *GDT_ENTRIES))
    # A TSS whose I/O bitmap allows every port: IOPL 3 alone lets CPL3 code do port I/O on
    # hardware KVM, but PVM checks the bitmap (without it, OUT at CPL3 triple-faults).
    memory.write_u64(TSS + 4, STACK)  # RSP0: the stack for interrupts taken from CPL3
    memory.write_u16(TSS + 0x66, IO_BITMAP)
    memory.write_u8(TSS + TSS_LIMIT, 0xFF)


def _interrupt_gate(handler: int) -> bytes:
    """A 64-bit interrupt gate to ``handler`` in the DPL0 code segment."""
    return struct.pack("<HHBBHII", handler & 0xFFFF, SEL_CODE, 0, 0x8E, (handler >> 16) & 0xFFFF, handler >> 32, 0)


def enter_long_mode(vcpu: KvmVCpu, *, user: bool, idt_limit: int) -> None:
    """The whole long-mode state through the X86VCpu methods (no real-mode trampoline)."""
    dpl = 3 if user else 0
    vcpu.set_descriptor_table("gdt", GDT, len(GDT_ENTRIES) * 8 - 1)
    vcpu.set_descriptor_table("idt", IDT, idt_limit)
    vcpu.set_segment("cs", Segment.code64(SEL_USER_CODE if user else SEL_CODE, dpl))
    for name in ("ds", "es", "fs", "gs", "ss"):
        vcpu.set_segment(name, Segment.data(SEL_USER_DATA if user else SEL_DATA, dpl))
    vcpu.set_segment("tr", Segment.tss64(0x30, TSS, TSS_LIMIT))
    vcpu.set_segment("ldt", Segment.null())
    vcpu.set_register("cr3", PML4)
    vcpu.set_register("cr4", CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT)
    vcpu.set_register("efer", EFER_LME | EFER_LMA)
    vcpu.set_register("cr0", CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG)
    vcpu.set_register("rsp", USER_STACK if user else STACK)
    vcpu.set_register("rflags", RFLAGS_FIXED | (RFLAGS_IOPL3 if user else 0))


@contextmanager
def kvm_guest(code: bytes, *, user: bool = False, irqchip: bool = False, vcpu_id: int = 0,
              handler: bytes | None = None, log_dirty: bool = False) -> Iterator[Guest]:
    """A one-vCPU VM running ``code``; ``handler`` becomes the handler of every interrupt vector.

    Without ``handler`` the IDT is empty (limit 0), so any exception triple-faults at once.
    """
    require_kvm()
    guest = make_guest(code, user=user, irqchip=irqchip, vcpu_id=vcpu_id, handler=handler, log_dirty=log_dirty)
    try:
        yield guest
    finally:
        guest.close()


def make_guest(code: bytes, *, user: bool = False, irqchip: bool = False, vcpu_id: int = 0,
               handler: bytes | None = None, log_dirty: bool = False) -> Guest:
    """As ``kvm_guest`` without the KVM check; the caller closes the guest."""
    backend = KvmX86Backend(irqchip=irqchip)
    memory = GuestMemory()
    try:
        ram = GuestMemoryRegion.anonymous(0, RAM_SIZE)
        memory.add_region(ram)
        backend.stage2.attach_memory(memory)
        flags = MappingFlags.READ | MappingFlags.WRITE | MappingFlags.EXECUTE
        backend.stage2.map(ram, flags, log_dirty=log_dirty)
        _write_tables(memory)
        memory.write(CODE, code)
        idt_limit = 0
        if handler is not None:
            memory.write(HANDLER, handler)
            memory.write(IDT, _interrupt_gate(HANDLER) * 256)
            idt_limit = 256 * 16 - 1
        vcpu = backend.create_vcpu(vcpu_id)
        vcpu.setup(GuestPhysAddr(CODE), backend.stage2)
        enter_long_mode(vcpu, user=user, idt_limit=idt_limit)
    except BaseException:
        backend.close()
        memory.close()
        raise
    return Guest(backend, memory, vcpu)
