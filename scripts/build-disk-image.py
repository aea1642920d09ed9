#!/usr/bin/env python3
"""build-disk-image.py: an ext4 disk image with known contents for Linux guests, without root.

mke2fs -d copies a staging directory into a new file system, so no mount (and no root) is
needed. The contents are known, for guests and tests to check what they read back:

  /hello.txt          one line, HELLO below
  /bench.bin          --bench-size bytes of SHAKE-128(BENCH_SEED): pseudo-random, the same everywhere
  /bench.bin.sha256   its checksum, in the format `sha256sum -c` reads

The image is reproducible: fixed UUID and directory hash seed, files owned by root, and every
timestamp (the staged files' and mke2fs's own, through E2FSPROGS_FAKE_TIME) set to
SOURCE_DATE_EPOCH (default 1, as mke2fs ignores 0). `scripts/build-disk-image.py --help` lists the options.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROG = "build-disk-image"
HELLO = "hello from the axvisor disk image\n"
BENCH_SEED = b"axvisor bench.bin"
UUID = "a7b1d2c3-0000-4000-8000-61786973a0a0"  # fixed, so two builds are byte-for-byte the same
# Our own mke2fs.conf, so the host's defaults do not change the image. metadata_csum makes the
# guest's ext4 need crc32c, as Debian's own file systems do.
MKE2FS_CONF = """[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tfloppy = {
\t\tinode_ratio = 16384
\t}
\tsmall = {
\t\tinode_ratio = 16384
\t}
\tdefault = {
\t\tinode_ratio = 16384
\t}
"""
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class BuildError(Exception):
    """Reported as one line, exit status 2."""


def parse_size(text: str, option: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise BuildError(f"{option} {text}: expected a size such as 80M, 1G or 4096")
    return int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]


def bench_data(size: int) -> bytes:
    return hashlib.shake_128(BENCH_SEED).digest(size) if size else b""


def tool(name: str) -> str:
    """An e2fsprogs program, also from sbin directories a user's PATH may lack."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise BuildError(f"{name} is missing (Debian package e2fsprogs)")
    return found


def stage(root: Path, bench_size: int, extra_files: list[tuple[Path, str]], mtime: int) -> None:
    (root / "hello.txt").write_text(HELLO)
    if bench_size:
        data = bench_data(bench_size)
        (root / "bench.bin").write_bytes(data)
        (root / "bench.bin.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  bench.bin\n")
    for source, dest in extra_files:
        target = root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(source, target)
            target.chmod(source.stat().st_mode & 0o777)
        except OSError as error:
            raise BuildError(f"--extra-file {source}: {error.strerror}") from None
    for path in sorted(root.rglob("*"), reverse=True):  # files before the directories holding them
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    os.utime(root, (mtime, mtime))


def build(output: Path, size: int, bench_size: int, extra_files: list[tuple[Path, str]], label: str) -> None:
    # mke2fs reads E2FSPROGS_FAKE_TIME=0 as "not set" and uses the clock: 1 s past the epoch instead.
    mtime = max(1, int(os.environ.get("SOURCE_DATE_EPOCH") or 1))
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="axvisor-disk-") as staging:
        root = Path(staging, "root")
        root.mkdir()
        stage(root, bench_size, extra_files, mtime)
        config = Path(staging, "mke2fs.conf")
        config.write_text(MKE2FS_CONF)
        env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(mtime), "MKE2FS_CONFIG": str(config)}
        try:
            run(
                [
                    tool("mke2fs"),
                    "-q",
                    "-F",
                    "-t",
                    "ext4",
                    "-L",
                    label,
                    "-U",
                    UUID,
                    "-E",
                    f"root_owner=0:0,hash_seed={UUID}",
                    "-d",
                    str(root),
                    str(partial),
                    f"{size // 1024}k",
                ],
                f"mke2fs failed for a {size} byte image",
                env,
            )
            # mke2fs -d copies each file's ctime, which no unprivileged call can set on the host: reset them.
            paths = sorted("/" + str(path.relative_to(root)) for path in root.rglob("*"))
            fixes = "".join(f"sif {path} {field} @{mtime}\n" for path in paths for field in ("ctime", "crtime"))
            run([tool("debugfs"), "-w", "-f", "-", str(partial)], "debugfs failed to reset the timestamps", env, fixes)
        except BuildError:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(output)


def run(command: list[str], what: str, env: dict[str, str], stdin: str | None = None) -> None:
    """Run an e2fsprogs tool; its first error line becomes the BuildError."""
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env)
    errors = [
        line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("debugfs ", "Warning"))
    ]
    # debugfs exits 0 when a command fails, saying so on stderr after its banner ("debugfs 1.47.0 ...").
    if result.returncode != 0 or (stdin is not None and errors):
        raise BuildError(f"{what}: {(errors or [f'exit status {result.returncode}'])[0]}")


def main(argv: list[str] | None = None) -> int:
    cache = Path(os.environ.get("AXVISOR_CACHE") or Path.home() / ".cache" / "axvisor")
    parser = argparse.ArgumentParser(prog="build-disk-image.py", description=__doc__.splitlines()[0].partition(": ")[2])
    parser.add_argument("--arch", default="riscv64", help="picks the default output path (riscv64)")
    parser.add_argument("--output", type=Path, help="default: CACHE/ARCH/disk.ext4")
    parser.add_argument(
        "--size", default="80M", help="image size, at least 64M for the disk-read benchmark " "(default %(default)s)"
    )
    parser.add_argument("--bench-size", default="16M", help="size of /bench.bin, 0 for none (default %(default)s)")
    parser.add_argument("--label", default="axvisor", help="file system label (default %(default)s)")
    parser.add_argument(
        "--extra-file",
        action="append",
        default=[],
        metavar="SRC:DEST",
        help="also put host file SRC at DEST in the image (repeatable)",
    )
    args = parser.parse_args(argv)
    output = args.output or cache / args.arch / "disk.ext4"
    try:
        extra = []
        for spec in args.extra_file:
            source, sep, dest = spec.partition(":")
            if not sep or not source or not re.fullmatch(r"(/[A-Za-z0-9_.+-]+)+", dest) or ".." in dest.split("/"):
                raise BuildError(
                    f"--extra-file {spec}: expected SRC:DEST, DEST an absolute path of letters, "
                    "digits and _.+- (e.g. data.bin:/data.bin)"
                )
            extra.append((Path(source), dest))
        size = parse_size(args.size, "--size")
        bench_size = parse_size(args.bench_size, "--bench-size")
        print(f"==> building {output} ({size >> 20} MiB ext4, /bench.bin {bench_size >> 20} MiB)", file=sys.stderr)
        build(output, size, bench_size, extra, args.label)
    except BuildError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    print(f"{output} ({output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
