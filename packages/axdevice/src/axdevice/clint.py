"""The SiFive CLINT (ACLINT MSWI + MTIMER) as QEMU's riscv virt machine places it.

Theory of operation (RISC-V ACLINT spec 1.0, sections 2 "MTIMER" and 3 "MSWI"; layout as
SiFive's CLINT and QEMU's hw/intc/riscv_aclint.c, which keep MSWI and MTIMER in one window):

- ``msip[h]`` at 0x0000 + 4*h: bit 0 is hart h's machine software interrupt (MSIP); the other
  bits read 0. A write drives the hart's MSIP line (``set_level``, only when it changes).
- ``mtimecmp[h]`` at 0x4000 + 8*h: 64 bits, also reachable as two 32-bit halves. Reset value all
  ones, so no timer fires before software arms one.
- ``mtime`` at 0xBFF8: 64 bits (or halves), ticking at ``MTIME_FREQ_HZ``. Reads come from the
  injected clock plus an offset; a write moves the offset so later reads continue from the
  written value.

The CLINT is sans-IO: it cannot raise MTIP at a future time. Every mtimecmp change is handed
to the injected ``HartTimers``; the CPU backend compares ``mtime()`` with ``mtimecmp(h)`` and
raises MTIP itself. Only 4-byte accesses at 4-aligned offsets and 8-byte accesses at 8-aligned
offsets act (QEMU's valid sizes); anything else, and unknown offsets, read 0 / drop the write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from axaddrspace import AccessWidth, AddrRange

from .device import BaseDeviceOps
from .irq import IrqLine
from .types import EmuDeviceType

CLINT_BASE = 0x0200_0000  # QEMU riscv virt
CLINT_SIZE = 0x10000

MSIP_OFFSET = 0x0000
MTIMECMP_OFFSET = 0x4000
MTIME_OFFSET = 0xBFF8

MTIME_FREQ_HZ = 10_000_000  # QEMU virt's timebase-frequency; the clock returns ticks at this rate

# The ACLINT spec's limit: MTIMER holds mtimecmp for harts 0..4094, since hart 4095's slot
# would be mtime itself (0x4000 + 8*4095 == 0xBFF8). The guest picks hart indexes by address,
# so every index is checked against num_harts before it touches a list.
MAX_HARTS = 4095

U64_MASK = (1 << 64) - 1
MTIMECMP_RESET = U64_MASK


@runtime_checkable
class HartTimers(Protocol):
    """Where the CLINT reports timer deadlines; the CPU backend raises MTIP from them."""

    def set_mtimecmp(self, hart: int, value: int) -> None:
        """Hart ``hart``'s timer now fires when mtime >= ``value`` (and MTIP falls below it)."""


class RecordingHartTimers:
    """A HartTimers that remembers every deadline, for tests."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.deadlines: dict[int, int] = {}

    def set_mtimecmp(self, hart: int, value: int) -> None:
        self.calls.append((hart, value))
        self.deadlines[hart] = value


@dataclass
class ClintState:
    """Everything needed to resume a CLINT; ``mtime`` is the timer's value when saved."""

    msip: tuple[bool, ...]
    mtimecmp: tuple[int, ...]
    mtime: int = 0


def _check_num_harts(num_harts: int) -> None:
    if not 1 <= num_harts <= MAX_HARTS:
        raise ValueError(f"CLINT num_harts {num_harts} is not 1..{MAX_HARTS} (the ACLINT limit)")


def _merge(old: int, value: int, width: AccessWidth, high_half: bool) -> int:
    """``old`` with the accessed 32 or 64 bits replaced by ``value``."""
    if width == AccessWidth.QWORD:
        return value & U64_MASK
    shift = 32 if high_half else 0
    return (old & ~(0xFFFF_FFFF << shift) | (value & 0xFFFF_FFFF) << shift) & U64_MASK


