"""The guest's architecture when ``[base] arch`` is not given: from the kernel image's header,
else from AxVisor's naming, else one line saying what to add. Images are tiny headers built here."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from axvm import ConfigError, load_config, parse_config
from axvm.config import Arch

CONFIG = """
[base]
id = 1
name = "vm"
vm_type = 1
cpu_num = 1
{arch}

[kernel]
entry_point = 0x8000_0000
kernel_path = "{kernel}"
kernel_load_addr = 0x8000_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]
"""


def elf(machine: int, bits: int = 64, big_endian: bool = False) -> bytes:
    """An ELF header only: magic, class, data encoding, version, e_type, e_machine."""
    order = ">" if big_endian else "<"
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 2 if big_endian else 1, 1]) + bytes(9)
    return ident + struct.pack(f"{order}HHI", 2, machine, 1) + bytes(0x30)


def at(offset: int, magic: bytes, size: int = 0x240) -> bytes:
    image = bytearray(size)
    image[offset : offset + len(magic)] = magic
    return bytes(image)


IMAGES = {
    "elf-x86_64": (elf(62), Arch.X86_64, "ELF machine EM_X86_64"),
    "elf-i386": (elf(3, bits=32), Arch.X86_64, "ELF machine EM_386"),
    "elf-aarch64": (elf(183), Arch.AARCH64, "ELF machine EM_AARCH64"),
    "elf-riscv64": (elf(243), Arch.RISCV64, "ELF machine EM_RISCV"),
    "elf-loongarch64": (elf(258), Arch.LOONGARCH64, "ELF machine EM_LOONGARCH"),
    "elf-big-endian-aarch64": (elf(183, big_endian=True), Arch.AARCH64, "ELF machine EM_AARCH64"),
    "arm64-image": (at(0x38, b"ARM\x64"), Arch.AARCH64, "arm64 Image header"),
    "riscv-image": (at(0x38, b"RSC\x05"), Arch.RISCV64, "riscv Image header"),
    "riscv-image-old-magic": (at(0x30, b"RISCV\0\0\0"), Arch.RISCV64, "riscv Image header"),
    "bzimage": (at(0x202, b"HdrS", 0x400), Arch.X86_64, "bzImage setup header"),
    "gzip-arm64-image": (gzip.compress(at(0x38, b"ARM\x64", 0x10000)), Arch.AARCH64, "gzip'd arm64 Image header"),
}


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_the_kernel_image_names_the_architecture(tmp_path: Path, kind: str) -> None:
    image, arch, what = IMAGES[kind]
    (tmp_path / "kernel").write_bytes(image)
    config = load_config(write(tmp_path, "vm.toml", CONFIG.format(arch="", kernel="kernel")))
    assert config.base.arch is arch
    assert config.arch_from == f"from the kernel image ({what})"


def test_the_image_comes_before_the_file_name_and_the_key_before_both(tmp_path: Path) -> None:
    (tmp_path / "Image").write_bytes(IMAGES["arm64-image"][0])
    by_image = load_config(write(tmp_path, "linux-x86_64-qemu-smp1.toml", CONFIG.format(arch="", kernel="Image")))
    assert by_image.base.arch is Arch.AARCH64 and by_image.arch_from.startswith("from the kernel image")
    keyed = load_config(write(tmp_path, "vm.toml", CONFIG.format(arch='arch = "riscv64"', kernel="Image")))
    assert keyed.base.arch is Arch.RISCV64 and keyed.arch_from == "from [base] arch"
    assert any("base.arch: riscv64, but the kernel image is aarch64 (arm64 Image header)" in w for w in keyed.warnings)


@pytest.mark.parametrize(
    "folder,name,arch,reason",
    [
        ("vms", "linux-aarch64-qemu-smp1.toml", Arch.AARCH64, "from the file name"),
        ("vms", "arceos-riscv64.toml", Arch.RISCV64, "from the file name"),
        ("vms", "linux-arm64.toml", Arch.AARCH64, "from the file name"),
        ("vms", "nimbos-x86_64-qemu-smp1.toml", Arch.X86_64, "from the file name"),
        ("vms/qemu/loongarch64", "arceos-smp1.toml", Arch.LOONGARCH64, "from the folder qemu/loongarch64/"),
        ("x86_64/guests", "vm.toml", Arch.X86_64, "from the folder x86_64/guests/"),
        ("vms/rk3588", "linux-smp8.toml", Arch.AARCH64, "from the board name rk3588 (an AxVisor aarch64 board)"),
        ("vms", "linux-e2000-smp1.toml", Arch.AARCH64, "from the board name e2000 (an AxVisor aarch64 board)"),
    ],
)
def test_axvisor_naming_names_the_architecture(tmp_path: Path, folder: str, name: str, arch: Arch, reason: str) -> None:
    config = load_config(write(tmp_path / folder, name, CONFIG.format(arch="", kernel="/guest/absent")))
    assert (config.base.arch, config.arch_from) == (arch, reason)


def test_a_board_config_beside_the_vm_configs_names_the_architecture(tmp_path: Path) -> None:
    """AxVisor's layout: configs/vms/<board>/x.toml and configs/board/<board>.toml with its target."""
    write(tmp_path / "configs/board", "myboard-v2.toml", 'target = "riscv64gc-unknown-none-elf"\n')
    write(tmp_path / "configs/board", "myboard-broken.toml", "target = [")
    config = load_config(
        write(tmp_path / "configs/vms/myboard", "linux-smp1.toml", CONFIG.format(arch="", kernel="/guest/absent"))
    )
    assert config.base.arch is Arch.RISCV64
    assert config.arch_from == "from the board config board/myboard-v2.toml (target riscv64gc-unknown-none-elf)"


