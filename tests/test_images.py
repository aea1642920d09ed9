"""The riscv64 Linux guest images: the cpio writer, module dependency resolution, and (with QEMU)
a boot of the real Debian kernel and busybox initramfs that scripts/prepare-riscv-linux.sh builds.

The tests named test_qemu_* and test_prepared_* need the Debian images; they run the prepare
script, which fetches them into the cache once (~115 MB) and is a no-op afterwards. The QEMU
boots take about 5 to 10 s each under TCG; they are skipped only where qemu-system-riscv64 is
missing (Debian package qemu-system-misc). `-k "not qemu and not prepared"` runs the rest.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import lzma
import os
import re
import shlex
import shutil
import stat
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from .host_tools import needs

ROOT = Path(__file__).parent.parent
SCRIPTS = ROOT / "scripts"
CACHE = Path(os.environ.get("AXVISOR_CACHE") or Path.home() / ".cache" / "axvisor") / "riscv64"
RISCV = 243  # ELF e_machine of RISC-V


def load_script(name: str) -> ModuleType:
    """Import a script whose file name has dashes (scripts/build-initramfs.py) as a module."""
    module_name = name.removesuffix(".py").replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, SCRIPTS / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(SCRIPTS))  # the scripts' own library, guest_images
bi = load_script("build-initramfs.py")
cpio = importlib.import_module("guest_images.cpio")
kmod = importlib.import_module("guest_images.kmod")


# -- an independent cpio "newc" reader --------------------------------------------------------------


@dataclass
class Member:
    name: str
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    data: bytes
    rdev: tuple[int, int]
    offset: int  # where its header starts


def read_newc(archive: bytes) -> list[Member]:
    """Parse a newc archive by the spec, checking magic, alignment and the trailer; trailer excluded."""
    members = []
    offset = 0
    while True:
        assert offset % 4 == 0, f"header at {offset} is not 4-byte aligned"
        header = archive[offset : offset + 110]
        assert header[:6] == b"070701", f"bad magic at {offset}: {header[:6]!r}"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        ino, mode, uid, gid, nlink, mtime, size, _dmaj, _dmin, rmaj, rmin, namesize, check = fields
        assert check == 0
        name_end = offset + 110 + namesize
        assert archive[name_end - 1] == 0, "name is not NUL-terminated"
        name = archive[offset + 110 : name_end - 1].decode()
        data_at = name_end + (-name_end % 4)
        assert archive[name_end:data_at] == b"\0" * (data_at - name_end), "name padding is not zeros"
        data = archive[data_at : data_at + size]
        assert len(data) == size, f"{name}: truncated data"
        end = data_at + size
        assert archive[end : end + (-end % 4)] == b"\0" * (-end % 4), "data padding is not zeros"
        if name == "TRAILER!!!":
            assert end + (-end % 4) == len(archive), "bytes after the trailer"
            return members
        members.append(Member(name, ino, mode, uid, gid, nlink, mtime, data, (rmaj, rmin), offset))
        offset = end + (-end % 4)


def archive_of(tree: object, mtime: int = 0) -> bytes:
    out = io.BytesIO()
    tree.write(out, mtime)  # type: ignore[attr-defined]
    return out.getvalue()


# -- (a) the cpio writer ---------------------------------------------------------------------------


def test_cpio_round_trip_names_modes_sizes_and_alignment() -> None:
    tree = cpio.Tree()
    tree.file("bin/busybox", b"\x7fELF" + b"x" * 1001, 0o755)  # an odd size: data padding
    for length in range(6):  # every name and data length modulo 4
        tree.file(f"etc/f{'n' * length}", b"d" * length)
    tree.symlink("bin/sh", "busybox")
    tree.char_device("dev/console", 5, 1)
    tree.directory("proc", 0o555)
    members = read_newc(archive_of(tree, mtime=1234))
    by_name = {m.name: m for m in members}

    assert [m.name for m in members] == sorted(by_name)  # parents (prefixes) first
    assert {"bin", "etc", "dev", "proc"} <= set(by_name)  # parent directories added by themselves
    assert by_name["bin/busybox"].data == b"\x7fELF" + b"x" * 1001
    assert by_name["bin/busybox"].mode == stat.S_IFREG | 0o755
    for length in range(6):
        member = by_name[f"etc/f{'n' * length}"]
        assert member.data == b"d" * length and member.mode == stat.S_IFREG | 0o644
    assert by_name["bin/sh"].mode == stat.S_IFLNK | 0o777 and by_name["bin/sh"].data == b"busybox"
    assert by_name["dev/console"].mode == stat.S_IFCHR | 0o600 and by_name["dev/console"].rdev == (5, 1)
    assert by_name["dev/console"].data == b""
    assert by_name["proc"].mode == stat.S_IFDIR | 0o555 and by_name["proc"].nlink == 2
    assert by_name["bin"].mode == stat.S_IFDIR | 0o755
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 1234 for m in members)
    assert len({m.ino for m in members}) == len(members) and all(m.ino > 0 for m in members)
    assert all(m.nlink == 1 for m in members if not stat.S_ISDIR(m.mode))


def test_cpio_header_is_110_bytes_of_ascii_hex() -> None:
    header = cpio.cpio_header(cpio.CpioEntry("init", stat.S_IFREG | 0o755, b"#!/bin/sh\n"), 7, 0)
    assert header[:110].decode().isascii() and re.fullmatch(rb"070701[0-9A-F]{104}", header[:110])
    assert header[110:115] == b"init\0" and len(header) % 4 == 0
    assert int(header[6:14], 16) == 7 and int(header[54:62], 16) == 10  # ino, filesize


def test_cpio_is_reproducible_and_the_gzip_has_no_timestamp(tmp_path: Path) -> None:
    def build() -> bytes:
        tree = cpio.Tree()
        tree.file("b", b"2")
        tree.file("a/x", b"1")
        output = tmp_path / "out.cpio.gz"
        bi.write_archive(tree, output, 0)
        return output.read_bytes()

    first = build()
    assert build() == first
    assert first[4:8] == b"\0\0\0\0"  # gzip MTIME
    assert [m.name for m in read_newc(gzip.decompress(first))] == ["a", "a/x", "b"]


@pytest.mark.parametrize("path", ["", "/", "a/../b", "a//b", "./a"])
def test_cpio_rejects_paths_that_escape_or_are_empty(path: str) -> None:
    with pytest.raises(cpio.PathError):
        cpio.Tree().file(path, b"")


def test_cpio_refuses_a_file_as_a_parent() -> None:
    tree = cpio.Tree()
    tree.file("a", b"")
    with pytest.raises(cpio.PathError, match="not a directory"):
        tree.file("a/b", b"")


# -- (b) module dependency resolution on synthetic modules --------------------------------------


def make_elf(sections: dict[str, bytes], *, bits: int = 64, little: bool = True, machine: int = RISCV) -> bytes:
    """A relocatable ELF file with the given sections (and .shstrtab)."""
    end = "<" if little else ">"
    names = [*sections, ".shstrtab"]
    strtab = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    name_at = {n: strtab.index(b"\0" + n.encode() + b"\0") + 1 for n in names}
    ehsize, shentsize = (64, 64) if bits == 64 else (52, 40)
    body = bytearray(ehsize)
    placed = []
    for data in [*sections.values(), strtab]:
        placed.append((len(body), len(data)))
        body += data + b"\0" * (-len(data) % 8)
    shoff = len(body)
    layout = end + ("IIQQQQIIQQ" if bits == 64 else "IIIIIIIIII")
    body += b"\0" * shentsize  # the null section
    for name, (offset, size) in zip(names, placed, strict=True):
        body += struct.pack(layout, name_at[name], 1, 0, 0, offset, size, 0, 0, 1, 0)
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1]) + bytes(9)
    rest = end + ("HHIQQQIHHHHHH" if bits == 64 else "HHIIIIIHHHHHH")
    body[:ehsize] = ident + struct.pack(
        rest, 1, machine, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, len(names) + 1, len(names)
    )
    return bytes(body)


def make_module(
    root: Path,
    relpath: str,
    *,
    depends: str = "",
    softdep: str | None = None,
    aliases: tuple[str, ...] = (),
    name: str | None = None,
) -> bytes:
    """Write a module (compressed by its suffix) with a .modinfo section; returns its ELF bytes."""
    entries = ["license=GPL", *(f"alias={a}" for a in aliases), f"depends={depends}"]
    if softdep:
        entries.append(f"softdep={softdep}")
    stem = Path(relpath).name.split(".ko")[0]
    entries.append(f"name={name or stem.replace('-', '_')}")
    elf = make_elf({".text": b"\x13\0\0\0", ".modinfo": "\0".join(entries).encode() + b"\0"})
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if relpath.endswith(".xz"):
        path.write_bytes(lzma.compress(elf, format=lzma.FORMAT_XZ))
    elif relpath.endswith(".gz"):
        path.write_bytes(gzip.compress(elf))
    else:
        path.write_bytes(elf)
    return elf


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    """A lib/modules/RELEASE tree shaped like Debian's: xz modules, no modules.dep, softdeps by alias."""
    root = tmp_path / "lib" / "modules" / "6.12.0-test"
    make_module(root, "kernel/drivers/virtio/virtio_mmio.ko.xz")
    make_module(root, "kernel/drivers/block/virtio_blk.ko.xz")
    make_module(root, "kernel/drivers/char/hw_random/virtio-rng.ko.xz", aliases=("virtio:d00000004v*",))
    make_module(root, "kernel/net/core/failover.ko.xz")
    make_module(root, "kernel/drivers/net/net_failover.ko.gz", depends="failover")
    make_module(root, "kernel/drivers/net/virtio_net.ko", depends="net_failover")
    make_module(
        root,
        "kernel/fs/ext4/ext4.ko.xz",
        depends="jbd2,mbcache,crc16",
        softdep="pre: crypto-crc32c",
        aliases=("fs-ext4",),
    )
    make_module(root, "kernel/fs/jbd2/jbd2.ko.xz", softdep="pre: crypto-crc32c")
    make_module(root, "kernel/fs/mbcache.ko.xz")
    make_module(root, "kernel/lib/crc16.ko.xz")
    make_module(root, "kernel/crypto/crc32c_generic.ko.xz", aliases=("crc32c", "crypto-crc32c"))
    make_module(root, "kernel/lib/unused.ko.xz", depends="missing_one")
    (root / "modules.builtin").write_text("kernel/drivers/char/virtio_console.ko\nkernel/lib/zlib_inflate.ko\n")
    return root


