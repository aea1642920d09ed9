"""x86_64 vCPU state that a VMM sets before the first run, independent of the backend.

An ``ArchVCpu`` only knows registers by name; an x86 VMM also needs segment registers with their
hidden parts (base, limit, attributes), the GDT/IDT registers and MSRs to enter long mode
directly. ``X86VCpu`` is that interface, as a runtime-checkable Protocol so machine code can ask
``isinstance(vcpu.arch, X86VCpu)`` without importing any backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

GENERAL_REGISTERS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
)  # fmt: skip
SYSTEM_REGISTERS = ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")
REGISTERS = GENERAL_REGISTERS + SYSTEM_REGISTERS
"""Every name ``get_register``/``set_register`` accept; others raise KeyError."""
SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")
DESCRIPTOR_TABLES = ("gdt", "idt")

CR0_PE = 1 << 0
CR0_MP = 1 << 1
CR0_ET = 1 << 4
CR0_NE = 1 << 5
CR0_WP = 1 << 16
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
CR4_OSFXSR = 1 << 9
CR4_OSXMMEXCPT = 1 << 10
EFER_SCE = 1 << 0
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
EFER_NXE = 1 << 11
RFLAGS_FIXED = 1 << 1
"""Bit 1 of RFLAGS always reads 1; KVM rejects state without it on some hosts."""
RFLAGS_IF = 1 << 9
RFLAGS_IOPL3 = 3 << 12
"""IOPL 3: port I/O allowed at CPL3 (the tiny test guests rely on it)."""

_U64 = 1 << 64


@dataclass(frozen=True, slots=True)
class Segment:
    """A segment register with its hidden part, as the CPU holds it (not a GDT descriptor).

    ``type`` is the 4-bit descriptor type (0xB: code execute/read accessed, 0x3: data
    read/write accessed, 0xB with ``s=0``: busy 64-bit TSS); ``l`` marks 64-bit code.
    """

    base: int
    limit: int
    selector: int
    type: int
    present: int
    dpl: int
    db: int
    s: int
    l: int  # noqa: E741 - the SDM's name for the 64-bit code flag
    g: int
    avl: int = 0
    unusable: bool = False

    def __post_init__(self) -> None:
        bounds = {"base": _U64, "limit": 1 << 32, "selector": 1 << 16, "type": 16, "dpl": 4}
        for name, limit in bounds.items():
            value = getattr(self, name)
            if not 0 <= value < limit:
                raise ValueError(f"segment {name} {value:#x} is outside 0..{limit - 1:#x}")
        for name in ("present", "db", "s", "l", "g", "avl"):
            if getattr(self, name) not in (0, 1):
                raise ValueError(f"segment flag {name} must be 0 or 1, not {getattr(self, name)!r}")

    @classmethod
    def code64(cls, selector: int, dpl: int = 0) -> Segment:
        """A flat 64-bit code segment."""
        return cls(0, 0xFFFF_FFFF, selector, type=0xB, present=1, dpl=dpl, db=0, s=1, l=1, g=1)

    @classmethod
    def data(cls, selector: int, dpl: int = 0) -> Segment:
        """A flat read/write data segment (also right for SS)."""
        return cls(0, 0xFFFF_FFFF, selector, type=0x3, present=1, dpl=dpl, db=1, s=1, l=0, g=1)

    @classmethod
    def tss64(cls, selector: int, base: int = 0, limit: int = 0x67) -> Segment:
        """A busy 64-bit TSS, what TR must hold for VM entry."""
        return cls(base, limit, selector, type=0xB, present=1, dpl=0, db=0, s=0, l=0, g=0)

    @classmethod
    def null(cls) -> Segment:
        """An unusable segment (a null selector, or an LDT that is not used)."""
        return cls(0, 0, 0, type=0, present=0, dpl=0, db=0, s=0, l=0, g=0, unusable=True)


@runtime_checkable
class X86VCpu(Protocol):
    """What an x86_64 backend vCPU offers beyond ArchVCpu; names are checked (KeyError names the name)."""

    def get_register(self, name: str) -> int: ...

    def set_register(self, name: str, value: int) -> None: ...

    def get_segment(self, name: str) -> Segment: ...

    def set_segment(self, name: str, segment: Segment) -> None: ...

    def get_descriptor_table(self, name: str) -> tuple[int, int]:
        """(base, limit) of "gdt" or "idt"."""
        ...

    def set_descriptor_table(self, name: str, base: int, limit: int) -> None: ...

    def get_msrs(self, indices: Iterable[int]) -> dict[int, int]: ...

    def set_msrs(self, values: Mapping[int, int]) -> None: ...
