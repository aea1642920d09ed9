"""Damaged kernel images into the x86 loader: UserError naming the key, or a boot plan; RAM only.

Small valid images are built here, byte by byte (an ELF64 with PT_LOAD segments and a Xen PVH
or Linux note; a bzImage around each compression the loader reads), then damaged the ways a bad
download or a hostile file would be: bytes flipped, header fields set to extremes (offsets and
sizes up to 2^64), the file cut short. The loader must answer with its own error (a one-line
UserError per problem naming the config key) or a boot plan, never IndexError, struct.error,
MemoryError and the like, and must write only guest RAM: a guard region just past RAM (mapped,
writable, but not in the config) must come through untouched.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import struct
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import GuestMemory, GuestMemoryRegion
from axvisor import UserError
from axvisor.loaders.x86 import load_x86_kernel
from axvm import parse_config
from axvm.machine import BootPlan

RAM_SIZE = 0x400_0000
GUARD = (RAM_SIZE, 0x1_0000)
FILE = Path("/nonexistent/axvisor-fuzz/vm.toml")
CONFIG = f"""
[base]
id = 1
name = "fuzz"
vm_type = 2
cpu_num = 1
arch = "x86_64"
[kernel]
entry_point = 0x20_0000
kernel_path = "kernel.img"
kernel_load_addr = 0x20_0000
cmdline = "console=ttyS0"
memory_regions = [[0x0, {RAM_SIZE:#x}, 0x7, 0]]
"""

# -- images built here --------------------------------------------------------------------------

EHDR = struct.Struct("<4sBBBBB7xHHIQQQIHHHHHH")  # ELF64 header, 64 bytes
PHDR = struct.Struct("<IIQQQQQQ")  # ELF64 program header, 56 bytes
PT_LOAD, PT_NOTE = 1, 4
CODE = b"\x90\x90\xf4" + bytes(0xFD) + b"\xf4"  # nop; nop; hlt ... and a hlt at +0x100 (the PVH entry)


def note(name: bytes, kind: int, desc: bytes) -> bytes:
    def pad(data: bytes) -> bytes:
        return data + bytes(-len(data) % 4)

    return struct.pack("<III", len(name), len(desc), kind) + pad(name) + pad(desc)


def elf(kind: str) -> bytes:
    """A static x86_64 executable: code at 0x20_0000 (bss after it), maybe a PVH or Linux note."""
    notes = {"pvh": note(b"Xen\0", 18, struct.pack("<I", 0x20_0100)), "linux": note(b"Linux\0", 6, bytes(4))}
    note_data = notes.get(kind, b"")
    phnum = 2 if note_data else 1
    data_offset = EHDR.size + phnum * PHDR.size
    code_offset = data_offset + len(note_data)
    header = EHDR.pack(
        b"\x7fELF", 2, 1, 1, 0, 0, 2, 62, 1, 0x20_0000, EHDR.size, 0, 0, EHDR.size, PHDR.size, phnum, 64, 0, 0
    )
    phdrs = PHDR.pack(PT_LOAD, 5, code_offset, 0x20_0000, 0x20_0000, len(CODE), len(CODE) + 0x1000, 0x1000)
    if note_data:
        phdrs += PHDR.pack(PT_NOTE, 4, data_offset, 0, 0, len(note_data), len(note_data), 4)
    return header + phdrs + note_data + CODE


COMPRESSORS = {
    "gzip": gzip.compress,
    "xz": lzma.compress,
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    "bzip2": bz2.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


def bzimage(payload: bytes) -> bytes:
    """Protocol 2.15 header, one setup sector, the payload 0x100 bytes into the protected-mode part."""
    image = bytearray(1024 + 0x100 + len(payload))
    image[0x1F1] = 1  # setup_sects
    image[0x201] = 0x66  # the header runs to 0x268
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, 0x020F)
    struct.pack_into("<H", image, 0x236, 1)  # XLF_KERNEL_64
    struct.pack_into("<II", image, 0x248, 0x100, len(payload))
    image[1024 + 0x100 :] = payload
    return bytes(image)


IMAGES = {f"elf-{kind}": elf(kind) for kind in ("plain", "pvh", "linux")}
IMAGES |= {f"bzimage-{name}": bzimage(compress(elf("linux"))) for name, compress in COMPRESSORS.items()}

PAYLOAD = 1024 + 0x100  # where a bzImage here keeps its compressed kernel (the ELF's code is near 0x100)
# Header fields worth setting to extremes: (offset, size) in an ELF and in a bzImage.
PH = EHDR.size
ELF_FIELDS = [
    (32, 8),
    (40, 8),
    (54, 2),
    (56, 2),
    (58, 2),
    (60, 2),
    (62, 2),
    (24, 8),
    (PH, 4),
    (PH + 8, 8),
    (PH + 24, 8),
    (PH + 32, 8),
    (PH + 40, 8),
    (PH + 56 + 8, 8),
    (PH + 56 + 32, 8),
    (PH + 112, 4),
    (PH + 116, 4),
]
BZ_FIELDS = [
    (0x1F1, 1),
    (0x201, 1),
    (0x206, 2),
    (0x236, 2),
    (0x248, 4),
    (0x24C, 4),
    (0x258, 8),
    (0x260, 4),
    (1024 + 0x100, 4),
    (1024 + 0x104, 4),
]
EXTREMES = [
    0,
    1,
    2,
    0x7F,
    0xFF,
    0x100,
    0xFFFF,
    0x1_0000,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    1 << 32,
    0x400_0000,
    1 << 63,
    (1 << 64) - 1,
]


def damaged(image: bytes, fields: list, flips: list, sets: list, cut: int | None) -> bytes:
    data = bytearray(image)
    for index, value in sets:
        offset, size = fields[index % len(fields)]
        if offset + size <= len(data):
            data[offset : offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    return bytes(data)


# -- the property ----------------------------------------------------------------------------------

CONFIG_OBJ = parse_config(CONFIG, FILE)
MEMORY = GuestMemory([GuestMemoryRegion.anonymous(0, RAM_SIZE), GuestMemoryRegion.anonymous(*GUARD)])


def guard_digest() -> bytes:
    return hashlib.sha256(MEMORY.read(*GUARD)).digest()


GUARD_DIGEST = guard_digest()


@settings(max_examples=200)
@given(
    name=st.sampled_from(sorted(IMAGES)),
    sets=st.lists(
        st.tuples(st.integers(0, 63), st.one_of(st.sampled_from(EXTREMES), st.integers(0, (1 << 64) - 1))), max_size=3
    ),
    flips=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 0x300), st.integers(PAYLOAD, PAYLOAD + 0x80), st.integers(0, 1 << 20)),
            st.integers(0, 255),
        ),
        max_size=4,
    ),
    cut=st.one_of(st.none(), st.none(), st.integers(0, 0x300), st.integers(0, 1 << 20)),
    host_decompress=st.booleans(),
)
def test_damaged_images_give_a_user_error_or_a_plan_and_touch_only_ram(
    name: str, sets: list, flips: list, cut: int | None, host_decompress: bool
) -> None:
    fields = ELF_FIELDS if name.startswith("elf") else BZ_FIELDS
    kernel = damaged(IMAGES[name], fields, flips, sets, cut)
    try:
        plan = load_x86_kernel(CONFIG_OBJ, MEMORY, kernel, host_decompress)
    except UserError as error:
        lines = str(error).splitlines()
        assert lines and all(line.startswith(f"{FILE}: ") for line in lines), lines
    else:
        assert isinstance(plan, BootPlan) and 0 <= plan.entry < 1 << 64
    assert guard_digest() == GUARD_DIGEST


def test_the_undamaged_images_load() -> None:
    for name, image in IMAGES.items():
        plan = load_x86_kernel(CONFIG_OBJ, MEMORY, image)
        assert plan.protocol == {"plain": "raw", "pvh": "pvh"}.get(name.removeprefix("elf-"), "linux"), name
        assert MEMORY.read(0x20_0000, 3) == CODE[:3]


def with_field(image: bytes, offset: int, size: int, value: int) -> bytes:
    return image[:offset] + value.to_bytes(size, "little") + image[offset + size :]


def corrupt_deflate() -> bytes:
    """A gzip payload whose deflate stream is damaged past the header: zlib.error, not OSError."""
    payload = bytearray(COMPRESSORS["gzip"](elf("linux")))
    payload[22] ^= 0xFF
    return bzimage(bytes(payload))


LINUX_NOTE = IMAGES["elf-linux"].index(b"Linux\0")


@pytest.mark.parametrize(
    ("image", "before"),
    [
        (with_field(IMAGES["elf-plain"], PH + 40, 8, 1 << 40), "MemoryError: a 1 TiB p_memsz was padded in memory"),
        (with_field(IMAGES["elf-plain"], 32, 8, 1 << 63), "OverflowError from pyelftools: e_phoff past 2^63"),
        (IMAGES["elf-linux"][: LINUX_NOTE + 2], "ArrayError from pyelftools: a note name cut short"),
        (IMAGES["bzimage-gzip"][:0x250], "struct.error: a setup header cut short"),
        (corrupt_deflate(), "zlib.error: a damaged gzip payload"),
    ],
    ids=["huge-memsz", "huge-phoff", "cut-note", "cut-header", "bad-deflate"],
)
def test_each_damage_found_here_is_a_user_error(image: bytes, before: str) -> None:
    with pytest.raises(UserError, match=r"kernel\.kernel_path: kernel\.img: "):
        load_x86_kernel(CONFIG_OBJ, MEMORY, image)
