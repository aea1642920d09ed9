"""The GICv2's saved state: plain dataclasses, their power-on values and their validation.

Bit n of a mask is INTID n. Private INTIDs (0-31) live in each CPU's ``GicCpuState``, shared
ones (SPIs, 32 and up) in ``GicState``; ``from_state`` refuses anything a GIC could not hold,
since a saved state is as untrusted as the guest that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

NUM_SGIS = 16
NUM_PRIVATE = 32

# GICv2 limits (IHI 0048B 4.3.2): GICD_TYPER.CPUNumber has 3 bits and GICD_ITARGETSR one bit
# per CPU in a byte, so at most 8 CPUs; ITLinesNumber counts blocks of 32 INTIDs, at most 32.
MAX_CPUS = 8
MAX_IRQS = 1024
MAX_INTID = 1019  # 1020-1023 are special INTIDs (1023: spurious), never interrupts

GICD_CTLR_MASK = 0x3  # EnableGrp0, EnableGrp1
GICC_CTLR_EOIMODE = 1 << 9
GICC_CTLR_MASK = 0x1F | GICC_CTLR_EOIMODE  # EnableGrp0/1, AckCtl, FIQEn, CBPR, EOImode

PRIORITY_BITS = 5  # as a GIC-400: 32 priority levels
PRIORITY_MASK = (0xFF << (8 - PRIORITY_BITS)) & 0xFF  # 0xF8: the low bits are RAZ/WI
MIN_BPR = 7 - PRIORITY_BITS  # 2: a smaller binary point would split no implemented bits

# Each acknowledge pushes a strictly higher priority than the one running, so the stack of
# running priorities is at most as deep as there are priority levels.
MAX_RUNNING = 1 << PRIORITY_BITS


@dataclass
class GicCpuState:
    """One CPU's banked distributor state (INTIDs 0-31) and its CPU interface."""

    ctlr: int = 0
    pmr: int = 0
    bpr: int = MIN_BPR
    abpr: int = MIN_BPR + 1
    enabled: int = (1 << NUM_SGIS) - 1  # SGI enables are RAO/WI
    pending: int = 0  # PPI latches; SGIs pend in sgi_sources
    active: int = 0
    levels: int = 0  # PPI input lines
    edge: int = 0  # PPIs configured edge-triggered (SGIs always are)
    group: int = 0
    priorities: tuple[int, ...] = (0,) * NUM_PRIVATE
    sgi_sources: tuple[int, ...] = (0,) * NUM_SGIS  # per SGI, a mask of source CPUs
    running: tuple[tuple[int, int, int], ...] = ()  # (INTID, source, priority) acknowledged, not dropped


@dataclass
class GicState:
    """Everything needed to resume a GICv2."""

    num_irqs: int
    cpus: tuple[GicCpuState, ...]
    ctlr: int = 0
    enabled: int = 0
    pending: int = 0
    active: int = 0
    levels: int = 0
    edge: int = 0
    group: int = 0
    priorities: tuple[int, ...] = field(default=())  # per SPI, INTID 32 first
    targets: tuple[int, ...] = field(default=())  # per SPI, a mask of CPUs

    @classmethod
    def power_on(cls, num_irqs: int, num_cpus: int) -> GicState:
        """The reset state of a GIC with ``num_irqs`` INTIDs and ``num_cpus`` CPUs."""
        spis = num_irqs - NUM_PRIVATE
        return cls(
            num_irqs=num_irqs,
            cpus=tuple(GicCpuState() for _ in range(num_cpus)),
            priorities=(0,) * spis,
            targets=(0,) * spis,
        )

    def with_levels(self, levels: int, cpu_levels: tuple[int, ...]) -> GicState:
        """This state with the given input levels (shared, then per CPU)."""
        cpus = tuple(replace(cpu, levels=lv) for cpu, lv in zip(self.cpus, cpu_levels, strict=True))
        return replace(self, levels=levels, cpus=cpus)


def check_config(num_irqs: int, num_cpus: int) -> None:
    """ValueError unless a GICv2 can have ``num_irqs`` INTIDs and ``num_cpus`` CPUs."""
    if not isinstance(num_irqs, int) or num_irqs % 32 or not NUM_PRIVATE <= num_irqs <= MAX_IRQS:
        raise ValueError(f"GIC num_irqs {num_irqs!r} is not a multiple of 32 in {NUM_PRIVATE}..{MAX_IRQS}")
    if not 1 <= num_cpus <= MAX_CPUS:
        raise ValueError(f"GICv2 has {num_cpus} CPU lines; it serves 1..{MAX_CPUS} CPUs")


