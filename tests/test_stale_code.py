"""Stale translated code on the software CPU, caught by guest programs under Debian's riscv64 Linux.

A translating CPU keeps code it translated, keyed by physical page and virtual address, until
something tells it that page changed. Two ways a page changes behind the translator's back:

- device DMA: virtio-blk reads land in guest RAM from the host, so a page cache page that held
  one program's code and now holds another's (read from the disk after the cache was dropped, in
  a VM with little RAM) must not run the old translation. 16 programs, assembled from one source
  with different constants, share their layout and virtual addresses; each prints its ID, a sum
  its code pages compute and checksums of its text and data, run three rounds with the page cache
  dropped after each run, compared with what the host computes from the ELF files;
- a store through another mapping: a program writes code through a writable view of a memfd
  page and runs it through an executable view of the same page, the riscv_flush_icache syscall
  between, rewriting it every iteration (tests/guests/riscv/smc.S); once in one thread, once with
  a second thread running the code and moving between harts (the flush then reaches other harts
  through SBI remote fence.i, or the fence.i Linux does when the thread switches in).

What tells the CPU: on one hart Linux follows code it read or was told about with a local
fence.i only (flush_icache_all, flush_icache_mm), with no SBI call; on 4 harts it also asks the
firmware for a remote fence.i. Device DMA is known to the VMM alone. Seen failing: the fast path
in progress (stores through RAM not re-protecting code, fence.i ignored) printed other programs'
IDs on 1 hart and ran the previous iteration's code in the one-thread case on 1 and 4 harts.

One boot per hart count (1 and 4) runs all of it. Images come from scripts/prepare-riscv-linux.sh.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from itertools import zip_longest
from pathlib import Path

import pexpect
import pytest
from elftools.elf.elffile import ELFFile

from .host_tools import require
from .vmm_watch import watch

ROOT = Path(__file__).parent.parent
GUESTS = ROOT / "tests" / "guests" / "riscv"
SHELL = "axvisor# "
PROGRAMS = 16
ROUNDS = 3
PAGES = 4
"""Code pages per program (stale_page.S)."""
SMC_ITERATIONS = {"single": 1000, "threads": 96}
"""Each threaded iteration is a remote fence.i: every hart drops its translations."""
RAM = 128 << 20
"""Little RAM, so freed page cache pages come back soon for the next program (with 96 MiB this
kernel panics in sparse_init); the script also drops the page cache after every run."""
END = "stale-code: end"
BOOT_TIMEOUT = 900
pytestmark = pytest.mark.timeout(1800)


def assemble(source: str, output: Path, **symbols: int) -> Path:
    defsyms = [arg for name, value in symbols.items() for arg in ("--defsym", f"{name}={value}")]
    obj = output.with_suffix(".o")
    subprocess.run(
        ["riscv64-linux-gnu-as", "-I", str(GUESTS), *defsyms, "-o", str(obj), str(GUESTS / source)],
        check=True,
        capture_output=True,
        text=True,
    )
    # --no-relax: the programs set no gp, so no access may be relaxed to gp-relative
    subprocess.run(
        ["riscv64-linux-gnu-ld", "-static", "--no-relax", "-o", str(output), str(obj)],
        check=True,
        capture_output=True,
        text=True,
    )
    obj.unlink()
    return output


def checksum(data: bytes) -> int:
    """sys.S's checksum: s = s * FNV_PRIME + word over little-endian 8-byte words, modulo 2**64."""
    value = 0
    for offset in range(0, len(data), 8):
        value = (value * 0x100000001B3 + int.from_bytes(data[offset : offset + 8], "little")) & (2**64 - 1)
    return value


def expected_line(program: Path, ident: int) -> str:
    """What the program prints, computed from its ELF file."""
    with program.open("rb") as stream:
        elf = ELFFile(stream)
        symbols = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}

        def span(section: str, start: str, end: str) -> bytes:
            found = elf.get_section_by_name(section)
            base = found["sh_addr"]
            return found.data()[symbols[start] - base : symbols[end] - base]

        text = span(".text", "text_start", "text_end")
        data = span(".data", "data_start", "data_end")
    total = sum((ident << 16) | (page << 8) | 0x5A for page in range(PAGES))
    return f"stale-code {ident:016x} {total:016x} {checksum(text):016x} {checksum(data):016x}"


