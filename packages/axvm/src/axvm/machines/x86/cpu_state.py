"""Initial vCPU register state for the x86 entry modes the loaders offer.

64-bit long mode (raw images, ELF e_entry, Linux's 64-bit boot protocol): paging on with the
identity tables of ``tables.py``, CS = 0x10 (64-bit code), the data segments = 0x18, TR the
boot TSS. 32-bit protected mode without paging (PVH entry): CS = 0x08, data = 0x18.
"""

from __future__ import annotations

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
    Segment,
    X86VCpu,
)

from . import layout
from .segments import CODE32, CODE64, DATA, TSS64, SegmentSpec
from .tables import TSS_SIZE

GDT_ENTRIES = 8


def segment(spec: SegmentSpec, selector: int, base: int = 0, limit: int = 0xFFFF_FFFF) -> Segment:
    return Segment(base=base, limit=limit, selector=selector, type=spec.type, present=1, dpl=spec.dpl,
                   db=spec.db, s=spec.s, l=spec.l, g=spec.g)


def _common(vcpu: X86VCpu, boot_base: int) -> None:
    vcpu.set_descriptor_table("gdt", boot_base + layout.GDT, GDT_ENTRIES * 8 - 1)
    vcpu.set_descriptor_table("idt", 0, 0)
    for name in ("ds", "es", "fs", "gs", "ss"):
        vcpu.set_segment(name, segment(DATA, layout.SEL_DATA))
    vcpu.set_segment("tr", segment(TSS64, layout.SEL_TSS, boot_base + layout.TSS, TSS_SIZE - 1))
    vcpu.set_register("rflags", RFLAGS_FIXED)


def enter_long_mode(vcpu: X86VCpu, *, boot_base: int, entry: int, rsp: int, rsi: int = 0, rdi: int = 0) -> None:
    """Start at ``entry`` in 64-bit mode, CPL0, interrupts off, identity-mapped memory."""
    _common(vcpu, boot_base)
    vcpu.set_segment("cs", segment(CODE64, layout.SEL_CODE64))
    vcpu.set_register("cr3", boot_base + layout.PML4)
    vcpu.set_register("cr4", CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT)
    vcpu.set_register("efer", EFER_LME | EFER_LMA)
    vcpu.set_register("cr0", CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG)
    for name, value in (("rip", entry), ("rsp", rsp), ("rsi", rsi), ("rdi", rdi)):
        vcpu.set_register(name, value)


def enter_protected_mode(vcpu: X86VCpu, *, boot_base: int, entry: int, rbx: int) -> None:
    """Start at ``entry`` in 32-bit protected mode, paging off (the PVH boot ABI, EBX = start_info)."""
    _common(vcpu, boot_base)
    vcpu.set_segment("cs", segment(CODE32, layout.SEL_CODE32))
    vcpu.set_register("cr4", 0)
    vcpu.set_register("efer", 0)
    vcpu.set_register("cr0", CR0_PE | CR0_ET)
    vcpu.set_register("rip", entry)
    vcpu.set_register("rbx", rbx)