def _check_mask(name: str, value: object, allowed: int) -> None:
    if not isinstance(value, int) or value < 0 or value & ~allowed:
        raise ValueError(f"GicState {name} {value!r} has bits outside {allowed:#x}")


def _check_priorities(name: str, values: tuple[int, ...], count: int) -> None:
    if len(values) != count:
        raise ValueError(f"GicState {name} has {len(values)} priorities, expected {count}")
    for value in values:
        _check_mask(name, value, PRIORITY_MASK)


def validate_state(state: GicState, num_cpus: int) -> None:
    """ValueError unless ``state`` is one a GIC with ``num_cpus`` CPUs could be in."""
    check_config(state.num_irqs, num_cpus)
    if len(state.cpus) != num_cpus:
        raise ValueError(f"GicState has {len(state.cpus)} CPUs for {num_cpus} CPU lines")
    cpu_mask = (1 << num_cpus) - 1
    spi_mask = ((1 << min(state.num_irqs, MAX_INTID + 1)) - 1) & ~0xFFFF_FFFF
    _check_mask("ctlr", state.ctlr, GICD_CTLR_MASK)
    for name in ("enabled", "pending", "active", "levels", "edge", "group"):
        _check_mask(name, getattr(state, name), spi_mask)
    spis = state.num_irqs - NUM_PRIVATE
    _check_priorities("priorities", state.priorities, spis)
    if len(state.targets) != spis:
        raise ValueError(f"GicState has {len(state.targets)} SPI targets, expected {spis}")
    for target in state.targets:
        _check_mask("targets", target, cpu_mask if num_cpus > 1 else 0)
    for n, cpu in enumerate(state.cpus):
        _validate_cpu(f"cpus[{n}]", cpu, cpu_mask, state.num_irqs)


def _validate_cpu(where: str, cpu: GicCpuState, cpu_mask: int, num_irqs: int) -> None:
    _check_mask(f"{where}.ctlr", cpu.ctlr, GICC_CTLR_MASK)
    _check_mask(f"{where}.pmr", cpu.pmr, PRIORITY_MASK)
    for name, low in (("bpr", MIN_BPR), ("abpr", MIN_BPR + 1)):
        value = getattr(cpu, name)
        if not isinstance(value, int) or not low <= value <= 7:
            raise ValueError(f"GicState {where}.{name} {value!r} is not {low}..7")
    _check_mask(f"{where}.enabled", cpu.enabled, 0xFFFF_FFFF)
    if cpu.enabled & 0xFFFF != 0xFFFF:
        raise ValueError(f"GicState {where}.enabled clears SGI enables, which are RAO/WI")
    for name in ("pending", "levels", "edge"):
        _check_mask(f"{where}.{name}", getattr(cpu, name), 0xFFFF_0000)
    _check_mask(f"{where}.active", cpu.active, 0xFFFF_FFFF)
    _check_mask(f"{where}.group", cpu.group, 0xFFFF_FFFF)
    _check_priorities(f"{where}.priorities", cpu.priorities, NUM_PRIVATE)
    if len(cpu.sgi_sources) != NUM_SGIS:
        raise ValueError(f"GicState {where}.sgi_sources has {len(cpu.sgi_sources)} entries, expected {NUM_SGIS}")
    for sources in cpu.sgi_sources:
        _check_mask(f"{where}.sgi_sources", sources, cpu_mask)
    if len(cpu.running) > MAX_RUNNING:
        raise ValueError(f"GicState {where}.running holds {len(cpu.running)} entries, over {MAX_RUNNING}")
    previous = 0x100  # above every priority: the idle running priority
    for entry in cpu.running:
        if not (isinstance(entry, tuple) and len(entry) == 3):
            raise ValueError(f"GicState {where}.running entry {entry!r} is not (INTID, source, priority)")
        intid, source, priority = entry
        if not isinstance(intid, int) or not 0 <= intid < min(num_irqs, MAX_INTID + 1):
            raise ValueError(f"GicState {where}.running INTID {intid!r} is not an interrupt")
        _check_mask(f"{where}.running source", source, cpu_mask if intid < NUM_SGIS else 0)
        _check_mask(f"{where}.running priority", priority, PRIORITY_MASK)
        if priority >= previous:
            raise ValueError(f"GicState {where}.running priorities do not strictly fall (each entry preempts the last)")
        previous = priority
