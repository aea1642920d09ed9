"""The GICv2: Linux's init sequence, the signalling rule, ack/EOI, SGIs, banking, bounds, state."""

import pytest

from axaddrspace import AccessWidth
from axdevice import GicState, Gicv2, MmioBus, RecordingIrqLine, ppi_intid, spi_intid
from axdevice import gicv2 as g
from axdevice.gicv2_state import GicCpuState

D = AccessWidth.DWORD
BYTE = AccessWidth.BYTE
UART = spi_intid(1)  # QEMU virt's PL011: <GIC_SPI 1>
VTIMER = ppi_intid(11)  # the generic timer's virtual PPI: INTID 27


def make(num_cpus: int = 2, num_irqs: int = 288) -> tuple[Gicv2, list[RecordingIrqLine]]:
    lines = [RecordingIrqLine() for _ in range(num_cpus)]
    return Gicv2(num_irqs, lines), lines


def linux_init(gic: Gicv2) -> None:
    """What Linux's irq-gic.c does: gic_dist_init on CPU 0, gic_cpu_init on each CPU."""
    dw = gic.distributor_write
    dw(0, g.GICD_CTLR, D, 0)
    cpumask = gic.distributor_read(0, g.GICD_ITARGETSR, D) & 0xFF
    cpumask |= cpumask << 8 | cpumask << 16 | cpumask << 24
    for i in range(32, gic.num_irqs, 16):
        dw(0, g.GICD_ICFGR + i // 4, D, 0)  # SPIs level-triggered
    for i in range(32, gic.num_irqs, 4):
        dw(0, g.GICD_ITARGETSR + i, D, cpumask)
        dw(0, g.GICD_IPRIORITYR + i, D, 0xA0A0_A0A0)
    for i in range(32, gic.num_irqs, 32):
        dw(0, g.GICD_ICACTIVER + i // 8, D, 0xFFFF_FFFF)
        dw(0, g.GICD_ICENABLER + i // 8, D, 0xFFFF_FFFF)
    dw(0, g.GICD_CTLR, D, 1)
    for cpu in range(gic.num_cpus):
        dw(cpu, g.GICD_ICACTIVER, D, 0xFFFF_FFFF)
        dw(cpu, g.GICD_ICENABLER, D, 0xFFFF_0000)
        dw(cpu, g.GICD_ISENABLER, D, 0x0000_FFFF)
        for i in range(0, 32, 4):
            dw(cpu, g.GICD_IPRIORITYR + i, D, 0xA0A0_A0A0)
        gic.cpu_write(cpu, g.GICC_PMR, D, 0xF0)
        gic.cpu_write(cpu, g.GICC_CTLR, D, 1)


def enable(gic: Gicv2, intid: int, cpu: int = 0) -> None:
    gic.distributor_write(cpu, g.GICD_ISENABLER + 4 * (intid // 32), D, 1 << (intid % 32))


def iar(gic: Gicv2, cpu: int = 0) -> int:
    return gic.cpu_read(cpu, g.GICC_IAR, D)


def eoi(gic: Gicv2, value: int, cpu: int = 0) -> None:
    gic.cpu_write(cpu, g.GICC_EOIR, D, value)


def test_identity_registers() -> None:
    gic, _ = make(num_cpus=4, num_irqs=288)
    assert gic.distributor_read(0, g.GICD_TYPER, D) == (288 // 32 - 1) | 3 << 5
    assert gic.distributor_read(0, g.GICD_IIDR, D) == 0x0200_143B
    assert gic.cpu_read(0, g.GICC_IIDR, D) & 0xFF0FFF == 0x02043B  # what Linux's gic_check_gicv2 wants
    assert gic.distributor_read(0, 0xFE8, D) >> 4 == 2  # PIDR2.ArchRev: GICv2
    cid = [gic.distributor_read(0, 0xFF0 + 4 * n, D) for n in range(4)]
    assert cid == [0x0D, 0xF0, 0x05, 0xB1]
    assert gic.distributor_read(0, g.GICD_ICFGR, D) == 0xAAAA_AAAA


def test_each_cpu_reads_its_own_bit_in_the_private_targets() -> None:
    gic, _ = make(num_cpus=3)
    for cpu in range(3):
        assert gic.distributor_read(cpu, g.GICD_ITARGETSR + 28, D) == 0x0101_0101 << cpu


def test_uniprocessor_targets_are_raz_wi_and_spis_still_arrive() -> None:
    gic, lines = make(num_cpus=1)
    linux_init(gic)
    assert gic.distributor_read(0, g.GICD_ITARGETSR, D) == 0  # private ones too: Linux copes
    assert gic.distributor_read(0, g.GICD_ITARGETSR + UART, BYTE) == 0
    enable(gic, UART)
    gic.set_spi_level(UART, True)
    assert lines[0].level and iar(gic) == UART


def test_level_spi_pends_while_high_and_returns_after_eoi_if_still_high() -> None:
    gic, lines = make()
    linux_init(gic)
    enable(gic, UART)
    gic.distributor_write(0, g.GICD_ITARGETSR + UART, BYTE, 0x03)  # Linux chose CPU 0; both
    line = gic.spi_line(UART)
    line.set_level(True)
    assert lines[0].events == [("level", True)] and lines[1].events == [("level", True)]
    assert iar(gic, cpu=1) == UART  # the first CPU to acknowledge takes it
    assert not lines[0].level and not lines[1].level
    assert gic.cpu_read(1, g.GICC_RPR, D) == 0xA0
    eoi(gic, UART, cpu=1)  # line still high: pending again
    assert lines[0].level and lines[1].level
    assert iar(gic) == UART
    line.set_level(False)
    eoi(gic, UART)
    assert not lines[0].level and gic.cpu_read(0, g.GICC_RPR, D) == 0xFF
    assert iar(gic) == g.SPURIOUS


def test_icpendr_does_not_clear_a_level_interrupt_whose_line_is_high() -> None:
    gic, _ = make()
    linux_init(gic)
    gic.set_spi_level(UART, True)
    gic.distributor_write(0, g.GICD_ICPENDR + 4, D, 1 << (UART - 32))
    assert gic.distributor_read(0, g.GICD_ISPENDR + 4, D) == 1 << (UART - 32)
    gic.set_spi_level(UART, False)
    assert gic.distributor_read(0, g.GICD_ISPENDR + 4, D) == 0


def test_edge_spi_latches_rising_edges_only() -> None:
    gic, lines = make(num_cpus=1)
    linux_init(gic)
    spi = spi_intid(16)
    gic.distributor_write(0, g.GICD_ICFGR + 4 * (spi // 16), D, 2 << (2 * (spi % 16)))
    enable(gic, spi)
    gic.set_spi_level(spi, True)
    assert iar(gic) == spi
    eoi(gic, spi)
    assert not lines[0].level  # still high, but edge-triggered: no new edge
    gic.set_spi_level(spi, True)  # told again that it is high: still no edge
    assert not lines[0].level
    gic.set_spi_level(spi, False)
    gic.set_spi_level(spi, True)
    assert iar(gic) == spi
    gic.spi_line(spi).pulse()  # a pulse while active: active and pending
    eoi(gic, spi)
    assert iar(gic) == spi


def test_highest_priority_wins_ties_go_to_the_lowest_intid() -> None:
    gic, _ = make(num_cpus=1)
    linux_init(gic)
    for intid in (40, 41, 42):
        enable(gic, intid)
        gic.set_spi_level(intid, True)
    gic.distributor_write(0, g.GICD_IPRIORITYR + 42, BYTE, 0x80)
    assert gic.cpu_read(0, g.GICC_HPPIR, D) == 42
    assert iar(gic) == 42
    eoi(gic, 42)
    gic.set_spi_level(42, False)
    assert iar(gic) == 40


def test_priority_mask_and_preemption_by_group_priority() -> None:
    gic, lines = make(num_cpus=1)
    linux_init(gic)
    for intid, priority in ((40, 0xA0), (41, 0x90), (42, 0x98)):
        enable(gic, intid)
        gic.distributor_write(0, g.GICD_IPRIORITYR + intid, BYTE, priority)
    gic.cpu_write(0, g.GICC_PMR, D, 0xA0)
    gic.set_spi_level(40, True)
    assert not lines[0].level and iar(gic) == g.SPURIOUS  # 0xA0 is not below the mask
    gic.cpu_write(0, g.GICC_PMR, D, 0xF0)
    assert iar(gic) == 40
    gic.set_spi_level(42, True)
    assert lines[0].level  # 0x98 preempts 0xA0 (BPR 2: all five bits are group priority)
    gic.cpu_write(0, g.GICC_BPR, D, 5)  # group priority = bits 7:6: 0x98 and 0xA0 both 0x80
    assert not lines[0].level
    gic.cpu_write(0, g.GICC_BPR, D, 0)  # below the minimum: reads back 2
    assert gic.cpu_read(0, g.GICC_BPR, D) == 2
    assert iar(gic) == 42
    gic.set_spi_level(41, True)
    assert iar(gic) == 41  # 0x90 preempts 0x98
    assert gic.cpu_read(0, g.GICC_RPR, D) == 0x90
    eoi(gic, 41)
    assert gic.cpu_read(0, g.GICC_RPR, D) == 0x98
    eoi(gic, 42)
    eoi(gic, 40)
    assert gic.cpu_read(0, g.GICC_RPR, D) == 0xFF


def test_priorities_keep_five_bits_and_are_byte_accessible() -> None:
    gic, _ = make()
    gic.distributor_write(0, g.GICD_IPRIORITYR + 40, D, 0x1234_5678)
    assert gic.distributor_read(0, g.GICD_IPRIORITYR + 40, D) == 0x1030_5078
    assert gic.distributor_read(0, g.GICD_IPRIORITYR + 41, BYTE) == 0x50
    gic.distributor_write(1, g.GICD_IPRIORITYR + 27, BYTE, 0xFF)  # banked: CPU 1's copy
    assert gic.distributor_read(1, g.GICD_IPRIORITYR + 27, BYTE) == 0xF8
    assert gic.distributor_read(0, g.GICD_IPRIORITYR + 27, BYTE) == 0


def test_spi_targets_choose_the_cpu() -> None:
    gic, lines = make()
    linux_init(gic)
    enable(gic, UART)
    gic.distributor_write(0, g.GICD_ITARGETSR + UART, BYTE, 0xFE)  # CPUs 1..7: only 1 exists
    assert gic.distributor_read(0, g.GICD_ITARGETSR + UART, BYTE) == 0x02
    gic.set_spi_level(UART, True)
    assert not lines[0].level and lines[1].level
    assert iar(gic, cpu=0) == g.SPURIOUS and iar(gic, cpu=1) == UART


def test_sgis_carry_their_source_and_follow_the_target_filter() -> None:
    gic, lines = make(num_cpus=3)
    linux_init(gic)
    gic.distributor_write(0, g.GICD_SGIR, D, 0b110 << 16 | 1)  # list: CPUs 1 and 2
    assert not lines[0].level and lines[1].level and lines[2].level
    gic.distributor_write(2, g.GICD_SGIR, D, 1 << 24 | 1)  # all but self: CPUs 0 and 1
    assert lines[0].level
    assert iar(gic, cpu=1) == 1 | 0 << 10  # the lowest source first
    assert iar(gic, cpu=1) == g.SPURIOUS  # SGI 1 is active: the other source waits
    eoi(gic, 1 | 2 << 10, cpu=1)  # wrong source: ignored
    assert gic.cpu_read(1, g.GICC_RPR, D) == 0xA0
    eoi(gic, 1, cpu=1)
    assert iar(gic, cpu=1) == 1 | 2 << 10
    gic.distributor_write(1, g.GICD_SGIR, D, 2 << 24 | 7)  # self
    assert gic.cpu_read(1, g.GICC_HPPIR, D) == 7 | 1 << 10


def test_sgi_pending_bits_per_source_can_be_set_and_cleared() -> None:
    gic, lines = make()
    linux_init(gic)
    gic.distributor_write(0, g.GICD_SPENDSGIR + 3, BYTE, 0xFF)  # sources beyond CPU 1 dropped
    assert gic.distributor_read(0, g.GICD_SPENDSGIR, D) == 0x03 << 24
    assert gic.distributor_read(1, g.GICD_SPENDSGIR, D) == 0  # banked
    assert lines[0].level
    gic.distributor_write(0, g.GICD_CPENDSGIR + 3, BYTE, 0x03)
    assert not lines[0].level
    gic.distributor_write(0, g.GICD_ISPENDR, D, 0xFFFF)  # SGIs cannot be made pending here
    assert gic.distributor_read(0, g.GICD_ISPENDR, D) == 0


def test_ppis_are_banked_per_cpu() -> None:
    gic, lines = make()
    linux_init(gic)
    enable(gic, VTIMER, cpu=1)
    gic.set_ppi_level(0, VTIMER, True)  # CPU 0 has it disabled
    gic.ppi_line(1, VTIMER).set_level(True)
    assert not lines[0].level and lines[1].level
    assert gic.distributor_read(0, g.GICD_ISENABLER, D) == 0xFFFF
    assert gic.distributor_read(1, g.GICD_ISENABLER, D) == 0xFFFF | 1 << VTIMER
    assert iar(gic, cpu=1) == VTIMER
    gic.set_ppi_level(1, VTIMER, False)  # the timer was reprogrammed
    eoi(gic, VTIMER, cpu=1)
    assert not lines[1].level and gic.distributor_read(1, g.GICD_ISPENDR, D) == 0


def test_ppi_configuration_is_banked_and_sgi_configuration_read_only() -> None:
    gic, _ = make()
    gic.distributor_write(1, g.GICD_ICFGR + 4, D, 0xFFFF_FFFF)
    assert gic.distributor_read(1, g.GICD_ICFGR + 4, D) == 0xAAAA_AAAA
    assert gic.distributor_read(0, g.GICD_ICFGR + 4, D) == 0
    gic.distributor_write(0, g.GICD_ICFGR, D, 0)
    assert gic.distributor_read(0, g.GICD_ICFGR, D) == 0xAAAA_AAAA


def test_sgi_enables_are_always_set() -> None:
    gic, _ = make()
    gic.distributor_write(0, g.GICD_ICENABLER, D, 0xFFFF_FFFF)
    assert gic.distributor_read(0, g.GICD_ISENABLER, D) == 0xFFFF


def test_distributor_and_cpu_interface_enables_gate_signalling() -> None:
    gic, lines = make(num_cpus=1)
    linux_init(gic)
    enable(gic, UART)
    gic.set_spi_level(UART, True)
    assert lines[0].level
    gic.distributor_write(0, g.GICD_CTLR, D, 0)
    assert not lines[0].level and iar(gic) == g.SPURIOUS
    assert gic.cpu_read(0, g.GICC_HPPIR, D) == g.SPURIOUS
    gic.distributor_write(0, g.GICD_CTLR, D, 1)
    gic.cpu_write(0, g.GICC_CTLR, D, 0)
    assert not lines[0].level
    gic.cpu_write(0, g.GICC_CTLR, D, 1)
    assert lines[0].level


def test_groups_are_enabled_separately() -> None:
    gic, lines = make(num_cpus=1)
    linux_init(gic)
    enable(gic, UART)
    gic.distributor_write(0, g.GICD_IGROUPR + 4, D, 1 << (UART - 32))  # group 1
    gic.set_spi_level(UART, True)
    assert not lines[0].level  # only group 0 is enabled
    gic.distributor_write(0, g.GICD_CTLR, D, 3)
    gic.cpu_write(0, g.GICC_CTLR, D, 3)
    assert lines[0].level and iar(gic) == UART


def test_eoimode_splits_priority_drop_and_deactivation() -> None:
    gic, lines = make(num_cpus=1)
    linux_init(gic)
    gic.cpu_write(0, g.GICC_CTLR, D, 1 | g.GICC_CTLR_EOIMODE)
    enable(gic, UART)
    gic.set_spi_level(UART, True)
    assert iar(gic) == UART
    gic.cpu_write(0, g.GICC_DIR, D, UART)  # DIR before EOIR is legal in EOImode
    eoi(gic, UART)
    assert gic.cpu_read(0, g.GICC_RPR, D) == 0xFF and lines[0].level
    assert iar(gic) == UART
    eoi(gic, UART)  # priority dropped, still active
    assert not lines[0].level
    assert gic.distributor_read(0, g.GICD_ISACTIVER + 4, D) == 1 << (UART - 32)
    gic.cpu_write(0, g.GICC_DIR, D, UART)
    assert lines[0].level


def test_eoi_of_an_interrupt_never_acknowledged_is_ignored() -> None:
    gic, lines = make(num_cpus=1)
    linux_init(gic)
    enable(gic, UART)
    gic.set_spi_level(UART, True)
    gic.distributor_write(0, g.GICD_ISACTIVER + 4, D, 1 << (UART - 32))
    eoi(gic, UART)
    eoi(gic, g.SPURIOUS)
    assert not lines[0].level  # still active: the EOI did not deactivate it


def test_bus_windows_bank_by_the_accessing_cpu() -> None:
    gic, lines = make()
    current = [0]
    bus = MmioBus()
    bus.add(gic.distributor_window(lambda: current[0]))
    bus.add(gic.cpu_interface_window(lambda: current[0]))
    assert bus.read(g.GICD_BASE + g.GICD_ITARGETSR, D) == 0x0101_0101
    current[0] = 1
    assert bus.read(g.GICD_BASE + g.GICD_ITARGETSR, D) == 0x0202_0202
    bus.write(g.GICC_BASE + g.GICC_PMR, D, 0xF0)
    assert gic.cpu_read(1, g.GICC_PMR, D) == 0xF0 and gic.cpu_read(0, g.GICC_PMR, D) == 0
    view = gic.cpu_interface(0)
    assert view.address_range == gic.cpu_interface(1).address_range
    assert view.emu_type.name == "InterruptController"
    assert view.handle_read(g.GICC_BASE + g.GICC_IAR, D) == g.SPURIOUS


@pytest.mark.parametrize(
    ("offset", "width"),
    [
        (g.GICD_CTLR, BYTE),
        (g.GICD_ISENABLER + 2, AccessWidth.WORD),
        (g.GICD_IPRIORITYR + 1, AccessWidth.WORD),
        (g.GICD_IPRIORITYR, AccessWidth.QWORD),
        (0x00C, D),
        (0x1000, D),
        (0xFFFC, D),
    ],
)
def test_unsupported_accesses_read_zero_and_drop_writes(offset: int, width: AccessWidth) -> None:
    gic, _ = make()
    before = gic.state()
    assert gic.distributor_read(0, offset, width) == 0
    gic.distributor_write(0, offset, width, 0xFFFF_FFFF_FFFF_FFFF & width.mask)
    assert gic.state() == before


def test_intids_past_num_irqs_do_not_exist() -> None:
    gic, _ = make(num_irqs=64)
    gic.distributor_write(0, g.GICD_ISENABLER + 8, D, 0xFFFF_FFFF)
    gic.distributor_write(0, g.GICD_IPRIORITYR + 64, D, 0xFFFF_FFFF)
    assert gic.distributor_read(0, g.GICD_ISENABLER + 8, D) == 0
    assert gic.distributor_read(0, g.GICD_IPRIORITYR + 64, D) == 0
    big, _ = make(num_irqs=1024)
    big.distributor_write(0, g.GICD_ISENABLER + 124, D, 0xFFFF_FFFF)
    assert big.distributor_read(0, g.GICD_ISENABLER + 124, D) == 0x0FFF_FFFF  # 1020-1023 are special
    assert big.distributor_read(0, g.GICD_TYPER, D) & 0x1F == 31


def test_host_side_inputs_are_checked() -> None:
    gic, _ = make()
    with pytest.raises(ValueError, match="SPI INTID 16"):
        gic.spi_line(16)  # a device tree SPI number passed as an INTID
    with pytest.raises(ValueError, match="SPI INTID 288"):
        gic.set_spi_level(288, True)
    with pytest.raises(ValueError, match="PPI INTID 11"):
        gic.ppi_line(0, 11)
    with pytest.raises(ValueError, match="CPU 2"):
        gic.set_ppi_level(2, VTIMER, True)
    with pytest.raises(ValueError, match="num_irqs"):
        Gicv2(100, [RecordingIrqLine()])
    with pytest.raises(ValueError, match="1..8"):
        Gicv2(64, [RecordingIrqLine() for _ in range(9)])


def test_state_round_trip_raises_lines_and_reset_keeps_input_levels() -> None:
    gic, _ = make()
    linux_init(gic)
    enable(gic, UART)
    gic.set_spi_level(UART, True)
    gic.distributor_write(0, g.GICD_SGIR, D, 1 << 24 | 3)
    assert iar(gic, cpu=0) == UART
    state = gic.state()
    lines = [RecordingIrqLine(), RecordingIrqLine()]
    twin = Gicv2.from_state(state, lines)
    assert twin.state() == state
    assert not lines[0].events and lines[1].events == [("level", True)]
    eoi(twin, UART)
    assert twin.cpu_read(0, g.GICC_RPR, D) == 0xFF
    twin.reset()
    assert twin.state() == GicState.power_on(288, 2).with_levels(1 << UART, (0, 0))
    assert not lines[1].level


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: setattr(s, "ctlr", 4),
        lambda s: setattr(s, "enabled", 1),  # a private INTID in the shared mask
        lambda s: setattr(s, "enabled", 1 << 288),
        lambda s: setattr(s, "priorities", (0,) * 3),
        lambda s: setattr(s, "targets", (4,) * 256),
        lambda s: setattr(s.cpus[0], "pmr", 0x07),
        lambda s: setattr(s.cpus[0], "bpr", 1),
        lambda s: setattr(s.cpus[0], "enabled", 0),
        lambda s: setattr(s.cpus[0], "sgi_sources", (4,) + (0,) * 15),
        lambda s: setattr(s.cpus[0], "running", ((40, 0, 0x80), (41, 0, 0x80))),
        lambda s: setattr(s.cpus[0], "running", ((1020, 0, 0x80),)),
        lambda s: setattr(s.cpus[0], "running", ((40, 1, 0x80),)),
        lambda s: setattr(s, "cpus", (GicCpuState(),)),
    ],
)
def test_from_state_refuses_impossible_states(mutate) -> None:
    state = GicState.power_on(288, 2)
    mutate(state)
    with pytest.raises(ValueError, match="GicState"):
        Gicv2.from_state(state, [RecordingIrqLine(), RecordingIrqLine()])
