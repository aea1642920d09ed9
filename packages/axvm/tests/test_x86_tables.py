"""The x86 boot structures, checked byte by byte against the formats they follow."""

from __future__ import annotations

import struct

import pytest

from axvm.machines.x86 import E820Entry, boot_params, e820_map, layout, minimal_setup_header, mp_table
from axvm.machines.x86.bootinfo import BOOT_INFO_MAGIC, HEADER, REGION, boot_info
from axvm.machines.x86.pvh import START_INFO, START_INFO_MAGIC, start_info
from axvm.machines.x86.segments import CODE64, DATA
from axvm.machines.x86.tables import (
    PTE_LARGE,
    PTE_PRESENT,
    PTE_USER,
    descriptor,
    gdt_bytes,
    identity_page_tables,
    tss_bytes,
)


def test_flat_64bit_code_descriptor_matches_the_sdm_encoding() -> None:
    assert descriptor(CODE64) == 0x00AF_9B00_0000_FFFF
    assert descriptor(DATA) == 0x00CF_9300_0000_FFFF


def test_gdt_layout_matches_the_selectors() -> None:
    gdt = gdt_bytes(0x3800)
    entries = struct.unpack("<8Q", gdt)
    assert entries[0] == 0
    assert entries[layout.SEL_CODE64 // 8] == descriptor(CODE64)
    assert entries[layout.SEL_DATA // 8] == descriptor(DATA)
    assert (entries[layout.SEL_USER_CODE64 // 8] >> 45) & 3 == 3  # DPL 3
    tss_low = entries[layout.SEL_TSS // 8]
    assert (tss_low >> 16) & 0xFFFFFF == 0x3800 and (tss_low >> 40) & 0xF == 0xB


def test_tss_has_rsp0_and_no_io_bitmap() -> None:
    tss = tss_bytes(0x21000)
    assert struct.unpack_from("<Q", tss, 4)[0] == 0x21000
    assert struct.unpack_from("<H", tss, 0x66)[0] >= len(tss)


def walk(tables: dict[int, bytes], vaddr: int) -> int | None:
    """Translate ``vaddr`` through the tables like the MMU (4-level, 2 MiB leaves)."""
    pml4 = min(tables)
    entry = struct.unpack_from("<Q", tables[pml4], ((vaddr >> 39) & 511) * 8)[0]
    if not entry & PTE_PRESENT:
        return None
    pdpt = entry & ~0xFFF & ((1 << 52) - 1)
    entry = struct.unpack_from("<Q", tables[pdpt], ((vaddr >> 30) & 511) * 8)[0]
    if not entry & PTE_PRESENT:
        return None
    pd = entry & ~0xFFF & ((1 << 52) - 1)
    entry = struct.unpack_from("<Q", tables[pd], ((vaddr >> 21) & 511) * 8)[0]
    if not entry & PTE_PRESENT:
        return None
    assert entry & PTE_LARGE and entry & PTE_USER
    return (entry & ~((2 << 20) - 1) & ((1 << 52) - 1)) | (vaddr & ((2 << 20) - 1))


@pytest.mark.parametrize("vaddr", [0, 0x1234, 0x10_0000, 0x3FFF_FFFF, 0xFEE0_0010, 0xFFFF_FFFF])
def test_identity_map_covers_the_first_4gib(vaddr: int) -> None:
    tables = identity_page_tables(0, 4 << 30)
    assert walk(tables, vaddr) == vaddr


def test_identity_map_stops_where_it_says() -> None:
    tables = identity_page_tables(0, 4 << 30)
    assert walk(tables, 4 << 30) is None


def test_e820_cuts_the_legacy_hole_out_of_low_ram() -> None:
    assert e820_map([(0, 0x400_0000)]) == [
        E820Entry(0, 0x9_FC00, 1), E820Entry(0x9_FC00, 0x6_0400, 2), E820Entry(0x10_0000, 0x3F0_0000, 1)]
    assert e820_map([(0x1_0000_0000, 0x1000)]) == [E820Entry(0x1_0000_0000, 0x1000, 1)]


def test_mp_table_checksums_and_cpu_entries() -> None:
    table = mp_table(layout.MP_TABLE, 4)
    pointer, config = table[:16], table[16:]
    assert pointer[:4] == b"_MP_" and sum(pointer) & 0xFF == 0
    assert struct.unpack_from("<I", pointer, 4)[0] == layout.MP_TABLE + 16
    length, count = struct.unpack_from("<H", config, 4)[0], struct.unpack_from("<H", config, 34)[0]
    assert config[:4] == b"PCMP" and sum(config[:length]) & 0xFF == 0 and length == len(config)
    cpus = [config[44 + 20 * i: 44 + 20 * (i + 1)] for i in range(4)]
    assert [cpu[0] for cpu in cpus] == [0] * 4 and [cpu[1] for cpu in cpus] == [0, 1, 2, 3]
    assert cpus[0][3] == 3 and cpus[1][3] == 1  # enabled + bootstrap, enabled
    assert count == 4 + 1 + 1 + 16 + 2
    assert len(mp_table(layout.MP_TABLE, 32)) <= 1024
    with pytest.raises(ValueError):
        mp_table(layout.MP_TABLE, 0)


def test_boot_info_header_and_regions() -> None:
    regions = e820_map([(0, 0x100_0000)])
    info = boot_info(2, regions, 0x2000, 11)
    magic, version, cpus, count, cmdline, length, _ = HEADER.unpack_from(info)
    assert (magic, version, cpus, count, cmdline, length) == (BOOT_INFO_MAGIC, 1, 2, len(regions), 0x2000, 11)
    assert REGION.unpack_from(info, HEADER.size)[:3] == (0, 0x9_FC00, 1)


def test_linux_zero_page_fields() -> None:
    e820 = e820_map([(0, 0x800_0000)])
    page = boot_params(minimal_setup_header(), cmdline_gpa=0x2000, initrd=(0x400_0000, 0x12345), e820=e820)
    assert struct.unpack_from("<H", page, 0x1FE)[0] == 0xAA55 and page[0x202:0x206] == b"HdrS"
    assert page[0x210] == 0xFF and page[0x211] & 0x01
    assert struct.unpack_from("<I", page, 0x228)[0] == 0x2000
    assert struct.unpack_from("<II", page, 0x218) == (0x400_0000, 0x12345)
    assert page[0x1E8] == 3
    assert struct.unpack_from("<QQI", page, 0x2D0 + 20 * 2) == (0x10_0000, 0x800_0000 - 0x10_0000, 1)


def test_pvh_start_info() -> None:
    info = start_info(0x1000, 0x2000, e820_map([(0, 0x100_0000)]))
    fields = START_INFO.unpack_from(info)
    assert fields[0] == START_INFO_MAGIC and fields[1] == 1
    assert fields[5] == 0x2000 and fields[7] == 0x1000 + START_INFO.size and fields[8] == 3
