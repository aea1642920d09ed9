"""Where every image goes in guest RAM, decided and checked before a byte is copied.

The loaders do not write guest memory directly: they add each piece (the kernel or its ELF
segments, firmware, device tree, ramdisk) to an ``ImagePlan``, and reserve the areas the machine
fills at boot (boot structures, zero page, command line, generated device tree), which only the
machine writes. ``check()`` then finds, from
the config's memory regions alone, a piece that does not fit in RAM or two pieces that overlap,
and names the config key to change. ``apply()`` copies the pieces into a VM's memory. So
``axvisor check`` and ``axvisor run`` run the same loader and the same checks, and check needs
no guest RAM.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from axaddrspace import GuestMemory
from axvm import AxVMCrateConfig
from axvm.machine import BootPlan
from axvm.machines.registry import machine_for

from ..errors import UserError
from .images import read_image, write_image


@dataclass(frozen=True)
class Piece:
    """One span of guest RAM the plan fills (or, with ``reserved``, the machine fills at boot)."""

    what: str
    """How messages name it: "the kernel", "the ramdisk", "the x86 boot structures"."""
    gpa: int
    size: int
    key: str | None = None
    """The config key whose file it comes from; None for what the VMM itself makes."""
    addr_key: str | None = None
    """The config key that chose ``gpa``, when the config did (kernel.ramdisk_load_addr)."""
    data: bytes | None = None
    source: Path | None = None
    reserved: bool = False

    @property
    def end(self) -> int:
        return self.gpa + self.size

    @property
    def blame(self) -> str:
        """The key a user changes to move this piece."""
        return self.addr_key or self.key or "kernel.memory_regions"

    def span(self) -> str:
        return f"[{self.gpa:#x}, {self.end:#x})"


class ImagePlan:
    """The pieces one config puts in guest RAM, and how to enter them (``boot``)."""

    def __init__(self, config: AxVMCrateConfig) -> None:
        """Starts with the areas the config's machine writes at boot reserved."""
        self.config = config
        self.pieces: list[Piece] = []
        self.boot: BootPlan | None = None
        for area in machine_for(config.base.arch).boot_areas(config):
            self.reserve(area.what, area.gpa, area.size)

    def add(self, what: str, gpa: int, data: bytes, key: str | None = None, addr_key: str | None = None) -> None:
        """Bytes in hand: a kernel or ELF segment (``key``), or a structure the VMM built (no key)."""
        self.pieces.append(Piece(what, gpa, len(data), key, addr_key, data=data))

    def add_file(self, what: str, gpa: int, path: Path, key: str, addr_key: str) -> None:
        """A whole file, read only when applied (a check never reads a ramdisk)."""
        self.pieces.append(Piece(what, gpa, path.stat().st_size, key, addr_key, source=path))

    def reserve(self, what: str, gpa: int, size: int) -> None:
        """An area the machine writes at boot: images must stay out of it."""
        self.pieces.append(Piece(what, gpa, size, reserved=True))

    # -- checking ------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """One line per piece outside RAM and per pair of overlapping pieces."""
        origin = self.config.origin
        lines = [
            f"{origin}: {piece.key or 'kernel.memory_regions'}: {message}"
            for piece in self.pieces
            if (message := self._fit_problem(piece)) is not None
        ]
        placed = [piece for piece in self.pieces if self._fit_problem(piece) is None]  # one line per mistake
        for first, second in itertools.combinations(placed, 2):
            if first.gpa < second.end and second.gpa < first.end and _may_not_overlap(first, second):
                later, earlier = (first, second) if second.key is None else (second, first)
                fix = "expected another load address" if earlier.key is None else "move one of them"
                lines.append(
                    f"{origin}: {later.blame}: {later.what} {later.span()} overlaps "
                    f"{earlier.what} {earlier.span()}; {fix}"
                )
        return lines

    def _fit_problem(self, piece: Piece) -> str | None:
        if piece.size == 0:
            return None
        spans = _ram_spans(self.config)
        start = next(((s, e) for s, e in spans if s <= piece.gpa < e), None)
        if start is not None and piece.end <= start[1]:
            return None
        where = (
            f"nothing in memory_regions covers {piece.gpa:#x}"
            if start is None
            else f"it runs to {piece.end:#x}, past the end of RAM at {start[1]:#x}"
        )
        if piece.reserved:
            return f"{piece.what} must lie in guest RAM at {piece.span()}, but {where}; expected a larger memory region"
        name = self._name(piece)
        return (
            f"{name} ({piece.size:#x} bytes at {piece.gpa:#x}) does not fit in guest RAM: {where}; "
            "expected a larger memory region or another load address"
        )

    def _name(self, piece: Piece) -> str:
        if piece.key is not None and piece.key.startswith("kernel.") and piece.key.endswith("_path"):
            path = getattr(self.config.kernel, piece.key.split(".")[1], None)
            if isinstance(path, Path):
                return path.name
        return piece.what

    def check(self) -> None:
        """UserError, one line per problem, when the pieces do not all fit without overlapping."""
        lines = self.problems()
        if lines:
            raise UserError("\n".join(lines))

    # -- loading -------------------------------------------------------------------------------

    def apply(self, memory: GuestMemory) -> BootPlan:
        """Copy every piece into ``memory`` (checked first); the boot plan the loader chose."""
        self.check()
        for piece in self.pieces:
            if piece.reserved:
                continue
            data = piece.data
            if data is None and piece.source is not None and piece.key is not None:
                data = read_image(self.config, piece.key, piece.source)
                if len(data) != piece.size:
                    raise UserError(
                        f"{self.config.origin}: {piece.key}: {piece.source} changed size while "
                        f"loading ({piece.size:#x} -> {len(data):#x} bytes); expected it to stay "
                        "as it was"
                    )
            write_image(self.config, memory, piece.key or "kernel.memory_regions", piece.gpa, data or b"")
        assert self.boot is not None, "a loader sets the boot plan"
        return self.boot


def _may_not_overlap(first: Piece, second: Piece) -> bool:
    """Pieces of one image (ELF segments) and the VMM's own structures may share space."""
    if first.key is None and second.key is None:
        return False
    return first.key != second.key


def _ram_spans(config: AxVMCrateConfig) -> list[tuple[int, int]]:
    """The memory regions as [start, end) spans, adjacent regions merged (a write may cross them)."""
    spans: list[tuple[int, int]] = []
    for region in sorted(config.kernel.memory_regions, key=lambda r: r.gpa):
        if spans and spans[-1][1] == region.gpa:
            spans[-1] = (spans[-1][0], region.end)
        else:
            spans.append((region.gpa, region.end))
    return spans
