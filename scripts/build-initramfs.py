#!/usr/bin/env python3
"""build-initramfs.py: a busybox initramfs for Debian's Linux kernel, built without root.

The archive (gzip'd cpio "newc", written by guest_images.cpio) holds busybox with a link per
applet, /init (initramfs-init.sh), /dev/console (the kernel opens it for /init before anything is
mounted) and the kernel modules that virtio devices and ext4 need, taken from the lib/modules/
RELEASE tree of Debian's kernel package. That package ships no modules.dep, so the modules are
ordered from their own .modinfo (guest_images.kmod); modules built into the kernel are skipped.
They are stored decompressed (busybox insmod loads plain ELF files), with modules.load listing
them in load order for /init, and a modules.dep for an interactive `modprobe`.

The output is reproducible: fixed owners and mtimes (SOURCE_DATE_EPOCH, default 0), sorted
entries, no name or time in the gzip header. `scripts/build-initramfs.py --help` and
scripts/README.md describe the options.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from guest_images.cpio import PathError, Tree
from guest_images.kmod import Module, ModuleError, ModuleTree, modules_dep, read_module

PROG = "build-initramfs"
HERE = Path(__file__).resolve().parent
DEFAULT_MODULES = ("virtio_mmio", "virtio_blk", "virtio_console", "virtio_rng", "virtio_net", "ext4")
# Applets /init (initramfs-init.sh) runs; every other applet busybox lists is linked too.
INIT_APPLETS = tuple(
    "sh echo mount umount cat poweroff sync sleep insmod uname ls dd od tr cut sha256sum ip hostname setsid "
    "cttyhack".split()
)
ELF_MACHINES = {"riscv64": 243, "arm64": 183, "amd64": 62}


class BuildError(Exception):
    """A problem with the inputs: reported as one line, exit status 2."""


def progress(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


@dataclass
class Inputs:
    arch: str
    release: str
    modules_dir: Path
    busybox: Path
    init: Path
    modules: list[str]
    extra_files: list[tuple[Path, str]]


# -- the recipe ----------------------------------------------------------------------------------


def build_tree(inputs: Inputs) -> tuple[Tree, list[Module], list[str]]:
    """The initramfs's files; the modules in load order; the wanted modules built into the kernel."""
    tree = Tree()
    add_skeleton(tree)
    add_busybox(tree, inputs.busybox, inputs.arch)
    tree.file("init", read_input(inputs.init, "the init script"), 0o755)
    order, builtin = add_modules(tree, inputs.modules_dir, inputs.release, inputs.modules)
    for source, dest in inputs.extra_files:
        tree.file(dest, read_input(source, "--extra-file"), source.stat().st_mode & 0o777)
    return tree, order, builtin


