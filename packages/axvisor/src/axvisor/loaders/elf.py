"""ELF images (pyelftools): PT_LOAD segments copied to their physical addresses.

The entry mode follows the image: a Linux vmlinux (it carries a "Linux" ELF note) is entered
through Linux's 64-bit boot protocol; an image with a PVH note (Xen's XEN_ELFNOTE_PHYS32_ENTRY)
at that 32-bit entry; anything else at e_entry in 64-bit mode with the raw boot info.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

XEN_ELFNOTE_PHYS32_ENTRY = 18
ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class ElfImage:
    segments: list[tuple[int, bytes, int]]  # (physical address, file bytes, memory size)
    entry: int
    pvh_entry: int | None
    is_linux: bool

    @property
    def end(self) -> int:
        return max(addr + memsz for addr, _, memsz in self.segments)


class ElfFormatError(ValueError):
    pass


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def parse_elf(data: bytes) -> ElfImage:
    # pyelftools takes a seventh of a second to import: only ELF images pay for it.
    from elftools.common.exceptions import ELFError
    from elftools.construct.core import ConstructError  # what a note segment's parser raises, unwrapped
    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import NoteSegment

    try:
        elf = ELFFile(io.BytesIO(data))
        segments = []
        pvh_entry = None
        is_linux = False
        for segment in elf.iter_segments():
            if segment["p_type"] == "PT_LOAD" and segment["p_memsz"]:
                segments.append((segment["p_paddr"], segment.data(), segment["p_memsz"]))
            elif isinstance(segment, NoteSegment):  # what pyelftools makes of every PT_NOTE
                for note in segment.iter_notes():
                    n_type: object = note["n_type"]  # a name for types pyelftools knows, else the int (Xen's)
                    if note["n_name"] == "Xen" and n_type == XEN_ELFNOTE_PHYS32_ENTRY:
                        desc = note["n_descdata"]
                        pvh_entry = struct.unpack_from("<I" if len(desc) == 4 else "<Q", desc)[0]
                    elif note["n_name"] == "Linux":
                        is_linux = True
        entry = elf.header["e_entry"]
    except (ELFError, ConstructError, struct.error, ValueError, KeyError, OverflowError) as error:
        raise ElfFormatError(f"not a loadable ELF image: {error}") from None
    if not segments:
        raise ElfFormatError("the ELF image has no PT_LOAD segment")
    return ElfImage(segments, entry, pvh_entry, is_linux)
