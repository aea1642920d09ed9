"""The Intel MultiProcessor Specification 1.4 tables, so an OS finds every vCPU and the IOAPIC.

A floating pointer ("_MP_", 16 bytes) points at a configuration table ("PCMP") listing one
processor entry per vCPU (APIC id = vCPU id), an ISA bus, the IOAPIC (KVM's in-kernel one at
0xFEC00000) and the 16 ISA interrupts routed 1:1 to IOAPIC pins, which is KVM's default GSI
routing. Checksums make each structure's bytes sum to zero.
"""

from __future__ import annotations

import struct

from .layout import IOAPIC_BASE, LAPIC_BASE

APIC_VERSION = 0x14
IOAPIC_VERSION = 0x11
CPU_ENABLED = 1
CPU_BOOTSTRAP = 2
ISA_IRQS = 16
MAX_MP_CPUS = 32
"""The table must fit in the 1 KiB it is given below 640 KiB: 44 + 20 * 32 + 8 + 8 + 16 * 8 + 16 bytes."""


def _checksum(data: bytes) -> int:
    return -sum(data) & 0xFF


def _with_checksum(data: bytearray, offset: int) -> bytes:
    data[offset] = _checksum(bytes(data))
    return bytes(data)


def mp_table(base: int, cpu_count: int) -> bytes:
    """Floating pointer at ``base`` followed by the configuration table."""
    if not 1 <= cpu_count <= MAX_MP_CPUS:
        raise ValueError(f"the MP table describes 1..{MAX_MP_CPUS} vCPUs, not {cpu_count}")
    ioapic_id = cpu_count
    entries = []
    for cpu in range(cpu_count):
        flags = CPU_ENABLED | (CPU_BOOTSTRAP if cpu == 0 else 0)
        entries.append(struct.pack("<BBBBIII", 0, cpu, APIC_VERSION, flags, 0x600, 0x201, 0) + b"\0" * 4)
    entries.append(struct.pack("<BB6s", 1, 0, b"ISA   "))
    entries.append(struct.pack("<BBBBI", 2, ioapic_id, IOAPIC_VERSION, 1, IOAPIC_BASE))
    for irq in range(ISA_IRQS):
        entries.append(struct.pack("<BBHBBBB", 3, 0, 0, 0, irq, ioapic_id, irq))  # INT, bus 0 irq -> pin
    entries.append(struct.pack("<BBHBBBB", 4, 3, 0, 0, 0, 0xFF, 0))  # ExtINT -> LINT0 of every APIC
    entries.append(struct.pack("<BBHBBBB", 4, 1, 0, 0, 0, 0xFF, 1))  # NMI -> LINT1
    body = b"".join(entries)
    table_base = base + 16
    header = bytearray(struct.pack("<4sHBB8s12sIHHIHBB", b"PCMP", 44 + len(body), 4, 0, b"AXVISOR ",
                                   b"PYTHON VM   ", 0, 0, len(entries), LAPIC_BASE, 0, 0, 0))
    table = bytearray(header + body)
    table = bytearray(_with_checksum(table, 7))
    pointer = bytearray(struct.pack("<4sIBBBB4s", b"_MP_", table_base, 1, 4, 0, 0, b"\0" * 4))
    return _with_checksum(pointer, 10) + bytes(table)