def read_input(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise BuildError(f"cannot read {what} {path}: {error.strerror}") from None


def add_skeleton(tree: Tree) -> None:
    for directory in ("dev", "proc", "sys", "mnt", "tmp", "root", "etc", "run", "usr"):
        tree.directory(directory)
    tree.char_device("dev/console", 5, 1)  # the kernel opens it for /init's stdin/stdout before devtmpfs
    tree.char_device("dev/null", 1, 3, 0o666)


def add_busybox(tree: Tree, path: Path, arch: str) -> None:
    """busybox in /bin with a link per applet; /sbin, /usr/bin and /usr/sbin lead to /bin (merged /usr)."""
    if not path.is_file():
        raise BuildError(
            f"no busybox at {path}: fetch it with scripts/fetch-debian-images.sh busybox-static, " "or give --busybox"
        )
    busybox = read_input(path, "busybox")
    check_elf(busybox, path, arch)
    tree.file("bin/busybox", busybox, 0o755)
    applets = busybox_applets(busybox)
    if applets:
        missing = sorted(set(INIT_APPLETS) - set(applets))
        if missing:
            raise BuildError(f"{path} lacks applets /init runs: {', '.join(missing)}")
    else:
        progress(f"warning: no applet list found in {path}; linking only the applets /init runs")
        applets = list(INIT_APPLETS)
    for applet in applets:
        if applet != "busybox":
            tree.symlink(f"bin/{applet}", "busybox")
    tree.symlink("sbin", "bin")
    tree.symlink("usr/bin", "../bin")
    tree.symlink("usr/sbin", "../bin")


def add_modules(tree: Tree, modules_dir: Path, release: str, wanted: list[str]) -> tuple[list[Module], list[str]]:
    """The wanted modules and what they need, decompressed, with modules.load (the order) and modules.dep."""
    if not modules_dir.is_dir():
        raise BuildError(
            f"{modules_dir}: no such modules directory (fetch the kernel with "
            "scripts/fetch-debian-images.sh linux-image-riscv64, or give --modules-dir)"
        )
    try:
        order, builtin = ModuleTree(modules_dir, progress).load_order(wanted)
        base = f"lib/modules/{release}"
        tree.directory(base)
        for module in order:
            tree.file(f"{base}/{module.relpath}", read_module(module.path))
    except ModuleError as error:
        raise BuildError(str(error)) from None
    tree.file(f"{base}/modules.load", "".join(f"{m.relpath}\n" for m in order).encode())
    tree.file(f"{base}/modules.dep", modules_dep(order).encode())
    return order, builtin


# -- busybox -------------------------------------------------------------------------------------


def busybox_applets(binary: bytes) -> list[str]:
    """The applet names in busybox's sorted, NUL-separated name table, which opens with "[" and "[["."""
    best: list[str] = []
    start = binary.find(b"[\0[[\0")
    while start >= 0:
        names = []
        for raw in binary[start:].split(b"\0", 2000):
            if not re.fullmatch(rb"[][a-z0-9_.-]+", raw):
                break
            names.append(raw.decode())
        best = max(best, names, key=len)
        start = binary.find(b"[\0[[\0", start + 1)
    return best if len(best) > 2 else []


def check_elf(data: bytes, path: Path, arch: str) -> None:
    if data[:4] != b"\x7fELF":
        raise BuildError(f"{path}: not an ELF executable")
    machine = struct.unpack_from("<H" if data[5] == 1 else ">H", data, 18)[0]
    if arch in ELF_MACHINES and machine != ELF_MACHINES[arch]:
        raise BuildError(f"{path}: not a {arch} executable (ELF machine {machine})")


def write_archive(tree: Tree, output: Path, mtime: int) -> int:
    """Write the gzip'd archive atomically (reproducible: no name, fixed time in the gzip header)."""
    raw = io.BytesIO()
    tree.write(raw, mtime)
    data = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(data)
    partial.replace(output)
    return len(data)


# -- command line --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cache = Path(os.environ.get("AXVISOR_CACHE") or Path.home() / ".cache" / "axvisor")
    parser = argparse.ArgumentParser(
        prog="build-initramfs.py",
        description="Build a gzip'd cpio initramfs with busybox, /init and the kernel modules virtio "
        "devices need, from the images scripts/fetch-debian-images.sh lays out. No root needed.",
    )
    add = parser.add_argument
    add("--arch", default="riscv64", help="guest architecture; picks the cache paths (default %(default)s)")
    add("--kernel-version", help="kernel release (default: the contents of CACHE/ARCH/linux/version)")
    add("--modules-dir", type=Path, help="the lib/modules/RELEASE tree (default: CACHE/ARCH/linux/modules/RELEASE)")
    add("--busybox", type=Path, help="static busybox (default: CACHE/ARCH/busybox/busybox)")
    add("--init", type=Path, default=HERE / "initramfs-init.sh", help="the /init script (default: %(default)s)")
    add(
        "--modules",
        default=",".join(DEFAULT_MODULES),
        help="comma-separated modules /init loads, their " "dependencies added (default: %(default)s)",
    )
    add(
        "--extra-file",
        action="append",
        default=[],
        metavar="SRC:DEST",
        help="also put host file SRC at DEST in the initramfs (repeatable)",
    )
    add("--output", type=Path, help="default: CACHE/ARCH/initramfs.cpio.gz")
    args = parser.parse_args(argv)
    args.cache = cache / args.arch
    return args


def inputs_from(args: argparse.Namespace) -> Inputs:
    release = args.kernel_version
    if release is None and args.modules_dir is not None:
        release = args.modules_dir.resolve().name
    if release is None:
        version_file = args.cache / "linux" / "version"
        try:
            release = version_file.read_text().strip()
        except OSError:
            raise BuildError(
                f"no {version_file}: run scripts/fetch-debian-images.sh linux-image-{args.arch} "
                "or give --kernel-version/--modules-dir"
            ) from None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+_~-]*", release):
        raise BuildError(f"--kernel-version {release!r} is not a kernel release name")
    extra = []
    for spec in args.extra_file:
        source, sep, dest = spec.partition(":")
        if not sep or not source or not dest.startswith("/"):
            raise BuildError(f"--extra-file {spec}: expected SRC:DEST with an absolute DEST (e.g. bench.sh:/bench.sh)")
        extra.append((Path(source), dest))
    return Inputs(
        arch=args.arch,
        release=release,
        modules_dir=args.modules_dir or args.cache / "linux" / "modules" / release,
        busybox=args.busybox or args.cache / "busybox" / "busybox",
        init=args.init,
        modules=[m.strip() for m in args.modules.split(",") if m.strip()],
        extra_files=extra,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        inputs = inputs_from(args)
        progress(f"building an initramfs for Linux {inputs.release} ({inputs.arch})")
        tree, order, builtin = build_tree(inputs)
        output = args.output or args.cache / "initramfs.cpio.gz"
        size = write_archive(tree, output, int(os.environ.get("SOURCE_DATE_EPOCH") or 0))
    except (BuildError, PathError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"{PROG}: SOURCE_DATE_EPOCH={os.environ.get('SOURCE_DATE_EPOCH')} is not a number", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{PROG}: {error.filename or ''}: {error.strerror}", file=sys.stderr)
        return 2
    if builtin:
        progress(f"built into the kernel, not loaded: {', '.join(builtin)}")
    print(f"{output} ({size} bytes, {len(tree.entries)} entries)")
    print(f"modules, in load order: {' '.join(m.name for m in order) or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
