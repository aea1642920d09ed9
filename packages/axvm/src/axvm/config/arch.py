"""Which architecture a config's guest is, when ``[base] arch`` does not say.

AxVisor's configs carry no arch key: AxVisor is built for one target and runs the configs built
in. Here one VMM runs every architecture, so the guest's is decided, in this order:

1. ``[base] arch``;
2. the kernel image's own header: an ELF file's ``e_machine``; the arm64 ``Image`` header magic
   "ARM\\x64" at 0x38 (Linux Documentation/arch/arm64/booting.rst); the riscv ``Image`` magic
   "RSC\\x05" at 0x38 or the older "RISCV\\0\\0\\0" at 0x30 (Documentation/arch/riscv/boot-image-
   header.rst); the x86 bzImage setup header "HdrS" at 0x202 (Documentation/arch/x86/boot.rst);
   a gzip'd image (Debian's arm64 vmlinuz) is looked into;
3. AxVisor's naming: an architecture in the file name (``linux-aarch64-qemu-smp1.toml``) or its
   folder (``configs/vms/qemu/aarch64/``), or the board the folder names (``configs/vms/
   phytiumpi/``): the ``target`` of AxVisor's board config beside it (``configs/board/
   phytiumpi.toml``), else AxVisor's own boards below.

When none of them decides, the loader reports one line saying what was looked at and to add
``[base] arch``.
"""

from __future__ import annotations

import re
import stat
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path

from .schema import Arch

HEADER_BYTES = 0x1000
"""What is read of a kernel image: every header above lies in its first 0x240 bytes."""
GZIP_INPUT_BYTES = 0x1_0000
"""Compressed bytes read of a gzip'd image, enough to inflate its first HEADER_BYTES."""

ELF_MACHINES = {
    62: (Arch.X86_64, "EM_X86_64"),
    3: (Arch.X86_64, "EM_386"),  # a 32-bit x86 kernel (multiboot) runs on the x86 machine
    183: (Arch.AARCH64, "EM_AARCH64"),
    243: (Arch.RISCV64, "EM_RISCV"),  # 64-bit class only: riscv32 has no machine here
    258: (Arch.LOONGARCH64, "EM_LOONGARCH"),
}

ARCH_NAMES = {
    "x86_64": Arch.X86_64,
    "aarch64": Arch.AARCH64,
    "arm64": Arch.AARCH64,
    "riscv64": Arch.RISCV64,
    "loongarch64": Arch.LOONGARCH64,
}
_ARCH_TOKEN = re.compile(r"(?<![a-z0-9])(" + "|".join(ARCH_NAMES) + r")(?![a-z0-9])")

AXVISOR_BOARDS = {
    "a1000": Arch.AARCH64,  # Black Sesame A1000
    "e2000": Arch.AARCH64,  # Phytium E2000
    "phytiumpi": Arch.AARCH64,
    "rk3568": Arch.AARCH64,
    "roc-rk3568-pc": Arch.AARCH64,
    "rk3588": Arch.AARCH64,
    "orangepi-5-plus": Arch.AARCH64,  # RK3588
    "tac-e400": Arch.AARCH64,
    "tac_e400": Arch.AARCH64,
    "rdk-s100": Arch.AARCH64,
    "asus-nuc15crh": Arch.X86_64,
}
"""The boards AxVisor's configs are written for (configs/vms/<board>/ and the board token of
``<os>-<arch>-<board>-smpN``), for folders whose board config is not beside them."""


@dataclass(frozen=True)
class ArchChoice:
    arch: Arch
    reason: str


def arch_of_image(path: Path | None) -> tuple[ArchChoice | None, str]:
    """The architecture the kernel image's header names, or None and what was found instead."""
    if path is None:
        return None, "no kernel.kernel_path"
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None, f"kernel.kernel_path {path} is not a file"
        with path.open("rb") as image:
            data = image.read(GZIP_INPUT_BYTES)
    except OSError:
        return None, f"kernel.kernel_path {path} does not exist"
    what = ""
    if data[:2] == b"\x1f\x8b":
        try:
            data = zlib.decompressobj(wbits=31).decompress(data, HEADER_BYTES)
        except zlib.error:
            return None, f"kernel.kernel_path {path} is gzip data that does not inflate"
        what = "gzip'd "
    choice = _header_arch(data[:HEADER_BYTES])
    if choice is None and data[:4] == b"\x7fELF":
        return None, f"kernel.kernel_path {path} is an ELF file for a machine (e_machine) with no VM here"
    if choice is None:
        return None, f"kernel.kernel_path {path} is not an ELF file, arm64 or riscv Image, or bzImage"
    return ArchChoice(choice.arch, f"from the kernel image ({what}{choice.reason})"), ""


