"""An ARM GICv2 (distributor and CPU interfaces) as a sans-IO state machine.

Theory of operation (ARM Generic Interrupt Controller Architecture Specification v2.0, IHI 0048B:
chapter 3 "Interrupt Handling and Prioritization", 4.3 distributor and 4.4 CPU interface
register descriptions; the identity is a GIC-400's, without the Security or Virtualization
Extensions, as QEMU's arm virt board without ``secure=on`` shows Linux):

- INTIDs: SGIs 0-15 and PPIs 16-31 are private to each CPU (their enable, pending, active,
  group, priority and configuration bits are banked: a CPU sees its own copy), SPIs 32 up to
  ``num_irqs`` - 1 are shared. 1020-1023 are special; 1023 is "spurious" (nothing to acknowledge).
- The device tree numbers interrupts per kind; this API takes INTIDs throughout:
  ``<GIC_SPI n>`` is INTID 32 + n (``spi_intid``), ``<GIC_PPI n>`` is 16 + n (``ppi_intid``); the
  generic timer's virtual PPI is INTID 27 and its non-secure physical one INTID 30.
- Each interrupt has a pending latch, an active bit, an input level and a configuration (3.2.4,
  4.3.13): level-sensitive ones are pending while their input is high or their latch is set;
  edge-triggered ones latch a rising edge (or a pulse). SGIs are always edge-triggered and keep
  one pending bit per source CPU (4.3.15, 4.3.16); SGI enables are RAO/WI (GIC-400).
- The distributor forwards to CPU c the pending, enabled, inactive interrupts of a group that
  GICD_CTLR enables and, for SPIs, whose GICD_ITARGETSR byte names c (3.1.2). With one CPU the
  target registers are RAZ/WI and every SPI goes to it (4.3.12). Of these, together with the
  groups GICC_CTLR enables, the highest priority (lowest value, ties to the lowest INTID) is
  the CPU's highest-priority pending interrupt (GICC_HPPIR).
- The CPU interface signals it (its ``IrqLine`` is high) while its priority is below GICC_PMR
  and its group priority (the bits GICC_BPR leaves above the binary point) is higher than the
  running priority's (3.3): 5 priority bits are implemented (values are multiples of 8; the
  minimum binary point is therefore 2), as on a GIC-400. ``set_level`` is called only on change.
- Reading GICC_IAR acknowledges that interrupt (3.2.4): pending -> active (an SGI clears the
  source it reports in bits 12:10; a level input still high leaves it active and pending), and
  its priority becomes the running priority; if nothing could be signalled it returns 1023 and
  changes nothing. Writing GICC_EOIR drops that priority (the interrupt's entry leaves the
  running stack, 3.2.1) and, unless GICC_CTLR.EOImode is set, deactivates it; in EOImode
  GICC_DIR deactivates. An EOIR naming an interrupt that was not acknowledged is ignored.
- GICD_SGIR raises SGIs (target list, all but self, or self) with the writer as the source.

Register accesses: 32-bit word registers answer aligned 32-bit accesses only; the byte arrays
(GICD_IPRIORITYR, GICD_ITARGETSR, GICD_CPENDSGIR, GICD_SPENDSGIR) also answer byte and
halfword accesses (4.1.4). Anything else, unknown offsets and INTIDs past ``num_irqs`` read 0
and drop writes.

Banking and the bus: a register access does not say which CPU made it, and the bus calls
``handle_read(addr, width)``. So the registers are reached through windows bound to an
accessing CPU: ``distributor_view(cpu)`` / ``cpu_interface(cpu)`` (fixed CPU, for a per-vCPU bus
the vCPU dispatches its MMIO through first), or ``distributor_window(current_cpu)`` /
``cpu_interface_window(current_cpu)`` (one device on the VM's shared bus that asks the injected
``current_cpu()``, e.g. the id the vCPU thread recorded before dispatching, who is accessing).

Departures, chosen for a VMM: groups are kept (GICD_IGROUPR, the two enable bits of GICD_CTLR
and GICC_CTLR) but both are signalled on the one IRQ output and acknowledged through GICC_IAR
(no FIQ output, GICC_AIAR/AHPPIR read 1023, AEOIR is ignored); preemption always uses GICC_BPR
(GICC_ABPR is stored); the active-priority registers GICC_APRn read 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from axaddrspace import AccessWidth

from .gicv2_state import (
    GICC_CTLR_EOIMODE,
    GICC_CTLR_MASK,
    GICD_CTLR_MASK,
    MAX_INTID,
    MIN_BPR,
    NUM_PRIVATE,
    NUM_SGIS,
    PRIORITY_MASK,
    GicCpuState,
    GicState,
    check_config,
    validate_state,
)
from .gicv2_windows import GicCpuInterfaceWindow, GicDistributorWindow, GicInputLine, fixed_cpu
from .irq import IrqLine
from .primecell import id_register

GICD_BASE = 0x0800_0000  # QEMU arm virt
GICD_SIZE = 0x10000
GICC_BASE = 0x0801_0000
GICC_SIZE = 0x10000

SPURIOUS = 1023

# Distributor register offsets (IHI 0048B table 4-1).
GICD_CTLR = 0x000
GICD_TYPER = 0x004
GICD_IIDR = 0x008
GICD_IGROUPR = 0x080
GICD_ISENABLER = 0x100
GICD_ICENABLER = 0x180
GICD_ISPENDR = 0x200
GICD_ICPENDR = 0x280
GICD_ISACTIVER = 0x300
GICD_ICACTIVER = 0x380
GICD_IPRIORITYR = 0x400
GICD_ITARGETSR = 0x800
GICD_ICFGR = 0xC00
GICD_SGIR = 0xF00
GICD_CPENDSGIR = 0xF10
GICD_SPENDSGIR = 0xF20
GICD_ID = 0xFD0

# CPU interface register offsets (IHI 0048B table 4-2).
GICC_CTLR = 0x00
GICC_PMR = 0x04
GICC_BPR = 0x08
GICC_IAR = 0x0C
GICC_EOIR = 0x10
GICC_RPR = 0x14
GICC_HPPIR = 0x18
GICC_ABPR = 0x1C
GICC_AIAR = 0x20
GICC_AHPPIR = 0x28
GICC_IIDR = 0xFC
GICC_DIR = 0x1000

GICD_IIDR_VALUE = 0x0200_143B  # GIC-400: product 0x02, revision 1, implementer ARM (0x43B)
GICC_IIDR_VALUE = 0x0202_143B  # GIC-400 CPU interface: architecture version 2
GICD_ID_BYTES = (0x04, 0x00, 0x00, 0x00, 0x90, 0xB4, 0x2B, 0x00, 0x0D, 0xF0, 0x05, 0xB1)
"""PIDR4-7, PIDR0-3 (GIC-400, ArchRev 2 in PIDR2) and CIDR0-3, at 0xFD0-0xFFC."""

SGI_MASK = (1 << NUM_SGIS) - 1
PPI_MASK = 0xFFFF_0000
PRIVATE_MASK = 0xFFFF_FFFF
SGI_CONFIG = 0xAAAA_AAAA  # GICD_ICFGR0: every SGI edge-triggered, read-only
IDLE_PRIORITY = 0x100  # running priority with nothing active: below every real priority
RPR_IDLE = 0xFF

_BYTE_WIDTHS = (AccessWidth.BYTE, AccessWidth.WORD, AccessWidth.DWORD)


def spi_intid(spi: int) -> int:
    """The INTID of a device tree's ``<GIC_SPI spi>``."""
    return NUM_PRIVATE + spi


