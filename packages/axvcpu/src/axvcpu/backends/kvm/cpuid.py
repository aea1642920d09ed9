"""CPUID leaves as plain values, and the per-vCPU patch a guest needs to tell its CPUs apart.

KVM_GET_SUPPORTED_CPUID describes the host, not a vCPU: every vCPU must get its own APIC id in
leaf 1 EBX[31:24] (xAPIC id) and in leaves 0xB/0x1F EDX (x2APIC id), or an SMP guest sees all
its CPUs as one (leaf 1 has only 8 bits: ids above 255 are for x2APIC guests). Leaf 1 ECX bit 31
tells the guest it runs under a hypervisor, as QEMU does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

HYPERVISOR_BIT = 1 << 31
"""CPUID.1:ECX[31], reserved for hypervisors to announce themselves."""

TOPOLOGY_LEAVES = (0xB, 0x1F)
"""Extended topology leaves; EDX of every subleaf is the x2APIC id."""


@dataclass(frozen=True, slots=True)
class CpuidEntry:
    """One CPUID leaf/subleaf as KVM reports it (struct kvm_cpuid_entry2 without padding)."""

    function: int
    index: int
    flags: int
    eax: int
    ebx: int
    ecx: int
    edx: int

    @classmethod
    def from_c(cls, entry: Any) -> CpuidEntry:
        return cls(entry.function, entry.index, entry.flags, entry.eax, entry.ebx, entry.ecx, entry.edx)

    def to_c(self, entry: Any) -> None:
        """Fill a cffi ``struct kvm_cpuid_entry2``."""
        for name in ("function", "index", "flags", "eax", "ebx", "ecx", "edx"):
            setattr(entry, name, getattr(self, name))


def for_vcpu(entries: Iterable[CpuidEntry], vcpu_id: int) -> list[CpuidEntry]:
    """``entries`` with the APIC ids of vCPU ``vcpu_id`` and the hypervisor bit patched in."""
    if not 0 <= vcpu_id <= 0xFFFF_FFFF:
        raise ValueError(f"vCPU id {vcpu_id} is not a 32-bit x2APIC id")
    patched = []
    for entry in entries:
        if entry.function == 1:
            ebx = (entry.ebx & 0x00FF_FFFF) | ((vcpu_id & 0xFF) << 24)
            entry = replace(entry, ebx=ebx, ecx=entry.ecx | HYPERVISOR_BIT)
        elif entry.function in TOPOLOGY_LEAVES:
            entry = replace(entry, edx=vcpu_id)
        patched.append(entry)
    return patched
