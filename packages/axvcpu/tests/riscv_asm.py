"""Assemble riscv64 test programs at test time with the GNU cross binutils (never committed).

``assemble(source, base)`` returns the flat binary of ``source`` linked at ``base``. Tests that
need it use the ``requires_riscv_toolchain`` mark, which skips them, naming the missing tool,
where binutils-riscv64-linux-gnu is not installed.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .host_tools import needs

PREFIX = "riscv64-linux-gnu-"
TOOLS = ("as", "ld", "objcopy", "nm")
RAM_BASE = 0x8000_0000


requires_riscv_toolchain = needs(
    *(PREFIX + tool for tool in TOOLS), why="install binutils-riscv64-linux-gnu to run the soft backend tests"
)


class AssemblyError(RuntimeError):
    pass


@dataclass(frozen=True)
class Program:
    """A flat binary and the addresses of its labels."""

    code: bytes
    base: int
    symbols: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, label: str) -> int:
        return self.symbols[label]


@functools.lru_cache(maxsize=128)
def assemble(source: str, base: int = RAM_BASE) -> Program:
    """``source`` (GNU as syntax, rv64gc; a ``_start`` label is added if absent) linked at ``base``."""
    if "_start" not in source:
        source = "_start:\n" + source
    source = ".globl _start\n" + source + "\n"
    with tempfile.TemporaryDirectory(prefix="riscv-asm-") as tmp:
        work = Path(tmp)
        (work / "prog.S").write_text(source)
        steps = [
            [PREFIX + "as", "-march=rv64gc", "-mabi=lp64d", "-o", "prog.o", "prog.S"],
            [PREFIX + "ld", "-static", "--no-relax", f"-Ttext={base:#x}", "-e", "_start", "-o", "prog.elf", "prog.o"],
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
    """The encoding of one instruction (16 bits if the assembler compresses it)."""
    code = assemble(line, RAM_BASE).code
    if code[0] & 3 != 3:
        return int.from_bytes(code[:2], "little")
    return int.from_bytes(code[:4], "little")