def test_a_relative_path_is_named_by_its_folders_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "vms" / "qemu" / "riscv64"
    write(folder, "arceos-smp1.toml", CONFIG.format(arch="", kernel="/guest/absent"))
    monkeypatch.chdir(folder)
    config = load_config("arceos-smp1.toml")
    assert (config.base.arch, config.arch_from) == (Arch.RISCV64, "from the folder qemu/riscv64/")


def test_a_name_spelling_two_architectures_decides_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "x86_64-on-aarch64.toml", CONFIG.format(arch="", kernel="/guest/absent")))
    assert [problem.key for problem in info.value.problems] == ["base.arch"]


@pytest.mark.parametrize(
    "kernel,note",
    [
        ("/guest/absent", "kernel.kernel_path /guest/absent does not exist"),
        ("raw.bin", "is not an ELF file, arm64 or riscv Image, or bzImage"),
        ("riscv32.elf", "is an ELF file for a machine (e_machine) with no VM here"),
        ("folder", "is not a file"),
        ("bad.gz", "is gzip data that does not inflate"),
    ],
)
def test_nothing_naming_the_architecture_is_one_line_saying_what_to_add(tmp_path: Path, kernel: str, note: str) -> None:
    (tmp_path / "raw.bin").write_bytes(bytes(0x1000))
    (tmp_path / "riscv32.elf").write_bytes(elf(243, bits=32))
    (tmp_path / "folder").mkdir()
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + bytes(30))
    file = write(tmp_path, "vm.toml", CONFIG.format(arch="", kernel=kernel))
    with pytest.raises(ConfigError) as info:
        load_config(file)
    (line,) = str(info.value).splitlines()
    assert line.startswith(f"{file}: base.arch: missing, and nothing else names the architecture: ")
    assert note in line and "the file name vm.toml and its folders name no architecture" in line
    assert line.endswith('add [base] arch = "x86_64" (or "aarch64", "riscv64", "loongarch64")')


def test_a_config_without_a_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="base.arch: missing.*there is no file name to go by"):
        parse_config(CONFIG.format(arch="", kernel="/guest/absent"))
