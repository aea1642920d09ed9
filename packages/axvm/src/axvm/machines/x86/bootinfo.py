"""The boot information page a raw 64-bit guest finds at RSI (our own small protocol).

Raw images have no boot protocol of their own, so the VMM tells them what they need: how many
vCPUs there are, where RAM is, and the command line. RDI holds the vCPU's index.

    u32 magic "AXVB" (0x42565841)   u32 version (1)
    u32 cpu_count                    u32 region_count
    u64 cmdline_gpa                  u32 cmdline_len   u32 reserved
    region_count x { u64 gpa, u64 size, u32 type (1 RAM, 2 reserved), u32 reserved }
"""

from __future__ import annotations

import struct

from .e820 import E820Entry

BOOT_INFO_MAGIC = 0x4256_5841
BOOT_INFO_VERSION = 1
HEADER = struct.Struct("<IIIIQII")
REGION = struct.Struct("<QQII")


def boot_info(cpu_count: int, regions: list[E820Entry], cmdline_gpa: int, cmdline_len: int) -> bytes:
    header = HEADER.pack(BOOT_INFO_MAGIC, BOOT_INFO_VERSION, cpu_count, len(regions), cmdline_gpa, cmdline_len, 0)
    return header + b"".join(REGION.pack(entry.addr, entry.size, entry.type, 0) for entry in regions)