def _header_arch(data: bytes) -> ArchChoice | None:
    if data[:4] == b"\x7fELF" and len(data) >= 20:
        machine = int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")  # EI_DATA: 1 LSB, 2 MSB
        entry = ELF_MACHINES.get(machine)
        if entry is not None and not (entry[0] is Arch.RISCV64 and data[4] != 2):
            return ArchChoice(entry[0], f"ELF machine {entry[1]}")
        return None
    if data[0x38:0x3C] == b"ARM\x64":
        return ArchChoice(Arch.AARCH64, "arm64 Image header")
    if data[0x38:0x3C] == b"RSC\x05" or data[0x30:0x38] == b"RISCV\0\0\0":
        return ArchChoice(Arch.RISCV64, "riscv Image header")
    if data[0x202:0x206] == b"HdrS":
        return ArchChoice(Arch.X86_64, "bzImage setup header")
    return None


def arch_of_name(file: Path | None) -> ArchChoice | None:
    """The architecture AxVisor's naming gives the config file: its name, then its folder and
    the one above (``vms/qemu/aarch64/``), then the board its folder names."""
    if file is None:
        return None
    file = file.absolute()  # "vm.toml" checked inside vms/qemu/riscv64/ has those folders too
    arch = _named_arch(file.stem)
    if arch is not None:
        return ArchChoice(arch, "from the file name")
    folders = file.parent.parts[-2:]
    for folder in reversed(folders):
        arch = _named_arch(folder)
        if arch is not None:
            return ArchChoice(arch, f"from the folder {'/'.join(folders)}/")
    return _board_arch(file)


def _named_arch(name: str) -> Arch | None:
    """The one architecture ``name`` spells (None for none, or for two different ones)."""
    found = {ARCH_NAMES[match] for match in _ARCH_TOKEN.findall(name.lower())}
    return found.pop() if len(found) == 1 else None


def _board_arch(file: Path) -> ArchChoice | None:
    board = file.parent.name
    for config in _board_configs(file.parent.parent.parent / "board", board):
        try:
            target = tomllib.loads(config.read_text(encoding="utf-8")).get("target")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
            continue
        arch = ARCH_NAMES.get(target.split("-")[0].replace("riscv64gc", "riscv64")) if isinstance(target, str) else None
        if arch is not None:
            return ArchChoice(arch, f"from the board config {config.parent.name}/{config.name} (target {target})")
    for name in (board, *file.stem.split("-")):
        if name.lower() in AXVISOR_BOARDS:
            return ArchChoice(
                AXVISOR_BOARDS[name.lower()],
                f"from the board name {name} (an AxVisor " f"{AXVISOR_BOARDS[name.lower()].value} board)",
            )
    return None


def _board_configs(folder: Path, board: str) -> list[Path]:
    """AxVisor's board configs for ``board``: ``board/<board>.toml``, or ``board/<board>-*.toml``."""
    try:
        return sorted(
            path
            for path in folder.glob(f"{_glob_escape(board)}*.toml")
            if path.stem == board or path.stem.startswith(board + "-")
        )
    except (OSError, ValueError):
        return []


def _glob_escape(name: str) -> str:
    """``name`` matched literally by Path.glob."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def missing_arch_message(image_note: str, file: Path | None) -> str:
    """The one line for a config nothing names the architecture of."""
    named = (
        f"the file name {file.name} and its folders name no architecture (x86_64, aarch64, riscv64, "
        "loongarch64) or AxVisor board"
        if file is not None
        else "there is no file name to go by"
    )
    return (
        f"missing, and nothing else names the architecture: {image_note or 'the kernel image is unknown'}; "
        f'{named}; add [base] arch = "x86_64" (or "aarch64", "riscv64", "loongarch64")'
    )