class Clint(BaseDeviceOps):
    """MSIP registers, per-hart mtimecmp and the shared mtime of ``num_harts`` harts."""

    def __init__(
        self,
        base: int,
        num_harts: int,
        msip_lines: Sequence[IrqLine],
        timers: HartTimers,
        clock: Callable[[], int],
    ) -> None:
        _check_num_harts(num_harts)
        if len(msip_lines) != num_harts:
            raise ValueError(f"CLINT needs one MSIP line per hart: {len(msip_lines)} lines for {num_harts} harts")
        self.base = base
        self.num_harts = num_harts
        self._range = AddrRange.from_start_size(base, CLINT_SIZE)
        self._lines = tuple(msip_lines)
        self._timers = timers
        self._clock = clock
        self._msip = [False] * num_harts
        self._mtimecmp = [MTIMECMP_RESET] * num_harts
        self._offset = 0  # mtime = clock() + offset (mod 2**64)

    @classmethod
    def from_state(
        cls,
        state: ClintState,
        base: int,
        msip_lines: Sequence[IrqLine],
        timers: HartTimers,
        clock: Callable[[], int],
    ) -> Clint:
        """A CLINT resumed from ``state``; ValueError if the state is not one a CLINT can be in.

        mtime continues from the saved value on the new clock; raised MSIP lines are raised
        at once and every hart's mtimecmp is reported to ``timers``, so the backend agrees.
        """
        num_harts = len(state.msip)
        _check_num_harts(num_harts)
        clint = cls(base, num_harts, msip_lines, timers, clock)
        clint.restore(state)
        return clint

    def restore(self, state: ClintState) -> None:
        """Put this CLINT into ``state`` in place (a VM snapshot restored), keeping its lines,
        timers and clock; ValueError as ``from_state``. mtime continues from the saved value."""
        if len(state.msip) != self.num_harts or len(state.mtimecmp) != self.num_harts:
            raise ValueError(
                f"ClintState has {len(state.msip)} msip and {len(state.mtimecmp)} mtimecmp values "
                f"for {self.num_harts} harts"
            )
        for value in (*state.mtimecmp, state.mtime):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U64_MASK:
                raise ValueError(f"ClintState value {value!r} is not a 64-bit unsigned integer")
        self.set_mtime(state.mtime)
        for hart in range(self.num_harts):
            self._set_msip(hart, bool(state.msip[hart]))
            self._mtimecmp[hart] = state.mtimecmp[hart]
            self._timers.set_mtimecmp(hart, state.mtimecmp[hart])

    def state(self) -> ClintState:
        """A snapshot of the registers, mtime as read now."""
        return ClintState(msip=tuple(self._msip), mtimecmp=tuple(self._mtimecmp), mtime=self.mtime())

    # -- for the CPU backend ---------------------------------------------------------------

    def mtime(self) -> int:
        """The current mtime (what the guest's rdtime and an mtime read see)."""
        return (self._clock() + self._offset) & U64_MASK

    def set_mtime(self, value: int) -> None:
        """Make mtime read ``value`` now and count on from there."""
        self._offset = (value - self._clock()) & U64_MASK

    def mtimecmp(self, hart: int) -> int:
        """Hart ``hart``'s timer compare value; IndexError for a hart the CLINT does not have."""
        if not 0 <= hart < self.num_harts:
            raise IndexError(f"hart {hart} is not 0..{self.num_harts - 1}")
        return self._mtimecmp[hart]

    def msip(self, hart: int) -> bool:
        """Whether hart ``hart``'s software interrupt is pending."""
        if not 0 <= hart < self.num_harts:
            raise IndexError(f"hart {hart} is not 0..{self.num_harts - 1}")
        return self._msip[hart]

    # -- the device trait ------------------------------------------------------------------

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Timer

    @property
    def address_range(self) -> AddrRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        offset = addr - self.base
        if not _aligned(offset, width):
            return 0
        if offset < MTIMECMP_OFFSET:
            hart = offset // 4
            return int(self._msip[hart]) if width == AccessWidth.DWORD and hart < self.num_harts else 0
        if offset < MTIME_OFFSET:
            hart, high = divmod(offset - MTIMECMP_OFFSET, 8)
            return _slice(self._mtimecmp[hart], width, high) if hart < self.num_harts else 0
        if offset < MTIME_OFFSET + 8:
            return _slice(self.mtime(), width, offset - MTIME_OFFSET)
        return 0

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        offset = addr - self.base
        if not _aligned(offset, width):
            return
        if offset < MTIMECMP_OFFSET:
            hart = offset // 4
            if width == AccessWidth.DWORD and hart < self.num_harts:
                self._set_msip(hart, bool(value & 1))
        elif offset < MTIME_OFFSET:
            hart, high = divmod(offset - MTIMECMP_OFFSET, 8)
            if hart < self.num_harts:
                new = _merge(self._mtimecmp[hart], value, width, bool(high))
                self._mtimecmp[hart] = new
                self._timers.set_mtimecmp(hart, new)
        elif offset < MTIME_OFFSET + 8:
            self.set_mtime(_merge(self.mtime(), value, width, offset != MTIME_OFFSET))

    def _set_msip(self, hart: int, level: bool) -> None:
        if self._msip[hart] != level:
            self._msip[hart] = level
            self._lines[hart].set_level(level)


def _aligned(offset: int, width: AccessWidth) -> bool:
    """Whether the access is one the CLINT answers: 32 or 64 bits, naturally aligned."""
    return width in (AccessWidth.DWORD, AccessWidth.QWORD) and offset % int(width) == 0


def _slice(value: int, width: AccessWidth, byte_offset: int) -> int:
    """The 64-bit register's bits a 32- or 64-bit read at ``byte_offset`` (0 or 4) sees."""
    if width == AccessWidth.QWORD:
        return value
    return (value >> (8 * byte_offset)) & 0xFFFF_FFFF