def names(order: list) -> list[str]:
    return [m.name for m in order]


def assert_topological(order: list) -> None:
    position = {m.name: i for i, m in enumerate(order)}
    for module in order:
        for dep in (*module.depends, *module.softdep_pre):
            target = "crc32c_generic" if dep == "crypto-crc32c" else dep
            assert position[target] < position[module.name], f"{module.name} loads before {target}"


def test_modinfo_is_read_from_elf64_and_elf32_big_endian() -> None:
    info = b"depends=a,b\0name=x\0alias=y\0alias=z\0"
    for bits, little in ((64, True), (32, False)):
        section = kmod.elf_section(make_elf({".data": b"xx", ".modinfo": info}, bits=bits, little=little), ".modinfo")
        assert kmod.parse_modinfo(section) == {"depends": ["a,b"], "name": ["x"], "alias": ["y", "z"]}
    assert kmod.elf_section(make_elf({".data": b""}), ".modinfo") is None
    with pytest.raises(kmod.ModuleError, match="not an ELF"):
        kmod.elf_section(b"MZ" + b"\0" * 100, ".modinfo")
    with pytest.raises(kmod.ModuleError):
        kmod.elf_section(make_elf({".modinfo": info})[:70], ".modinfo")


def test_softdep_entries_split_into_pre_and_post() -> None:
    assert kmod.parse_softdep(["pre: a b post: c", "post: d"]) == (("a", "b"), ("c", "d"))
    assert kmod.parse_softdep([]) == ((), ())


