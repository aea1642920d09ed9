"""Assemble aarch64 test programs at test time with the GNU cross binutils (never committed).

``assemble(source, base)`` returns the flat binary of ``source`` linked at ``base`` and its
labels. Tests that need it use the ``requires_aarch64_toolchain`` mark, which skips them, naming
the missing tool, where binutils-aarch64-linux-gnu is not installed (a failure instead where
AXVISOR_REQUIRE_TOOLS names it).
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

from .host_tools import needs
from .riscv_asm import AssemblyError, Program

PREFIX = "aarch64-linux-gnu-"
TOOLS = ("as", "ld", "objcopy", "nm")
RAM_BASE = 0x4000_0000

requires_aarch64_toolchain = needs(
    *(PREFIX + tool for tool in TOOLS), why="install binutils-aarch64-linux-gnu to run the soft aarch64 tests"
)


@functools.lru_cache(maxsize=128)
def assemble(source: str, base: int = RAM_BASE) -> Program:
    """``source`` (GNU as syntax, armv8-a; a ``_start`` label is added if absent) linked at ``base``."""
    if "_start" not in source:
        source = "_start:\n" + source
    source = ".globl _start\n" + source + "\n"
    with tempfile.TemporaryDirectory(prefix="aarch64-asm-") as tmp:
        work = Path(tmp)
        (work / "prog.S").write_text(source)
        steps = [
            [PREFIX + "as", "-o", "prog.o", "prog.S"],
            [PREFIX + "ld", "-static", f"-Ttext={base:#x}", "-e", "_start", "-o", "prog.elf", "prog.o"],
            [PREFIX + "objcopy", "-O", "binary", "prog.elf", "prog.bin"],
            [PREFIX + "nm", "prog.elf"],
        ]
        for step in steps:
            done = subprocess.run(step, cwd=work, capture_output=True, text=True, check=False)
            if done.returncode:
                raise AssemblyError(f"{' '.join(step)} failed:\n{done.stderr}\n--- source ---\n{source}")
        symbols = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3:
                symbols[parts[2]] = int(parts[0], 16)
        return Program((work / "prog.bin").read_bytes(), base, symbols)


def encode(line: str) -> int:
    """The 32-bit encoding of one instruction."""
    return int.from_bytes(assemble(line, RAM_BASE).code[:4], "little")
