"""The PVH boot ABI's start_info (Xen's arch-x86/hvm/start_info.h, version 1).

The kernel is entered in 32-bit protected mode with paging off and EBX pointing at this
structure; its memory map uses e820 types.
"""

from __future__ import annotations

import struct

from .e820 import E820Entry

START_INFO_MAGIC = 0x336E_C578
START_INFO = struct.Struct("<IIIIQQQQII")  # magic version flags nr_modules modlist cmdline rsdp memmap entries rsvd
MEMMAP_ENTRY = struct.Struct("<QQII")


def start_info(base: int, cmdline_gpa: int, e820: list[E820Entry]) -> bytes:
    """start_info at ``base`` with the memory map right after it."""
    memmap_gpa = base + START_INFO.size
    header = START_INFO.pack(START_INFO_MAGIC, 1, 0, 0, 0, cmdline_gpa, 0, memmap_gpa, len(e820), 0)
    return header + b"".join(MEMMAP_ENTRY.pack(e.addr, e.size, e.type, 0) for e in e820)
