"""The x86 image loaders on images built here: plain, PVH and Linux ELF files (gcc) and bzImages
(a header and a compressed payload put together by the test)."""

from __future__ import annotations

import gzip
import lzma
import struct
import subprocess
from pathlib import Path

import pytest
import zstandard

from axaddrspace import GuestPhysAddr
from axvisor import UserError
from axvisor.loaders.plan import ImagePlan
from axvisor.loaders.x86 import load_x86_kernel, plan_x86_kernel
from axvm import AxVM, ScriptedBackend, parse_config

from .host_tools import needs

pytestmark = needs("gcc", why="gcc builds the test ELF images")

CONFIG = """
[base]
id = 1
name = "loader"
vm_type = 2
cpu_num = 1
arch = "x86_64"
[kernel]
entry_point = 0x20_0000
kernel_path = "{kernel}"
kernel_load_addr = 0x20_0000
cmdline = "console=ttyS0 hello"
memory_regions = [[0x0, 0x400_0000, 0x7, 0]]
"""
CODE = b"\x90\x90\xf4"  # nop; nop; hlt
NOTES = {
    "pvh": '.pushsection .note.Xen, "a", @note\n.long 4, 4, 18\n.asciz "Xen"\n.long 0x200100\n.popsection\n',
    "linux": '.pushsection .note.Linux, "a", @note\n.long 6, 4, 6\n.asciz "Linux"\n.balign 4\n.long 0\n.popsection\n',
    "plain": "",
}


def build_elf(tmp_path: Path, kind: str) -> bytes:
    source = tmp_path / f"{kind}.S"
    source.write_text(f".text\n.globl _start\n_start:\nnop\nnop\nhlt\n.org 0x100\npvh_entry:\nhlt\n{NOTES[kind]}")
    out = tmp_path / f"{kind}.elf"
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-Wl,-Ttext=0x200000",
                    "-o", str(out), str(source)], check=True)
    return out.read_bytes()


def bzimage(payload: bytes) -> bytes:
    """Protocol 2.15 header, one setup sector, the payload 0x100 bytes into the protected-mode part."""
    image = bytearray(1024 + 0x100 + len(payload))
    image[0x1F1] = 1  # setup_sects
    image[0x201] = 0x66  # the header runs to 0x268
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, 0x020F)
    struct.pack_into("<H", image, 0x236, 1)  # XLF_KERNEL_64
    struct.pack_into("<II", image, 0x248, 0x100, len(payload))
    image[1024 + 0x100:] = payload
    return bytes(image)


def load(tmp_path: Path, kernel: bytes, host_decompress: bool = True):
    """Load the kernel and boot the VM: the machine writes the zero page, start_info or boot info
    (and the command line) into its boot area when it prepares the boot."""
    path = tmp_path / "kernel.img"
    path.write_bytes(kernel)
    config = parse_config(CONFIG.format(kernel=path))
    vm = AxVM(config, ScriptedBackend())
    plan = load_x86_kernel(config, vm.addrspace.memory, kernel, host_decompress)
    vm.mark_loaded()
    vm.boot(plan)
    return vm, plan


def test_plain_elf_is_entered_at_e_entry_with_raw_boot_info(tmp_path: Path) -> None:
    vm, plan = load(tmp_path, build_elf(tmp_path, "plain"))
    assert (plan.protocol, plan.entry) == ("raw", 0x200000)
    assert vm.addrspace.memory.read(GuestPhysAddr(0x200000), 3) == CODE
    vm.stop()


def test_pvh_note_gives_the_32_bit_entry_and_start_info(tmp_path: Path) -> None:
    vm, plan = load(tmp_path, build_elf(tmp_path, "pvh"))
    assert (plan.protocol, plan.entry) == ("pvh", 0x200100)
    assert vm.addrspace.memory.read_u32(GuestPhysAddr(plan.params)) == 0x336EC578
    cmdline_gpa = vm.addrspace.memory.read_u64(GuestPhysAddr(plan.params + 24))
    assert vm.addrspace.memory.read(GuestPhysAddr(cmdline_gpa), 20) == b"console=ttyS0 hello\0"
    vm.stop()


def test_linux_vmlinux_gets_a_zero_page(tmp_path: Path) -> None:
    vm, plan = load(tmp_path, build_elf(tmp_path, "linux"))
    assert (plan.protocol, plan.entry) == ("linux", 0x200000)
    page = vm.addrspace.memory.read(GuestPhysAddr(plan.params), 4096)
    assert page[0x202:0x206] == b"HdrS" and page[0x210] == 0xFF
    vm.stop()


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, zstandard.ZstdCompressor(level=19).compress])
def test_bzimage_payload_is_decompressed_on_the_host(tmp_path: Path, compress) -> None:
    elf = build_elf(tmp_path, "linux")
    vm, plan = load(tmp_path, bzimage(compress(elf)))
    assert (plan.protocol, plan.entry) == ("linux", 0x200000)
    assert vm.addrspace.memory.read(GuestPhysAddr(0x200000), 3) == CODE
    page = vm.addrspace.memory.read(GuestPhysAddr(plan.params), 0x270)
    assert struct.unpack_from("<H", page, 0x206)[0] == 0x020F  # the bzImage's own header was copied
    vm.stop()


def test_bzimage_without_host_decompression_enters_the_protected_mode_kernel(tmp_path: Path) -> None:
    vm, plan = load(tmp_path, bzimage(gzip.compress(b"payload")), host_decompress=False)
    assert (plan.protocol, plan.entry) == ("linux", 0x200200)
    vm.stop()


def test_bad_payload_is_one_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"kernel.kernel_path: kernel.img: .*compression \(magic 00112233\)"):
        load(tmp_path, bzimage(b"\x00\x11\x22\x33" * 8))


def test_segment_outside_ram_names_the_key(tmp_path: Path) -> None:
    elf = bytearray(build_elf(tmp_path, "plain"))
    path = tmp_path / "kernel.img"
    path.write_bytes(elf)
    config = parse_config(CONFIG.format(kernel=path).replace("0x400_0000, 0x7", "0x10_0000, 0x7").replace(
        "kernel_load_addr = 0x20_0000", "kernel_load_addr = 0x8_0000").replace(
        "entry_point = 0x20_0000", "entry_point = 0x8_0000"))
    vm = AxVM(config, ScriptedBackend())
    with pytest.raises(UserError, match="kernel.kernel_path: .*does not fit in guest RAM"):
        load_x86_kernel(config, vm.addrspace.memory, bytes(elf))
    vm.stop()


@pytest.mark.parametrize("kind", ["linux", "pvh", "plain"])
def test_the_boot_area_is_the_machines_alone(tmp_path: Path, kind: str) -> None:
    """The plan puts no image or structure in the x86 boot area: the machine writes all of it at
    boot (the loader only says where the zero page or start_info will be)."""
    path = tmp_path / "kernel.img"
    path.write_bytes(build_elf(tmp_path, kind))
    config = parse_config(CONFIG.format(kernel=path))
    plan = ImagePlan(config)
    boot = plan_x86_kernel(config, plan, path.read_bytes())
    area = next(piece for piece in plan.pieces if piece.reserved and "boot structures" in piece.what)
    assert [piece.what for piece in plan.pieces if not piece.reserved and piece.gpa < area.end
            and area.gpa < piece.end] == []
    assert boot.params is None or area.gpa <= boot.params < area.end
