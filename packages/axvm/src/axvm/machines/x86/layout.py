"""Where the VMM puts its boot structures in an x86_64 guest's RAM.

Everything lives in one "boot area" at the start of the lowest RAM region (GPA 0 in every
config shipped here). Offsets are chosen so the Linux zero page and command line sit where
the boot protocol suggests and the legacy MP table sits where Linux searches for it.

    +0x01000  boot info (raw guests) or Linux zero page (boot_params), one page
    +0x02000  kernel command line, one page (x86 COMMAND_LINE_SIZE is 2048)
    +0x03000  GDT (7 descriptors); +0x03800 TSS
    +0x04000  PML4; +0x05000 PDPT; +0x06000.. page directories (2 MiB pages)
    +0x20000  boot stacks, one 4 KiB page per vCPU
"""

from __future__ import annotations

from collections.abc import Iterable

from ...config import VmMemConfig

BOOT_INFO = 0x1000
CMDLINE = 0x2000
CMDLINE_MAX = 0x1000
GDT = 0x3000
TSS = 0x3800
PML4 = 0x4000
PDPT = 0x5000
PAGE_DIRECTORIES = 0x6000
MAX_PAGE_DIRECTORIES = 16
"""16 directories of 2 MiB pages identity-map the first 16 GiB, more than the tests' guests use."""
STACKS = 0x20000
STACK_SIZE = 0x1000
MAX_BOOT_VCPUS = 32
BOOT_AREA_SIZE = STACKS + STACK_SIZE * MAX_BOOT_VCPUS

LEGACY_HOLE = (0x9_FC00, 0x10_0000)
"""EBDA, VGA and BIOS area: reported reserved in e820 when RAM covers it; the MP table sits at its start."""
MP_TABLE = LEGACY_HOLE[0]
"""Linux looks for the MP floating pointer in the last KiB of base memory, among other places."""

LAPIC_BASE = 0xFEE0_0000
IOAPIC_BASE = 0xFEC0_0000

# GDT selectors. 0x10/0x18 are what Linux's 64-bit boot protocol requires (__BOOT_CS, __BOOT_DS).
SEL_CODE32 = 0x08
SEL_CODE64 = 0x10
SEL_DATA = 0x18
SEL_USER_DATA = 0x20 | 3
SEL_USER_CODE64 = 0x28 | 3
SEL_TSS = 0x30


def boot_base(regions: Iterable[VmMemConfig]) -> int:
    """Where the boot area starts: the lowest RAM region (the loaders plan and the machine
    writes what is placed relative to it)."""
    return min(region.gpa for region in regions)


def cmdline_image(cmdline: bytes) -> bytes:
    """The command line as the boot area holds it at ``CMDLINE``: at most ``CMDLINE_MAX - 1``
    bytes, then a NUL (loaders refuse a longer one before it gets here)."""
    return cmdline[: CMDLINE_MAX - 1] + b"\0"