def test_dependencies_come_first_and_builtins_are_skipped(modules: Path) -> None:
    order, builtin = kmod.ModuleTree(modules).load_order(bi.DEFAULT_MODULES)
    assert builtin == ["virtio_console"]
    assert set(names(order)) == {
        "virtio_mmio",
        "virtio_blk",
        "virtio_rng",
        "failover",
        "net_failover",
        "virtio_net",
        "crc32c_generic",
        "jbd2",
        "mbcache",
        "crc16",
        "ext4",
    }
    assert names(order)[:3] == ["virtio_mmio", "virtio_blk", "virtio_rng"]  # the order asked, deps first
    assert names(order).index("failover") < names(order).index("net_failover") < names(order).index("virtio_net")
    assert_topological(order)
    by_name = {m.name: m for m in order}
    assert by_name["virtio_rng"].relpath == "kernel/drivers/char/hw_random/virtio-rng.ko"
    assert by_name["net_failover"].relpath == "kernel/drivers/net/net_failover.ko"


def test_softdep_is_resolved_through_aliases_and_cached(modules: Path) -> None:
    tree = kmod.ModuleTree(modules)
    assert tree.resolve("crypto-crc32c") == "crc32c_generic"
    assert tree.resolve("virtio-rng") == "virtio_rng"  # a name with a dash is a module name
    assert tree.resolve("zlib-inflate") == "zlib_inflate"  # built in
    assert tree.resolve("nothing-provides-this") is None
    assert (modules / tree.ALIAS_CACHE).is_file()
    assert kmod.ModuleTree(modules).aliases()["fs-ext4"] == ["ext4"]


