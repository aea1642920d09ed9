"""The RISC-V Platform-Level Interrupt Controller (PLIC) as a sans-IO state machine.

Theory of operation (RISC-V PLIC Specification 1.0.0; the register map of its "Memory Map"
chapter, with QEMU's hw/intc/sifive_plic.c for the choices the spec leaves open):

- Sources 1..num_sources (``riscv,ndev``; source 0 does not exist and reads 0), contexts
  0..len(context_lines)-1. On QEMU's virt machine context 2h is hart h's M mode and 2h+1 its
  S mode, as the device tree's ``interrupts-extended`` (<intc 11 intc 9> per hart) says.
- Registers, all 32 bits: priority[src] at 0x0 + 4*src; pending bits at 0x1000 (read-only);
  the enable bits of context c at 0x2000 + 0x80*c; its threshold at 0x20_0000 + 0x1000*c and
  its claim/complete register at 0x20_0004 + 0x1000*c.
- Priorities and thresholds are WARL with 3 bits (0..7), like QEMU virt (num_priorities = 7):
  higher bits of a write are dropped. Priority 0 never interrupts.
- A context's output line is a level, asserted exactly while some source is pending, enabled
  for the context, not in flight (claimed and not yet completed), and has priority > the
  context's threshold. ``set_level`` is called only when that changes.
- A claim returns the highest-priority such source (ties go to the lowest id; 0 if none),
  clears its pending bit and puts it in flight; other contexts no longer see it. A completion
  ends the flight, but only for an id enabled for the completing context (spec: "silently
  ignored" otherwise).
- Gateways (``source(n)``): a level source is pending while its line is high and it is not in
  flight; after completion a still-high line makes it pending again. ``pulse()`` is an edge:
  it makes the source pending, and if it arrives while the source is in flight the pending
  bit waits for the completion.

One departure, chosen for a VMM: a level source whose line drops before it is claimed loses
its pending bit (the spec's gateway would keep the request latched, and the guest would take a
spurious claim). Only aligned 32-bit accesses act; other accesses and holes read 0 and drop
writes. Every source and context index the guest writes is checked against the configured
counts, so nothing it does grows state or raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from axaddrspace import AccessWidth, AddrRange

from .device import BaseDeviceOps
from .irq import IrqLine
from .types import EmuDeviceType

PLIC_BASE = 0x0C00_0000  # QEMU riscv virt
PLIC_SIZE = 0x60_0000  # QEMU virt: room for 1024 contexts (512 harts)

PRIORITY_OFFSET = 0x0
PENDING_OFFSET = 0x1000
ENABLE_OFFSET = 0x2000
ENABLE_STRIDE = 0x80
CONTEXT_OFFSET = 0x20_0000
CONTEXT_STRIDE = 0x1000
CLAIM_COMPLETE = 0x4  # within a context's block; threshold is at 0x0

# The spec's limits: source ids are 10 bits with 0 reserved, and the enable blocks between
# 0x2000 and 0x1F_FFFF hold 15872 contexts. Both bound what a guest-chosen address can index.
MAX_SOURCES = 1023
MAX_CONTEXTS = 15872

PRIORITY_MASK = 0x7  # 3-bit WARL priorities and thresholds, as QEMU virt (num_priorities = 7)
MAX_PRIORITY = PRIORITY_MASK


@dataclass
class PlicState:
    """Everything needed to resume a PLIC; bit n of a mask is source n."""

    priorities: tuple[int, ...]  # index 0..num_sources; [0] is always 0
    thresholds: tuple[int, ...]  # one per context
    enables: tuple[int, ...]  # one mask per context
    pending: int = 0
    claimed: int = 0  # in flight: claimed and not yet completed
    levels: int = 0  # input lines currently high


class PlicSource:
    """One interrupt input of the PLIC, handed to the device that drives it."""

    __slots__ = ("_plic", "number")

    def __init__(self, plic: Plic, number: int) -> None:
        self._plic = plic
        self.number = number

    def set_level(self, level: bool) -> None:
        self._plic._source_level(self.number, bool(level))

    def pulse(self) -> None:
        self._plic._source_edge(self.number)

    def __repr__(self) -> str:
        return f"PlicSource({self.number})"


def _lowest_bit(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


class Plic(BaseDeviceOps):
    """A PLIC with ``num_sources`` sources and one output line per context."""

    def __init__(
        self, base: int, num_sources: int, context_lines: Sequence[IrqLine], size: int = PLIC_SIZE
    ) -> None:
        if not 1 <= num_sources <= MAX_SOURCES:
            raise ValueError(f"PLIC num_sources {num_sources} is not 1..{MAX_SOURCES}")
        num_contexts = len(context_lines)
        fits = (size - CONTEXT_OFFSET) // CONTEXT_STRIDE
        if not 1 <= num_contexts <= min(MAX_CONTEXTS, fits):
            raise ValueError(
                f"PLIC has {num_contexts} contexts; a {size:#x}-byte window holds 1..{min(MAX_CONTEXTS, fits)}"
            )
        self.base = base
        self.num_sources = num_sources
        self.num_contexts = num_contexts
        self._range = AddrRange.from_start_size(base, size)
        self._lines = tuple(context_lines)
        self._valid = ((1 << (num_sources + 1)) - 1) & ~1  # bits 1..num_sources
        self._sources = tuple(PlicSource(self, n) for n in range(num_sources + 1))
        self._load(PlicState((0,) * (num_sources + 1), (0,) * num_contexts, (0,) * num_contexts))

    @classmethod
    def from_state(
        cls, state: PlicState, base: int, context_lines: Sequence[IrqLine], size: int = PLIC_SIZE
    ) -> Plic:
        """A PLIC resumed from ``state``; ValueError if no PLIC could be in it.

        The context lines whose rule holds in ``state`` are raised at once.
        """
        plic = cls(base, len(state.priorities) - 1, context_lines, size)
        plic.restore(state)
        return plic

    def restore(self, state: PlicState) -> None:
        """Put this PLIC into ``state`` in place (a VM snapshot restored), keeping its lines;
        ValueError if this PLIC could not be in it. The lines follow the restored rule."""
        if len(state.priorities) != self.num_sources + 1:
            raise ValueError(f"PlicState has {len(state.priorities) - 1} sources, this PLIC {self.num_sources}")
        if len(state.thresholds) != self.num_contexts or len(state.enables) != self.num_contexts:
            raise ValueError(
                f"PlicState has {len(state.thresholds)} thresholds and {len(state.enables)} enable masks "
                f"for {self.num_contexts} context lines"
            )
        for value in (*state.priorities, *state.thresholds):
            if not isinstance(value, int) or value & ~PRIORITY_MASK or value < 0:
                raise ValueError(f"PlicState priority/threshold {value!r} is not 0..{MAX_PRIORITY}")
        if state.priorities[0] != 0:
            raise ValueError("PlicState gives source 0 a priority; source 0 does not exist")
        for mask in (*state.enables, state.pending, state.claimed, state.levels):
            if not isinstance(mask, int) or mask < 0 or mask & ~self._valid:
                raise ValueError(f"PlicState mask {mask!r} names sources outside 1..{self.num_sources}")
        was_high = list(getattr(self, "_out", ()))
        self._load(state)
        for context, high in enumerate(was_high):
            if high and not self._out[context]:  # _load starts from all-low: lower what it left high
                self._lines[context].set_level(False)

    def state(self) -> PlicState:
        """A snapshot of every register and input level."""
        return PlicState(
            priorities=tuple(self._priority),
            thresholds=tuple(self._threshold),
            enables=tuple(self._enable),
            pending=self._pending,
            claimed=self._claimed,
            levels=self._levels,
        )

    def _load(self, state: PlicState) -> None:
        self._priority = list(state.priorities)
        self._threshold = list(state.thresholds)
        self._enable = list(state.enables)
        self._pending, self._claimed, self._levels = state.pending, state.claimed, state.levels
        # _by_priority[p]: the sources of priority p; _above[t]: those of priority > t.
        self._by_priority = [0] * (MAX_PRIORITY + 1)
        for number, priority in enumerate(self._priority):
            self._by_priority[priority] |= 1 << number
        self._recompute_above()
        self._out = [False] * self.num_contexts
        self._update()

    # -- host side: the input lines --------------------------------------------------------

    def source(self, number: int) -> PlicSource:
        """The input line of source ``number`` (1..num_sources); ValueError otherwise."""
        if not 1 <= number <= self.num_sources:
            raise ValueError(f"PLIC source {number} is not 1..{self.num_sources}")
        return self._sources[number]

    def context_level(self, context: int) -> bool:
        """Whether context ``context``'s output line is asserted."""
        return self._out[context]

    def _source_level(self, number: int, level: bool) -> None:
        bit = 1 << number
        if level:
            self._levels |= bit
            if not self._claimed & bit:
                self._pending |= bit
        else:
            self._levels &= ~bit
            if not self._claimed & bit:
                self._pending &= ~bit
        self._update()

    def _source_edge(self, number: int) -> None:
        self._pending |= 1 << number  # held back by the claimed mask while in flight
        self._update()

    # -- guest side ------------------------------------------------------------------------

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.InterruptController

    @property
    def address_range(self) -> AddrRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        offset = addr - self.base
        if width != AccessWidth.DWORD or offset % 4:
            return 0
        if offset < PENDING_OFFSET:
            number = offset // 4
            return self._priority[number] if number <= self.num_sources else 0
        if offset < ENABLE_OFFSET:
            return self._word(self._pending, offset - PENDING_OFFSET)
        if offset < CONTEXT_OFFSET:
            context, word = divmod(offset - ENABLE_OFFSET, ENABLE_STRIDE)
            return self._word(self._enable[context], word) if context < self.num_contexts else 0
        context, register = divmod(offset - CONTEXT_OFFSET, CONTEXT_STRIDE)
        if context >= self.num_contexts:
            return 0
        if register == 0:
            return self._threshold[context]
        if register == CLAIM_COMPLETE:
            return self.claim(context)
        return 0

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        offset = addr - self.base
        if width != AccessWidth.DWORD or offset % 4:
            return
        value &= 0xFFFF_FFFF
        if offset < PENDING_OFFSET:
            number = offset // 4
            if 1 <= number <= self.num_sources:
                self._set_priority(number, value & PRIORITY_MASK)
        elif offset < ENABLE_OFFSET:
            pass  # pending bits are read-only
        elif offset < CONTEXT_OFFSET:
            context, word = divmod(offset - ENABLE_OFFSET, ENABLE_STRIDE)
            if context < self.num_contexts and word < ENABLE_STRIDE:
                shift = 8 * word  # word is a byte offset: 4 bytes hold sources 8*word .. 8*word+31
                mask = (self._enable[context] & ~(0xFFFF_FFFF << shift)) | value << shift
                self._enable[context] = mask & self._valid
                self._update()
        else:
            context, register = divmod(offset - CONTEXT_OFFSET, CONTEXT_STRIDE)
            if context >= self.num_contexts:
                return
            if register == 0:
                self._threshold[context] = value & PRIORITY_MASK
                self._update()
            elif register == CLAIM_COMPLETE:
                self.complete(context, value)

    def claim(self, context: int) -> int:
        """Claim for ``context``: the best deliverable source (0 if none), now in flight."""
        candidates = self._deliverable(context)
        if not candidates:
            return 0
        for priority in range(MAX_PRIORITY, self._threshold[context], -1):
            best = candidates & self._by_priority[priority]
            if best:
                number = _lowest_bit(best)
                bit = 1 << number
                self._pending &= ~bit
                self._claimed |= bit
                self._update()
                return number
        return 0  # unreachable: candidates only holds sources above the threshold

    def complete(self, context: int, number: int) -> None:
        """End the flight of source ``number``; ignored unless it is enabled for ``context``."""
        if not 1 <= number <= self.num_sources:
            return
        bit = 1 << number
        if not self._enable[context] & bit or not self._claimed & bit:
            return
        self._claimed &= ~bit
        if self._levels & bit:
            self._pending |= bit  # the gateway forwards the still-high level again
        self._update()

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _word(mask: int, byte_offset: int) -> int:
        """The 32 bits of a source bitmask at a register's byte offset (sources 8*off..+31)."""
        return (mask >> (8 * byte_offset)) & 0xFFFF_FFFF

    def _set_priority(self, number: int, priority: int) -> None:
        bit = 1 << number
        self._by_priority[self._priority[number]] &= ~bit
        self._by_priority[priority] |= bit
        self._priority[number] = priority
        self._recompute_above()
        self._update()

    def _recompute_above(self) -> None:
        above = [0] * (MAX_PRIORITY + 1)
        acc = 0
        for priority in range(MAX_PRIORITY, -1, -1):
            above[priority] = acc  # sources strictly above this priority
            acc |= self._by_priority[priority]
        self._above = above

    def _deliverable(self, context: int) -> int:
        """Sources that would interrupt ``context`` now (the output line rule)."""
        return self._pending & ~self._claimed & self._enable[context] & self._above[self._threshold[context]]

    def _update(self) -> None:
        """Bring each context's line in line with the rule; call set_level only on changes."""
        live = self._pending & ~self._claimed
        for context in range(self.num_contexts):
            level = bool(live & self._enable[context] & self._above[self._threshold[context]])
            if level != self._out[context]:
                self._out[context] = level
                self._lines[context].set_level(level)
