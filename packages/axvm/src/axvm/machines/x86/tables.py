"""The CPU structures a 64-bit guest needs on its first instruction: GDT, TSS, page tables.

Descriptor and page-table formats are from the Intel SDM vol. 3 (3.4.5 segment descriptors,
7.2.3 TSS descriptor, 4.5 4-level paging).
"""

from __future__ import annotations

import struct

from axaddrspace import GuestMemory

from . import layout
from .segments import CODE32, CODE64, DATA, TSS64, USER_CODE64, USER_DATA, SegmentSpec

PTE_PRESENT = 1 << 0
PTE_WRITE = 1 << 1
PTE_USER = 1 << 2
PTE_LARGE = 1 << 7
HUGE_PAGE = 2 << 20
TSS_SIZE = 0x68


def descriptor(spec: SegmentSpec, base: int = 0, limit: int = 0xFFFFF) -> int:
    """An 8-byte segment descriptor."""
    access = spec.type | (spec.s << 4) | (spec.dpl << 5) | (1 << 7)
    flags = (spec.l << 1) | (spec.db << 2) | (spec.g << 3)
    return ((limit & 0xFFFF) | (base & 0xFFFFFF) << 16 | access << 40 | ((limit >> 16) & 0xF) << 48
            | flags << 52 | ((base >> 24) & 0xFF) << 56)


def gdt_bytes(tss_base: int) -> bytes:
    """The GDT: null, code32, code64, data, user data, user code64, then the 16-byte TSS descriptor."""
    entries = [0, descriptor(CODE32), descriptor(CODE64), descriptor(DATA), descriptor(USER_DATA),
               descriptor(USER_CODE64)]
    low = descriptor(TSS64, tss_base, TSS_SIZE - 1)
    return struct.pack(f"<{len(entries) + 2}Q", *entries, low, tss_base >> 32)


def tss_bytes(rsp0: int) -> bytes:
    """A 64-bit TSS whose RSP0 is ``rsp0`` and whose I/O map base lies past the limit (no bitmap)."""
    tss = bytearray(TSS_SIZE)
    struct.pack_into("<Q", tss, 4, rsp0)
    struct.pack_into("<H", tss, 0x66, TSS_SIZE)
    return bytes(tss)


def identity_page_tables(boot_base: int, limit: int) -> dict[int, bytes]:
    """PML4, PDPT and page directories mapping [0, limit) 1:1 with 2 MiB user-accessible pages.

    User-accessible (U/S set) so guests that drop to CPL3 early, as the test guests do on PVM,
    still reach all of their memory. Returns {guest physical address: table bytes}.
    """
    directories = min(layout.MAX_PAGE_DIRECTORIES, max(1, -(-limit // (1 << 30))))
    flags = PTE_PRESENT | PTE_WRITE | PTE_USER
    pml4 = struct.pack("<Q", boot_base + layout.PDPT | flags).ljust(4096, b"\0")
    pdpt = b"".join(struct.pack("<Q", boot_base + layout.PAGE_DIRECTORIES + i * 4096 | flags)
                    for i in range(directories)).ljust(4096, b"\0")
    tables = {boot_base + layout.PML4: pml4, boot_base + layout.PDPT: pdpt}
    for i in range(directories):
        entries = [(i * 512 + j) * HUGE_PAGE | flags | PTE_LARGE for j in range(512)]
        tables[boot_base + layout.PAGE_DIRECTORIES + i * 4096] = struct.pack("<512Q", *entries)
    return tables


def write_cpu_tables(memory: GuestMemory, boot_base: int, ram_limit: int) -> None:
    """GDT, TSS and identity page tables into guest memory at the boot area."""
    memory.write(boot_base + layout.GDT, gdt_bytes(boot_base + layout.TSS))
    memory.write(boot_base + layout.TSS, tss_bytes(boot_base + layout.STACKS + layout.STACK_SIZE))
    for gpa, table in identity_page_tables(boot_base, max(ram_limit, 4 << 30)).items():
        memory.write(gpa, table)