def ppi_intid(ppi: int) -> int:
    """The INTID of a device tree's ``<GIC_PPI ppi>``."""
    return NUM_SGIS + ppi


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


class _Cpu:
    """One CPU's banked registers, its CPU interface, and its output line."""

    def __init__(self, index: int, state: GicCpuState, line: IrqLine) -> None:
        self.index = index
        self.line = line
        self.out = False
        self.ctlr, self.pmr, self.bpr, self.abpr = state.ctlr, state.pmr, state.bpr, state.abpr
        self.enabled = state.enabled | SGI_MASK
        self.pending, self.active, self.levels = state.pending, state.active, state.levels
        self.edge, self.group = state.edge, state.group
        self.priority = list(state.priorities)
        self.sgi_sources = list(state.sgi_sources)
        self.running = list(state.running)

    def snapshot(self) -> GicCpuState:
        return GicCpuState(
            ctlr=self.ctlr,
            pmr=self.pmr,
            bpr=self.bpr,
            abpr=self.abpr,
            enabled=self.enabled,
            pending=self.pending,
            active=self.active,
            levels=self.levels,
            edge=self.edge,
            group=self.group,
            priorities=tuple(self.priority),
            sgi_sources=tuple(self.sgi_sources),
            running=tuple(self.running),
        )

    def private_pending(self) -> int:
        """Pending private INTIDs: SGIs with any source, PPIs latched or held high (level)."""
        sgis = sum(1 << n for n, sources in enumerate(self.sgi_sources) if sources)
        return sgis | ((self.pending | (self.levels & ~self.edge)) & PPI_MASK)

    def running_priority(self) -> int:
        return self.running[-1][2] if self.running else IDLE_PRIORITY