def run_script(names: list[str]) -> str:
    lines = ["echo 1 > /proc/sys/kernel/printk", "cd /mnt/stale"]  # no kernel lines inside the programs' lines
    lines.append(f"for round in {' '.join(str(r) for r in range(1, ROUNDS + 1))}; do")
    lines.append(f"  for p in {' '.join(names)}; do")
    lines.append('    ./$p || echo "stale-code: $p exited with status $?"')
    lines.append("    echo 3 > /proc/sys/vm/drop_caches")
    lines.append("  done")
    lines.append("done")
    for mode in SMC_ITERATIONS:
        lines.append(f'./smc-{mode} || echo "smc: {mode} exited with status $?"')
    lines.append(f'echo "{END}"')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def images() -> dict[str, Path]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "prepare-riscv-linux.sh")], check=True, capture_output=True, text=True, timeout=1800
    ).stdout
    return {line.split()[0]: Path(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2}


@pytest.fixture(scope="module")
def stale_disk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """An ext4 image with the programs and the script under /stale; the lines its program runs print."""
    require("riscv64-linux-gnu-as", "riscv64-linux-gnu-ld", why="assembles the riscv64 test programs")
    require("mke2fs", "debugfs", why="builds the ext4 disk holding the test programs")
    folder = tmp_path_factory.mktemp("stale")
    names, expected, extra = [], [], []
    for ident in range(1, PROGRAMS + 1):
        program = assemble("stale_page.S", folder / f"p{ident:02d}", ID=ident)
        names.append(program.name)
        expected.append(expected_line(program, ident))
    for mode, iterations in SMC_ITERATIONS.items():
        assemble("smc.S", folder / f"smc-{mode}", THREADS=int(mode == "threads"), ITERATIONS=iterations)
        extra.append(f"smc-{mode}")
    script = folder / "run.sh"
    script.write_text(run_script(names))
    disk = folder / "disk.ext4"
    files = [f"{folder / name}:/stale/{name}" for name in [*names, *extra, "run.sh"]]
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build-disk-image.py"),
            "--size",
            "16M",
            "--bench-size",
            "0",
            "--output",
            str(disk),
            *[arg for spec in files for arg in ("--extra-file", spec)],
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = expected * ROUNDS
    return disk, lines


def small_vm_config(tmp_path: Path, harts: int, disk: Path) -> Path:
    """The shipped Linux config with little RAM, its initramfs moved inside it, and our disk."""
    name = "linux-riscv64-virt-smp1.toml" if harts == 1 else "linux-riscv64-virt-smp4.toml"
    text = (ROOT / "configs" / "vms" / name).read_text()
    replacements = {
        r'^disk_path = "[^"]*"': f'disk_path = "{disk}"',
        r"^ramdisk_load_addr = .*$": "ramdisk_load_addr = 0x8400_0000",
        r"^    \[0x8000_0000, 0x2000_0000, 0x7, 0\],$": f"    [0x8000_0000, {RAM:#x}, 0x7, 0],",
        r"^cpu_num = \d+": f"cpu_num = {harts}",
    }
    for pattern, value in replacements.items():
        text, count = re.subn(pattern, value, text, flags=re.M)
        assert count == 1, f"{name}: no line matches {pattern}"
    path = tmp_path / name
    path.write_text(text.replace('"~/', f'"{Path.home()}/'))
    return path


@pytest.mark.parametrize("harts", [1, 4])
def test_programs_from_a_recycled_page_cache_and_code_written_through_an_alias_run_fresh(
    images: dict[str, Path], stale_disk: tuple[Path, list[str]], tmp_path: Path, harts: int
) -> None:
    pristine, runs = stale_disk
    # the second thread moves between harts 1-3 where there are 4; on one hart it stays on hart 0
    executor_harts = 0b1 if harts == 1 else 0b1110
    smc = SMC_ITERATIONS
    expected = [
        *runs,
        f"smc: ok single {smc['single']:016x}",
        f"smc: ok threads {smc['threads']:016x} harts {executor_harts:016x}",
    ]
    disk = tmp_path / "disk.ext4"
    shutil.copy(pristine, disk)
    config = small_vm_config(tmp_path, harts, disk)
    child = watch(
        pexpect.spawn(
            sys.executable,
            ["-m", "axvisor", "run", str(config)],
            cwd=str(ROOT),
            timeout=BOOT_TIMEOUT,
            encoding="utf-8",
            codec_errors="replace",
        )
    )
    try:
        child.expect_exact(SHELL)
        child.sendline("mount -o ro /dev/vda /mnt && sh /mnt/stale/run.sh")
        child.expect_exact(END)
        output = child.before.replace("\r", "")
        child.expect_exact(SHELL, timeout=60)
        child.send("\x01x")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    printed = [line.strip() for line in output.splitlines() if line.strip().startswith(("stale-code", "smc:"))]
    assert printed == expected, f"{len(printed)} lines, {len(expected)} expected:\n" + "\n".join(
        f"{'ok ' if a == b else 'BAD'} {a!r} expected {b!r}" for a, b in zip_longest(printed, expected)
    )
    assert child.exitstatus == 0
