"""The vCPU's registers as two cached KVM structures, written back only when changed.

Theory of operation. ``kvm_regs`` (general registers) and ``kvm_sregs`` (segments, control
registers, descriptor tables) are each fetched on first access after a run and marked dirty on
a write; ``before_run()`` writes back only the dirty ones and forgets both, and is only called
when ``touched`` says there is something to do. A run loop that never touches registers
therefore pays no register ioctl at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...x86 import DESCRIPTOR_TABLES, GENERAL_REGISTERS, SEGMENTS, SYSTEM_REGISTERS, Segment

_U64 = 1 << 64
_GENERAL = frozenset(GENERAL_REGISTERS)
_SYSTEM = frozenset(SYSTEM_REGISTERS)
_SEGMENTS = frozenset(SEGMENTS)
_TABLES = frozenset(DESCRIPTOR_TABLES)
_SEGMENT_FIELDS = ("base", "limit", "selector", "type", "present", "dpl", "db", "s", "l", "g", "avl")

Ioctl = Callable[[str, int, Any], int]


@dataclass(frozen=True, slots=True)
class FpuState:
    """The x87/SSE control state that matters at reset: KVM's defaults are FNINIT's and the SDM's."""

    fcw: int = 0x37F
    fsw: int = 0
    ftwx: int = 0
    mxcsr: int = 0x1F80


class RegisterCache:
    """kvm_regs and kvm_sregs of one vCPU behind name-based accessors."""

    def __init__(self, ffi: Any, lib: Any, ioctl: Ioctl) -> None:
        self._lib = lib
        self._ioctl = ioctl
        self._regs = ffi.new("struct kvm_regs *")
        self._sregs = ffi.new("struct kvm_sregs *")
        self._regs_valid = self._sregs_valid = False
        self._regs_dirty = self._sregs_dirty = False
        self.touched = False
        """Something was fetched or changed since the last run: ``before_run()`` has work to do."""

    # -- cache control ---------------------------------------------------------------------------

    def regs(self) -> Any:
        if not self._regs_valid:
            self._ioctl("KVM_GET_REGS", self._lib.KVM_GET_REGS, self._regs)
            self._regs_valid = self.touched = True
        return self._regs

    def sregs(self) -> Any:
        if not self._sregs_valid:
            self._ioctl("KVM_GET_SREGS", self._lib.KVM_GET_SREGS, self._sregs)
            self._sregs_valid = self.touched = True
        return self._sregs

    def before_run(self) -> None:
        """Write back what changed, then forget everything: the guest is about to run."""
        if self._sregs_dirty:
            self._ioctl("KVM_SET_SREGS", self._lib.KVM_SET_SREGS, self._sregs)
            self._sregs_dirty = False
        if self._regs_dirty:
            self._ioctl("KVM_SET_REGS", self._lib.KVM_SET_REGS, self._regs)
            self._regs_dirty = False
        self._regs_valid = self._sregs_valid = self.touched = False

    # -- accessors -------------------------------------------------------------------------------

    def get(self, name: str) -> int:
        if name in _GENERAL:
            return int(getattr(self.regs(), name))
        if name in _SYSTEM:
            return int(getattr(self.sregs(), name))
        raise KeyError(f"unknown x86 register {name!r}")

    def set(self, name: str, value: int) -> None:
        if not 0 <= value < _U64:
            raise ValueError(f"register {name} value {value:#x} is not a 64-bit unsigned integer")
        if name in _GENERAL:
            setattr(self.regs(), name, value)
            self._regs_dirty = self.touched = True
        elif name in _SYSTEM:
            setattr(self.sregs(), name, value)
            self._sregs_dirty = self.touched = True
        else:
            raise KeyError(f"unknown x86 register {name!r}")

    def get_segment(self, name: str) -> Segment:
        if name not in _SEGMENTS:
            raise KeyError(f"unknown x86 segment register {name!r}")
        seg = getattr(self.sregs(), name)
        fields = {field: int(getattr(seg, field)) for field in _SEGMENT_FIELDS}
        return Segment(**fields, unusable=bool(seg.unusable))

    def set_segment(self, name: str, segment: Segment) -> None:
        if name not in _SEGMENTS:
            raise KeyError(f"unknown x86 segment register {name!r}")
        seg = getattr(self.sregs(), name)
        for field in _SEGMENT_FIELDS:
            setattr(seg, field, int(getattr(segment, field)))
        seg.unusable = 1 if segment.unusable else 0
        self._sregs_dirty = self.touched = True

    def get_descriptor_table(self, name: str) -> tuple[int, int]:
        if name not in _TABLES:
            raise KeyError(f"unknown x86 descriptor table {name!r} (expected 'gdt' or 'idt')")
        table = getattr(self.sregs(), name)
        return int(table.base), int(table.limit)

    def set_descriptor_table(self, name: str, base: int, limit: int) -> None:
        if name not in _TABLES:
            raise KeyError(f"unknown x86 descriptor table {name!r} (expected 'gdt' or 'idt')")
        if not 0 <= base < _U64 or not 0 <= limit <= 0xFFFF:
            raise ValueError(f"{name} base {base:#x} / limit {limit:#x} out of range (limit is 16 bits)")
        table = getattr(self.sregs(), name)
        table.base = base
        table.limit = limit
        self._sregs_dirty = self.touched = True