def test_modules_are_accepted_by_dashed_names_and_deduplicated(modules: Path) -> None:
    order, _ = kmod.ModuleTree(modules).load_order(["virtio-net", "net-failover", "virtio_net"])
    assert names(order) == ["failover", "net_failover", "virtio_net"]


def test_a_missing_dependency_names_who_needs_it(modules: Path) -> None:
    with pytest.raises(kmod.ModuleError, match=r"no module missing_one \(needed by unused\)"):
        kmod.ModuleTree(modules).load_order(["unused"])
    with pytest.raises(kmod.ModuleError, match="no module nosuch "):
        kmod.ModuleTree(modules).load_order(["nosuch"])


def test_a_dependency_cycle_is_an_error(tmp_path: Path) -> None:
    make_module(tmp_path, "kernel/a.ko", depends="b")
    make_module(tmp_path, "kernel/b.ko", depends="c")
    make_module(tmp_path, "kernel/c.ko", depends="a")
    with pytest.raises(kmod.ModuleError, match="cycle: a -> b -> c -> a"):
        kmod.ModuleTree(tmp_path).load_order(["a"])


def test_post_softdeps_load_after_and_unresolvable_softdeps_are_skipped(tmp_path: Path) -> None:
    make_module(tmp_path, "kernel/a.ko", softdep="pre: ghost post: b")
    make_module(tmp_path, "kernel/b.ko")
    order, _ = kmod.ModuleTree(tmp_path).load_order(["a"])
    assert names(order) == ["a", "b"]


def test_modules_dep_lists_every_dependency(modules: Path) -> None:
    order, _ = kmod.ModuleTree(modules).load_order(["virtio_net", "ext4"])
    lines = dict(line.split(":", 1) for line in kmod.modules_dep(order).splitlines())
    assert lines["kernel/drivers/net/virtio_net.ko"].split() == [
        "kernel/drivers/net/net_failover.ko",
        "kernel/net/core/failover.ko",
    ]
    assert sorted(lines["kernel/fs/ext4/ext4.ko"].split()) == [
        "kernel/fs/jbd2/jbd2.ko",
        "kernel/fs/mbcache.ko",
        "kernel/lib/crc16.ko",
    ]
    assert lines["kernel/net/core/failover.ko"] == ""


def fake_busybox(path: Path, machine: int = RISCV) -> None:
    applets = sorted({"[", "[[", "ls", "vi", *bi.INIT_APPLETS})
    table = b"padding [\0" + b"\0".join(a.encode() for a in applets if a != "[") + b"\0\0"
    path.write_bytes(make_elf({".rodata": table}, machine=machine))