class Gicv2:
    """A GICv2 with ``num_irqs`` INTIDs (a multiple of 32) and one IRQ line per CPU."""

    def __init__(self, num_irqs: int, cpu_lines: Sequence[IrqLine]) -> None:
        check_config(num_irqs, len(cpu_lines))
        self.num_irqs = num_irqs
        self.num_cpus = len(cpu_lines)
        self._lines = tuple(cpu_lines)
        self._load(GicState.power_on(num_irqs, self.num_cpus))

    @classmethod
    def from_state(cls, state: GicState, cpu_lines: Sequence[IrqLine]) -> Gicv2:
        """A GIC resumed from ``state``; ValueError if no GIC could be in it.

        The lines of CPUs with an interrupt to signal in ``state`` are raised at once.
        """
        validate_state(state, len(cpu_lines))
        gic = cls(state.num_irqs, cpu_lines)
        gic._load(state)
        return gic

    def restore(self, state: GicState) -> None:
        """Put this GIC into ``state`` in place (a VM snapshot restored), keeping its CPU lines;
        ValueError if this GIC (its INTIDs, its CPUs) could not be in it."""
        validate_state(state, self.num_cpus)
        if state.num_irqs != self.num_irqs:
            raise ValueError(f"GicState has {state.num_irqs} INTIDs, this GIC {self.num_irqs}")
        self._load(state)

    def state(self) -> GicState:
        """A snapshot of every register, latch and input level."""
        return GicState(
            num_irqs=self.num_irqs,
            cpus=tuple(cpu.snapshot() for cpu in self._cpus),
            ctlr=self._ctlr,
            enabled=self._enabled,
            pending=self._pending,
            active=self._active,
            levels=self._levels,
            edge=self._edge,
            group=self._group,
            priorities=tuple(self._priority[NUM_PRIVATE:]),
            targets=tuple(self._targets[NUM_PRIVATE:]),
        )

    def reset(self) -> None:
        """Return to the power-on state (a VM reset); input levels are kept, as the devices
        driving them keep theirs until they are reset themselves."""
        power_on = GicState.power_on(self.num_irqs, self.num_cpus)
        self._load(power_on.with_levels(self._levels, tuple(cpu.levels for cpu in self._cpus)))

    def _load(self, state: GicState) -> None:
        self._ctlr = state.ctlr
        self._enabled, self._pending, self._active = state.enabled, state.pending, state.active
        self._levels, self._edge, self._group = state.levels, state.edge, state.group
        self._priority = [0] * NUM_PRIVATE + list(state.priorities)
        self._targets = [0] * NUM_PRIVATE + list(state.targets)
        self._limit = min(self.num_irqs, MAX_INTID + 1)  # INTIDs past it do not exist
        self._valid_spis = ((1 << self._limit) - 1) & ~PRIVATE_MASK
        self._cpu_mask = (1 << self.num_cpus) - 1
        old = getattr(self, "_cpus", None)
        self._cpus = [
            _Cpu(n, cpu_state, line) for n, (cpu_state, line) in enumerate(zip(state.cpus, self._lines, strict=True))
        ]
        if old is not None:  # keep what the lines were last told, so only changes are reported
            for cpu, previous in zip(self._cpus, old, strict=True):
                cpu.out = previous.out
        self._recompute_targets()
        self._update()

    # -- host side: inputs and outputs -----------------------------------------------------

    def set_spi_level(self, intid: int, level: bool) -> None:
        """Drive SPI ``intid``'s input (a level; a rising edge if the SPI is edge-triggered)."""
        bit = 1 << self._check_spi(intid)
        rising = level and not self._levels & bit
        self._levels = self._levels | bit if level else self._levels & ~bit
        if rising and self._edge & bit:
            self._pending |= bit
        self._update()

    def pulse_spi(self, intid: int) -> None:
        """One edge on SPI ``intid``: it becomes pending whatever its configuration."""
        self._pending |= 1 << self._check_spi(intid)
        self._update()

    def set_ppi_level(self, cpu: int, intid: int, level: bool) -> None:
        """Drive CPU ``cpu``'s PPI ``intid`` (16-31), e.g. its generic timer (27 virtual, 30 physical)."""
        target = self._cpus[self._check_cpu(cpu)]
        bit = 1 << self._check_ppi(intid)
        rising = level and not target.levels & bit
        target.levels = target.levels | bit if level else target.levels & ~bit
        if rising and target.edge & bit:
            target.pending |= bit
        self._update_cpu(target)

    def pulse_ppi(self, cpu: int, intid: int) -> None:
        """One edge on CPU ``cpu``'s PPI ``intid``."""
        target = self._cpus[self._check_cpu(cpu)]
        target.pending |= 1 << self._check_ppi(intid)
        self._update_cpu(target)

    def spi_line(self, intid: int) -> GicInputLine:
        """An ``IrqLine`` for the device wired to SPI ``intid`` (32 + the device tree's number)."""
        self._check_spi(intid)
        return GicInputLine(self, None, intid)

    def ppi_line(self, cpu: int, intid: int) -> GicInputLine:
        """An ``IrqLine`` for CPU ``cpu``'s PPI ``intid`` (16-31)."""
        self._check_cpu(cpu)
        self._check_ppi(intid)
        return GicInputLine(self, cpu, intid)

    def cpu_irq_level(self, cpu: int) -> bool:
        """Whether CPU ``cpu``'s IRQ line is asserted."""
        return self._cpus[self._check_cpu(cpu)].out

    def distributor_view(self, cpu: int, base: int = GICD_BASE, size: int = GICD_SIZE) -> GicDistributorWindow:
        """The distributor as CPU ``cpu`` sees it, as a bus device."""
        self._check_cpu(cpu)
        return GicDistributorWindow(self, fixed_cpu(cpu), base, size)

    def cpu_interface(self, cpu: int, base: int = GICC_BASE, size: int = GICC_SIZE) -> GicCpuInterfaceWindow:
        """CPU ``cpu``'s CPU interface, as a bus device."""
        self._check_cpu(cpu)
        return GicCpuInterfaceWindow(self, fixed_cpu(cpu), base, size)

    def distributor_window(
        self, current_cpu: Callable[[], int], base: int = GICD_BASE, size: int = GICD_SIZE
    ) -> GicDistributorWindow:
        """The distributor as one bus device that asks ``current_cpu()`` who is accessing."""
        return GicDistributorWindow(self, current_cpu, base, size)

    def cpu_interface_window(
        self, current_cpu: Callable[[], int], base: int = GICC_BASE, size: int = GICC_SIZE
    ) -> GicCpuInterfaceWindow:
        """The CPU interfaces as one bus device that asks ``current_cpu()`` whose it is."""
        return GicCpuInterfaceWindow(self, current_cpu, base, size)

    def _check_cpu(self, cpu: int) -> int:
        if not 0 <= cpu < self.num_cpus:
            raise ValueError(f"GIC CPU {cpu} is not 0..{self.num_cpus - 1}")
        return cpu

    def _check_spi(self, intid: int) -> int:
        if not NUM_PRIVATE <= intid < self._limit:
            raise ValueError(f"GIC SPI INTID {intid} is not {NUM_PRIVATE}..{self._limit - 1}")
        return intid

    @staticmethod
    def _check_ppi(intid: int) -> int:
        if not NUM_SGIS <= intid < NUM_PRIVATE:
            raise ValueError(f"GIC PPI INTID {intid} is not {NUM_SGIS}..{NUM_PRIVATE - 1}")
        return intid

    # -- distributor registers -------------------------------------------------------------

    def distributor_read(self, cpu: int, offset: int, width: AccessWidth) -> int:
        """CPU ``cpu`` reads the distributor register at ``offset``."""
        me = self._cpus[self._check_cpu(cpu)]
        if GICD_IPRIORITYR <= offset < GICD_ICFGR or GICD_CPENDSGIR <= offset < GICD_SPENDSGIR + 16:
            return self._read_bytes(me, cpu, offset, width)
        if width != AccessWidth.DWORD or offset % 4:
            return 0
        if offset == GICD_CTLR:
            return self._ctlr
        if offset == GICD_TYPER:
            return (self.num_irqs // 32 - 1) | (self.num_cpus - 1) << 5
        if offset == GICD_IIDR:
            return GICD_IIDR_VALUE
        if GICD_IGROUPR <= offset < GICD_IPRIORITYR:
            return self._read_bitmap(me, offset)
        if GICD_ICFGR <= offset < GICD_ICFGR + 0x100:
            return self._read_config(me, (offset - GICD_ICFGR) // 4)
        return id_register(GICD_ID_BYTES, offset, GICD_ID)

    def distributor_write(self, cpu: int, offset: int, width: AccessWidth, value: int) -> None:
        """CPU ``cpu`` writes the distributor register at ``offset``."""
        me = self._cpus[self._check_cpu(cpu)]
        value &= width.mask
        if GICD_IPRIORITYR <= offset < GICD_ICFGR or GICD_CPENDSGIR <= offset < GICD_SPENDSGIR + 16:
            self._write_bytes(me, cpu, offset, width, value)
        elif width != AccessWidth.DWORD or offset % 4:
            return
        elif offset == GICD_CTLR:
            self._ctlr = value & GICD_CTLR_MASK
        elif GICD_IGROUPR <= offset < GICD_IPRIORITYR:
            self._write_bitmap(me, offset, value)
        elif GICD_ICFGR <= offset < GICD_ICFGR + 0x100:
            self._write_config(me, (offset - GICD_ICFGR) // 4, value)
        elif offset == GICD_SGIR:
            self._write_sgir(cpu, value)
            return
        else:
            return
        self._update()

    def _read_bitmap(self, me: _Cpu, offset: int) -> int:
        """IGROUPR, IS/ICENABLER, IS/ICPENDR, IS/ICACTIVER: one bit per INTID, 32 per word."""
        block, word = divmod(offset - GICD_IGROUPR, 0x80)
        word //= 4
        if block == 0:
            private, shared = me.group, self._group
        elif block in (1, 2):
            private, shared = me.enabled, self._enabled
        elif block in (3, 4):
            private = me.private_pending()
            shared = (self._pending | (self._levels & ~self._edge)) & self._valid_spis
        else:
            private, shared = me.active, self._active
        return private if word == 0 else (shared >> (32 * word)) & 0xFFFF_FFFF

    def _write_bitmap(self, me: _Cpu, offset: int, value: int) -> None:
        block, word = divmod(offset - GICD_IGROUPR, 0x80)
        word //= 4
        bits = value << (32 * word) if word else 0
        bits &= self._valid_spis
        private = value if word == 0 else 0
        if block == 0:
            if word == 0:
                me.group = value
            else:
                keep = ~(0xFFFF_FFFF << (32 * word))
                self._group = (self._group & keep) | bits
        elif block == 1:
            me.enabled |= private
            self._enabled |= bits
        elif block == 2:
            me.enabled = (me.enabled & ~private) | SGI_MASK  # SGI enables are RAO/WI
            self._enabled &= ~bits
        elif block == 3:
            me.pending |= private & PPI_MASK  # SGIs are made pending through GICD_SPENDSGIR
            self._pending |= bits
        elif block == 4:
            me.pending &= ~(private & PPI_MASK)
            self._pending &= ~bits
        elif block == 5:
            me.active |= private
            self._active |= bits
        else:
            me.active &= ~private
            self._active &= ~bits

    def _read_config(self, me: _Cpu, word: int) -> int:
        """GICD_ICFGR<word>: two bits per INTID, the upper one set for edge-triggered."""
        if word == 0:
            return SGI_CONFIG
        edge = me.edge if word == 1 else self._edge & self._valid_spis
        value = 0
        for n in range(16):
            if edge >> (16 * word + n) & 1:
                value |= 2 << (2 * n)
        return value

    def _write_config(self, me: _Cpu, word: int, value: int) -> None:
        if word == 0:
            return  # SGIs are always edge-triggered
        bits = 0
        for n in range(16):
            if value >> (2 * n + 1) & 1:
                bits |= 1 << (16 * word + n)
        span = 0xFFFF << (16 * word)
        if word == 1:
            me.edge = (me.edge & ~span) | bits
        else:
            self._edge = (self._edge & ~span) | (bits & self._valid_spis)

    def _read_bytes(self, me: _Cpu, cpu: int, offset: int, width: AccessWidth) -> int:
        if width not in _BYTE_WIDTHS or offset % width:
            return 0
        value = 0
        for i in range(width):
            value |= self._read_byte(me, cpu, offset + i) << (8 * i)
        return value

    def _write_bytes(self, me: _Cpu, cpu: int, offset: int, width: AccessWidth, value: int) -> None:
        if width not in _BYTE_WIDTHS or offset % width:
            return
        for i in range(width):
            self._write_byte(me, cpu, offset + i, (value >> (8 * i)) & 0xFF)
        self._update()

    def _read_byte(self, me: _Cpu, cpu: int, offset: int) -> int:
        if offset < GICD_ITARGETSR:
            intid = offset - GICD_IPRIORITYR
            if intid < NUM_PRIVATE:
                return me.priority[intid]
            return self._priority[intid] if intid < self._limit else 0
        if offset < GICD_ICFGR:
            intid = offset - GICD_ITARGETSR
            if self.num_cpus == 1:
                return 0  # uniprocessor: RAZ/WI (4.3.12)
            if intid < NUM_PRIVATE:
                return 1 << cpu  # each CPU reads its own bit
            return self._targets[intid] if intid < self._limit else 0
        sgi = (offset - GICD_CPENDSGIR) % NUM_SGIS
        return me.sgi_sources[sgi]

    def _write_byte(self, me: _Cpu, cpu: int, offset: int, value: int) -> None:
        if offset < GICD_ITARGETSR:
            intid = offset - GICD_IPRIORITYR
            if intid < NUM_PRIVATE:
                me.priority[intid] = value & PRIORITY_MASK
            elif intid < self._limit:
                self._priority[intid] = value & PRIORITY_MASK
        elif offset < GICD_ICFGR:
            intid = offset - GICD_ITARGETSR
            if self.num_cpus > 1 and NUM_PRIVATE <= intid < self._limit:
                self._set_target(intid, value & self._cpu_mask)
        elif offset < GICD_SPENDSGIR:
            sgi = offset - GICD_CPENDSGIR
            me.sgi_sources[sgi] &= ~value
        else:
            sgi = offset - GICD_SPENDSGIR
            me.sgi_sources[sgi] |= value & self._cpu_mask

    def _set_target(self, intid: int, targets: int) -> None:
        self._targets[intid] = targets
        bit = 1 << intid
        for n, cpu_mask in enumerate(self._target_masks):
            self._target_masks[n] = cpu_mask | bit if targets >> n & 1 else cpu_mask & ~bit

    def _recompute_targets(self) -> None:
        """Per CPU, the SPIs targeted at it (every SPI for a uniprocessor)."""
        if self.num_cpus == 1:
            self._target_masks = [self._valid_spis]
            return
        self._target_masks = [0] * self.num_cpus
        for intid in range(NUM_PRIVATE, self._limit):
            for n in range(self.num_cpus):
                if self._targets[intid] >> n & 1:
                    self._target_masks[n] |= 1 << intid

    def _write_sgir(self, source: int, value: int) -> None:
        sgi = value & 0xF
        target_filter = (value >> 24) & 0x3
        if target_filter == 0:
            targets = (value >> 16) & self._cpu_mask
        elif target_filter == 1:
            targets = self._cpu_mask & ~(1 << source)
        elif target_filter == 2:
            targets = 1 << source
        else:
            return  # reserved
        for n in _bits(targets):
            self._cpus[n].sgi_sources[sgi] |= 1 << source
            self._update_cpu(self._cpus[n])

    # -- CPU interface registers -----------------------------------------------------------

    def cpu_read(self, cpu: int, offset: int, width: AccessWidth) -> int:
        """CPU ``cpu`` reads its CPU interface register at ``offset``."""
        me = self._cpus[self._check_cpu(cpu)]
        if width != AccessWidth.DWORD or offset % 4:
            return 0
        if offset == GICC_CTLR:
            return me.ctlr
        if offset == GICC_PMR:
            return me.pmr
        if offset == GICC_BPR:
            return me.bpr
        if offset == GICC_IAR:
            return self.acknowledge(cpu)
        if offset == GICC_RPR:
            return min(me.running_priority(), RPR_IDLE)
        if offset == GICC_HPPIR:
            best = self._best(me, cpu)
            return SPURIOUS if best is None else best[0] | best[1] << 10
        if offset == GICC_ABPR:
            return me.abpr
        if offset in (GICC_AIAR, GICC_AHPPIR):
            return SPURIOUS
        if offset == GICC_IIDR:
            return GICC_IIDR_VALUE
        return 0

    def cpu_write(self, cpu: int, offset: int, width: AccessWidth, value: int) -> None:
        """CPU ``cpu`` writes its CPU interface register at ``offset``."""
        me = self._cpus[self._check_cpu(cpu)]
        if width != AccessWidth.DWORD or offset % 4:
            return
        value &= 0xFFFF_FFFF
        if offset == GICC_CTLR:
            me.ctlr = value & GICC_CTLR_MASK
        elif offset == GICC_PMR:
            me.pmr = value & PRIORITY_MASK
        elif offset == GICC_BPR:
            me.bpr = max(value & 0x7, MIN_BPR)
        elif offset == GICC_ABPR:
            me.abpr = max(value & 0x7, MIN_BPR + 1)
        elif offset == GICC_EOIR:
            self.end_of_interrupt(cpu, value)
            return
        elif offset == GICC_DIR:
            if me.ctlr & GICC_CTLR_EOIMODE:
                self._deactivate(me, value & 0x3FF)
                self._update()  # a deactivated SPI may now go to another CPU
            return
        else:
            return
        self._update_cpu(me)

    def acknowledge(self, cpu: int) -> int:
        """GICC_IAR for CPU ``cpu``: the interrupt it would signal, now active (1023 if none)."""
        me = self._cpus[self._check_cpu(cpu)]
        best = self._best(me, cpu)
        if best is None or not self._signals(me, best[2]):
            return SPURIOUS
        intid, source, priority = best
        bit = 1 << intid
        if intid < NUM_SGIS:
            me.sgi_sources[intid] &= ~(1 << source)
        if intid < NUM_PRIVATE:
            me.pending &= ~bit
            me.active |= bit
        else:
            self._pending &= ~bit
            self._active |= bit
        me.running.append((intid, source, priority))
        if intid < NUM_PRIVATE:
            self._update_cpu(me)
        else:
            self._update()
        return intid | source << 10

    def end_of_interrupt(self, cpu: int, value: int) -> None:
        """GICC_EOIR for CPU ``cpu``: drop the running priority of the interrupt named by
        ``value`` and, unless EOImode is set, deactivate it; ignored if it was not acknowledged."""
        me = self._cpus[self._check_cpu(cpu)]
        intid, source = value & 0x3FF, (value >> 10) & 0x7
        for index in range(len(me.running) - 1, -1, -1):
            entry_intid, entry_source, _ = me.running[index]
            if entry_intid == intid and (intid >= NUM_SGIS or entry_source == source):
                del me.running[index]
                if not me.ctlr & GICC_CTLR_EOIMODE:
                    self._deactivate(me, intid)
                if intid < NUM_PRIVATE:
                    self._update_cpu(me)
                else:
                    self._update()
                return

    def _deactivate(self, me: _Cpu, intid: int) -> None:
        if intid < NUM_PRIVATE:
            me.active &= ~(1 << intid)
        elif intid < self._limit:
            self._active &= ~(1 << intid)

    # -- the signalling rule ---------------------------------------------------------------

    def _best(self, me: _Cpu, cpu: int) -> tuple[int, int, int] | None:
        """(INTID, source CPU, priority) of the CPU's highest-priority pending interrupt."""
        group = self._group | me.group
        allowed = 0
        all_ids = self._valid_spis | PRIVATE_MASK
        if self._ctlr & 1 and me.ctlr & 1:
            allowed |= ~group & all_ids
        if self._ctlr & 2 and me.ctlr & 2:
            allowed |= group
        if not allowed:
            return None
        shared = (self._pending | (self._levels & ~self._edge)) & self._enabled & ~self._active
        private = me.private_pending() & me.enabled & ~me.active
        candidates = (private | (shared & self._target_masks[cpu])) & allowed
        best: tuple[int, int, int] | None = None
        for intid in _bits(candidates):
            priority = me.priority[intid] if intid < NUM_PRIVATE else self._priority[intid]
            if best is None or priority < best[2]:
                source = _bits(me.sgi_sources[intid])[0] if intid < NUM_SGIS else 0
                best = (intid, source, priority)
        return best

    @staticmethod
    def _signals(me: _Cpu, priority: int) -> bool:
        """Whether an interrupt of ``priority`` passes the priority mask and preempts."""
        if priority >= me.pmr:
            return False
        group_mask = (0xFF << (me.bpr + 1)) & 0xFF
        running = me.running_priority()
        return running == IDLE_PRIORITY or priority & group_mask < running & group_mask

    def _update_cpu(self, me: _Cpu) -> None:
        best = self._best(me, me.index)
        level = best is not None and self._signals(me, best[2])
        if level != me.out:
            me.out = level
            me.line.set_level(level)

    def _update(self) -> None:
        for cpu in self._cpus:
            self._update_cpu(cpu)
