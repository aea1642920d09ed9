"""Linux's x86 boot_params ("zero page") for the 64-bit boot protocol.

Offsets are from Documentation/arch/x86/boot.rst and zero-page.rst: the setup header sits at
0x1F1 (copied from the bzImage when there is one), e820_entries at 0x1E8, the e820 table
(20-byte entries, at most 128) at 0x2D0. The loader fills type_of_loader, loadflags,
cmd_line_ptr and the initrd fields; the kernel is entered at its 64-bit entry with RSI
pointing here.
"""

from __future__ import annotations

import struct

from .e820 import E820Entry

ZERO_PAGE_SIZE = 4096
SETUP_HEADER = 0x1F1
SETUP_HEADER_END = 0x290
"""The header is at most up to the kernel_info offset of protocol 2.15; what follows is ours to zero."""
E820_ENTRIES = 0x1E8
E820_TABLE = 0x2D0
E820_MAX = 128
HDRS_MAGIC = 0x5372_6448  # "HdrS"
BOOT_FLAG = 0xAA55

TYPE_OF_LOADER = 0x210
LOADFLAGS = 0x211
RAMDISK_IMAGE = 0x218
RAMDISK_SIZE = 0x21C
HEAP_END_PTR = 0x224
CMD_LINE_PTR = 0x228
EXT_RAMDISK_IMAGE = 0xC0
EXT_RAMDISK_SIZE = 0xC4
EXT_CMD_LINE_PTR = 0xC8

LOADED_HIGH = 0x01
KEEP_SEGMENTS = 0x40
CAN_USE_HEAP = 0x80
LOADER_UNDEFINED = 0xFF
"""type_of_loader 0xFF: a boot loader with no assigned id, as the boot protocol allows."""


def minimal_setup_header() -> bytes:
    """A setup header for a kernel loaded without its bzImage (an ELF vmlinux)."""
    header = bytearray(SETUP_HEADER_END - SETUP_HEADER)
    struct.pack_into("<H", header, 0x1FE - SETUP_HEADER, BOOT_FLAG)
    struct.pack_into("<IH", header, 0x202 - SETUP_HEADER, HDRS_MAGIC, 0x020F)
    return bytes(header)


def boot_params(setup_header: bytes, *, cmdline_gpa: int, initrd: tuple[int, int] | None,
                e820: list[E820Entry]) -> bytes:
    """The zero page for a kernel whose setup header is ``setup_header`` (bytes from 0x1F1)."""
    if len(e820) > E820_MAX:
        raise ValueError(f"{len(e820)} memory map entries; Linux's zero page holds {E820_MAX}")
    page = bytearray(ZERO_PAGE_SIZE)
    header = setup_header[: SETUP_HEADER_END - SETUP_HEADER]
    page[SETUP_HEADER: SETUP_HEADER + len(header)] = header
    page[TYPE_OF_LOADER] = LOADER_UNDEFINED
    page[LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP | KEEP_SEGMENTS
    struct.pack_into("<H", page, HEAP_END_PTR, 0xFE00)
    struct.pack_into("<I", page, CMD_LINE_PTR, cmdline_gpa & 0xFFFF_FFFF)
    struct.pack_into("<I", page, EXT_CMD_LINE_PTR, cmdline_gpa >> 32)
    if initrd is not None:
        start, size = initrd
        struct.pack_into("<II", page, RAMDISK_IMAGE, start & 0xFFFF_FFFF, size & 0xFFFF_FFFF)
        struct.pack_into("<I", page, EXT_RAMDISK_IMAGE, start >> 32)
        struct.pack_into("<I", page, EXT_RAMDISK_SIZE, size >> 32)
    page[E820_ENTRIES] = len(e820)
    for index, entry in enumerate(e820):
        struct.pack_into("<QQI", page, E820_TABLE + 20 * index, entry.addr, entry.size, entry.type)
    return bytes(page)