def test_build_tree_puts_decompressed_modules_and_their_order_in_the_archive(modules: Path, tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    fake_busybox(busybox)
    extra = tmp_path / "bench.sh"
    extra.write_text("echo bench\n")
    extra.chmod(0o755)
    out = tmp_path / "initramfs.cpio.gz"
    status = bi.main(
        [
            "--modules-dir",
            str(modules),
            "--busybox",
            str(busybox),
            "--output",
            str(out),
            "--extra-file",
            f"{extra}:/bench.sh",
        ]
    )
    assert status == 0
    members = {m.name: m for m in read_newc(gzip.decompress(out.read_bytes()))}
    base = "lib/modules/6.12.0-test"
    load = members[f"{base}/modules.load"].data.decode().split()
    assert [Path(p).name for p in load][-1] == "ext4.ko" and len(load) == 11
    ext4 = members[f"{base}/kernel/fs/ext4/ext4.ko"].data
    assert ext4[:4] == b"\x7fELF" and b"name=ext4" in kmod.elf_section(ext4, ".modinfo")
    assert members["init"].mode == stat.S_IFREG | 0o755 and members["init"].data.startswith(b"#!/bin/sh")
    assert members["dev/console"].rdev == (5, 1) and stat.S_ISCHR(members["dev/console"].mode)
    assert members["bin/sh"].data == b"busybox" and members["bin/vi"].data == b"busybox"
    assert members["sbin"].data == b"bin" and members["usr/bin"].data == b"../bin"
    assert members["bench.sh"].data == b"echo bench\n" and members["bench.sh"].mode & 0o777 == 0o755
    assert f"{base}/kernel/drivers/char/virtio_console.ko" not in members  # built in


def test_wrong_arch_busybox_is_one_line_and_exit_2(modules: Path, tmp_path: Path, capsys) -> None:
    busybox = tmp_path / "busybox"
    fake_busybox(busybox, machine=62)
    status = bi.main(["--modules-dir", str(modules), "--busybox", str(busybox), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1] == f"build-initramfs: {busybox}: not a riscv64 executable (ELF machine 62)"
    assert not (tmp_path / "o").exists()


def test_missing_inputs_are_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "AXVISOR_CACHE": str(tmp_path)}
    busybox = tmp_path / "busybox"
    fake_busybox(busybox)
    for args, expected in (
        ([], f"no {tmp_path}/riscv64/linux/version: run scripts/fetch-debian-images.sh"),
        (["--kernel-version", "6.1", "--extra-file", "x"], "--extra-file x: expected SRC:DEST"),
        (["--kernel-version", "6.1"], f"no busybox at {tmp_path}/riscv64/busybox/busybox: fetch it with"),
        (["--kernel-version", "6.1", "--busybox", sys.executable], f"{sys.executable}: not a riscv64 executable"),
        (
            ["--kernel-version", "6.1", "--busybox", str(busybox)],
            f"{tmp_path}/riscv64/linux/modules/6.1: no such modules directory",
        ),
    ):
        result = subprocess.run(
            [sys.executable, str(SCRIPTS / "build-initramfs.py"), *args], env=env, capture_output=True, text=True
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(f"build-initramfs: {expected}"), result.stderr


def test_busybox_applet_table_is_found_in_a_binary() -> None:
    binary = b"\x00junk[[\0\0\0 [\0[[\0acpid\0ash\0cat\0\0more"
    assert bi.busybox_applets(binary) == ["[", "[[", "acpid", "ash", "cat"]
    assert bi.busybox_applets(b"no table here") == []


# -- the disk image --------------------------------------------------------------------------------

needs_e2fsprogs = needs("mke2fs", "debugfs", why="Debian package e2fsprogs")


def debugfs(image: Path, command: str) -> str:
    tool = shutil.which("debugfs", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    assert tool is not None
    return subprocess.run([tool, "-R", command, str(image)], capture_output=True, text=True, check=True).stdout


@needs_e2fsprogs
def test_disk_image_has_known_contents_and_is_reproducible(tmp_path: Path) -> None:
    script = str(SCRIPTS / "build-disk-image.py")
    first, second = tmp_path / "a.ext4", tmp_path / "b.ext4"
    for output in (first, second):
        result = subprocess.run(
            [sys.executable, script, "--output", str(output), "--size", "8M", "--bench-size", "1M"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    assert first.stat().st_size == 8 << 20
    assert first.read_bytes() == second.read_bytes()
    assert debugfs(first, "cat /hello.txt") == "hello from the axvisor disk image\n"
    bench = hashlib.shake_128(b"axvisor bench.bin").digest(1 << 20)
    assert debugfs(first, "cat /bench.bin.sha256") == f"{hashlib.sha256(bench).hexdigest()}  bench.bin\n"


@needs_e2fsprogs
def test_disk_image_too_small_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "build-disk-image.py"),
            "--output",
            str(tmp_path / "d"),
            "--size",
            "4M",
            "--bench-size",
            "8M",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("build-disk-image: mke2fs failed for a 4194304 byte")
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.partial").exists()


# -- (c) the real images, and a boot under QEMU ----------------------------------------------------


@pytest.fixture(scope="session")
def images() -> Path:
    """The riscv64 images, fetched and built by the prepare script (cached after the first run)."""
    result = subprocess.run([str(SCRIPTS / "prepare-riscv-linux.sh")], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"prepare-riscv-linux.sh failed: {result.stderr.strip().splitlines()[-1:]}"
    return CACHE


needs_qemu = needs("qemu-system-riscv64", why="Debian package qemu-system-misc")


def qemu(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "qemu-riscv-linux.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )


@pytest.mark.timeout(1500)
def test_prepared_images_are_laid_out(images: Path) -> None:
    release = (images / "linux" / "version").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\+deb\d+-riscv64", release)
    assert (images / "linux" / "Image").read_bytes()[0x30:0x38] == b"RISCV\0\0\0"
    assert (images / "linux" / "modules" / release / "modules.builtin").is_file()
    busybox = (images / "busybox" / "busybox").read_bytes()
    assert busybox[:4] == b"\x7fELF" and struct.unpack_from("<H", busybox, 18)[0] == RISCV
    members = {m.name: m for m in read_newc(gzip.decompress((images / "initramfs.cpio.gz").read_bytes()))}
    load = members[f"lib/modules/{release}/modules.load"].data.decode().split()
    assert [Path(p).name for p in load][-1] == "ext4.ko"
    assert (images / "disk.ext4").stat().st_size >= 64 << 20  # the disk-read benchmark reads 64 MiB raw


@pytest.mark.timeout(1500)
def test_prepare_is_idempotent(images: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in (images / "initramfs.cpio.gz", images / "disk.ext4")}
    result = subprocess.run([str(SCRIPTS / "prepare-riscv-linux.sh")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "initramfs up to date" in result.stderr and "disk image up to date" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before


@needs_qemu
@pytest.mark.timeout(1500)
def test_qemu_boots_to_the_marker_and_every_device_checks_out(images: Path, tmp_path: Path) -> None:
    hvc0 = tmp_path / "hvc0.txt"
    result = qemu("--script", "check", "--hvc0", str(hvc0))
    console = result.stdout
    assert result.returncode == 0, console[-3000:] + result.stderr
    init_lines = [line for line in console.splitlines() if line.startswith("axvisor-init:")]
    assert init_lines[0] == "axvisor-init: starting"
    assert re.search(r"^axvisor-init: modules loaded: \d+$", console, re.M), "a module failed to load"
    assert "axvisor-init: disk: /hello.txt: hello from the axvisor disk image" in init_lines
    assert "axvisor-init: disk: /bench.bin checksum ok" in init_lines
    assert re.search(r"^axvisor-init: hwrng: virtio_rng\.0: [0-9a-f]{32}$", console, re.M)
    assert re.search(r"^axvisor-init: net: eth0 up, 52:54:00:12:34:56$", console, re.M)
    assert hvc0.read_text() == "axvisor-init: hello on hvc0\n"
    assert init_lines[-1].startswith("axvisor-init: check ok")
    assert "reboot: Power down" in console
    print(result.stderr.strip().splitlines()[-1])  # the timing line: marker, check ok, exit


@needs_qemu
@pytest.mark.timeout(1500)
def test_qemu_poweroff_script_stops_right_after_the_marker(images: Path) -> None:
    result = qemu("--script", "poweroff", "--no-disk")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    init_lines = [line for line in result.stdout.splitlines() if line.startswith("axvisor-init:")]
    assert init_lines == ["axvisor-init: starting"]
    timing = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"qemu: marker [\d.]+ s, exit [\d.]+ s \(status 0\)", timing)
    print(timing)


@needs_qemu
@pytest.mark.timeout(1500)
def test_qemu_interactive_shell_runs_commands_and_powers_off_on_exit(images: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    command = shlex.split(
        subprocess.run(
            [sys.executable, str(SCRIPTS / "qemu-riscv-linux.py"), "--script", "shell", "--print-command"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    child = pexpect.spawn(command[0], command[1:], timeout=120, encoding="utf-8")
    try:
        child.expect("axvisor-init: ready")
        child.expect("axvisor# ")
        child.sendline("echo sum=$((6*7)) $(tty)")
        child.expect(r"sum=42 /dev/ttyS0")
        child.expect("axvisor# ")
        child.sendline("exit")
        child.expect("reboot: Power down")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
