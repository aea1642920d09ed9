"""QEMU's arm ``virt`` board: its memory map and its device tree.

Stock firmware and kernels (Debian's U-Boot ``qemu_arm64``, Debian's arm64 Linux) know this
board, so the layout is QEMU's (hw/arm/virt.c, ``base_memmap`` and ``a15irqmap``; checked
against the tree ``qemu-system-aarch64 -M virt -machine dumpdtb=`` writes): flash at 0 (where
``-bios`` firmware runs), the GICv2 distributor and CPU interface, the PL011 UART on SPI 1, the
PL031 RTC on SPI 2, virtio-mmio transports from 0x0a00_0000 every 0x200 bytes on SPIs 16 up,
and RAM from 0x4000_0000. The device tree carries what QEMU's does, less what we do not model
(flash, fw_cfg, PCIe, GPIO, the platform bus, the PMU, GICv2m, rng and kaslr seeds).

Interrupts in the tree are GIC specifiers of three cells (kind, number, flags): ``<0 n 4>`` is
SPI n, level-high; ``<1 n flags>`` PPI n with a CPU mask in flags bits 15:8 (GICv2). A device's
``irq_id`` in a config is its SPI number, as AxVisor's arm configs and QEMU's tables count.
Virtio transports are level-high here (QEMU says edge): the transport's line is a level that
stays high until the driver acknowledges, which a level-sensitive GIC input follows exactly.

CPUs are started through PSCI (``enable-method = "psci"``); ``/psci`` names the conduit (hvc,
as QEMU without EL2/EL3 firmware) and the 0.1-style function ids of the calls implemented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from .. import fdt
from ..fdt import Phandles, flag, node, reg64, strings, u32, u64
from . import psci


@dataclass(frozen=True)
class VirtRegion:
    """One entry of the board's memory map."""

    name: str
    base: int
    size: int
    spi: int | None = None  # GIC SPI number, for devices that interrupt

    @property
    def end(self) -> int:
        return self.base + self.size


FLASH = VirtRegion("flash", 0x0000_0000, 0x0800_0000)
"""Two 64 MiB flash banks in QEMU; ``-bios`` firmware runs from 0. Here guest RAM configured
below GIC_DIST stands in for it, and it is not described as memory in the device tree."""
GIC_DIST = VirtRegion("gic-dist", 0x0800_0000, 0x1_0000)
GIC_CPU = VirtRegion("gic-cpu", 0x0801_0000, 0x1_0000)
UART = VirtRegion("pl011", 0x0900_0000, 0x1000, spi=1)
RTC = VirtRegion("pl031", 0x0901_0000, 0x1000, spi=2)
VIRTIO_MMIO_BASE = 0x0A00_0000
VIRTIO_MMIO_SIZE = 0x200
VIRTIO_MMIO_COUNT = 32  # QEMU's NUM_VIRTIO_TRANSPORTS
VIRTIO_MMIO_FIRST_SPI = 16
VIRTIO_MMIO = tuple(
    VirtRegion(
        f"virtio_mmio{n}", VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE, VIRTIO_MMIO_SIZE, spi=VIRTIO_MMIO_FIRST_SPI + n
    )
    for n in range(VIRTIO_MMIO_COUNT)
)
RAM_BASE = 0x4000_0000

GIC_NUM_IRQS = 32 + 256  # QEMU's NUM_IRQS SPIs after the 32 private INTIDs
MAX_SPI = GIC_NUM_IRQS - 32 - 1
MAX_CPUS = 8  # GICv2 serves at most 8 CPUs (and QEMU's virt with GICv2 says so)
APB_PCLK_HZ = 24_000_000  # QEMU's "clk24mhz" fixed clock the PrimeCells name

# Device tree interrupt specifier kinds and flags (dt-bindings/interrupt-controller/arm-gic.h).
GIC_SPI, GIC_PPI = 0, 1
IRQ_TYPE_EDGE_RISING, IRQ_TYPE_LEVEL_HIGH, IRQ_TYPE_LEVEL_LOW = 1, 4, 8

# The generic timer's PPIs (Arm ARM D11.2.4 and the arm,armv8-timer binding's order): secure
# physical, non-secure physical, virtual, hypervisor physical.
TIMER_PPIS = (13, 14, 11, 10)
TIMER_VIRT_PPI, TIMER_PHYS_PPI = 11, 14
CPU_COMPATIBLE = "arm,cortex-a57"  # the CPU model the soft aarch64 vCPU runs (unicorn's Cortex-A57)


def virtio_mmio_slot(n: int) -> VirtRegion:
    """Virtio-mmio transport slot ``n`` (0..31)."""
    if not 0 <= n < VIRTIO_MMIO_COUNT:
        raise ValueError(f"arm virt has virtio-mmio slots 0..{VIRTIO_MMIO_COUNT - 1}, not {n}")
    return VIRTIO_MMIO[n]


def mpidr_affinity(cpu: int) -> int:
    """The MPIDR affinity of vCPU ``cpu``: Aff0 = index (one cluster of up to 8, as QEMU's virt
    with GICv2); the cpu node's ``reg`` and PSCI's target_cpu both use it."""
    if not 0 <= cpu < MAX_CPUS:
        raise ValueError(f"arm virt with GICv2 has CPUs 0..{MAX_CPUS - 1}, not {cpu}")
    return cpu


def ppi_cpu_mask(num_cpus: int) -> int:
    """The GICv2 PPI flags' CPU mask (bits 15:8): every CPU has the interrupt."""
    return ((1 << min(num_cpus, MAX_CPUS)) - 1) << 8


def ram_regions(memory: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The regions the guest is told are memory: those at or above RAM_BASE (below it is flash)."""
    return sorted(region for region in memory if region[0] >= RAM_BASE)


# -- the device tree ---------------------------------------------------------------------------


def _check_args(
    num_cpus: int, memory: Sequence[tuple[int, int]], initrd: tuple[int, int] | None, spis: Sequence[int], conduit: str
) -> None:
    """ValueError naming the argument, since these come from a user's VM config."""
    if not 1 <= num_cpus <= MAX_CPUS:
        raise ValueError(f"num_cpus {num_cpus} is not 1..{MAX_CPUS} (GICv2 serves at most {MAX_CPUS} CPUs)")
    for base, size in memory:
        if size <= 0 or base < 0 or base + size > fdt.U64_MAX + 1:
            raise ValueError(f"memory region ({base:#x}, {size:#x}) is empty or outside 64-bit addresses")
    if not ram_regions(memory):
        raise ValueError(f"memory: at least one RAM region at or above {RAM_BASE:#x} is needed (arm virt's RAM)")
    for (base, size), (next_base, _) in pairwise(sorted(memory)):
        if base + size > next_base:
            raise ValueError(f"memory regions at {base:#x} and {next_base:#x} overlap")
    if initrd is not None and not 0 <= initrd[0] <= initrd[1] <= fdt.U64_MAX:
        raise ValueError(f"initrd ({initrd[0]:#x}, {initrd[1]:#x}) is not (start, end) with start <= end")
    for spi in spis:
        if not 0 <= spi <= MAX_SPI:
            raise ValueError(f"interrupt {spi} is not a GIC SPI 0..{MAX_SPI}")
    if conduit not in ("hvc", "smc"):
        raise ValueError(f"PSCI conduit {conduit!r} is not 'hvc' or 'smc'")


def _cpus(num_cpus: int, ph: Phandles, compatible: str) -> fdt.FdtNode:
    cpus = [
        node(
            f"cpu@{mpidr_affinity(c):x}",
            ph.prop(f"cpu{c}"),
            strings("device_type", "cpu"),
            strings("compatible", compatible),
            u32("reg", mpidr_affinity(c)),
            strings("enable-method", "psci"),
        )
        for c in range(num_cpus)
    ]
    cores = [node(f"core{c}", u32("cpu", ph[f"cpu{c}"])) for c in range(num_cpus)]
    return node(
        "cpus",
        u32("#address-cells", 1),
        u32("#size-cells", 0),
        *cpus,
        node("cpu-map", node("socket0", node("cluster0", *cores))),
    )


def _psci(conduit: str) -> fdt.FdtNode:
    return node(
        "psci",
        strings("compatible", "arm,psci-1.0", "arm,psci-0.2", "arm,psci"),
        strings("method", conduit),
        u32("cpu_suspend", psci.Fn.CPU_SUSPEND | psci.SMC64),
        u32("cpu_off", psci.Fn.CPU_OFF),
        u32("cpu_on", psci.Fn.CPU_ON | psci.SMC64),
    )


def _spi(spi: int, flags: int = IRQ_TYPE_LEVEL_HIGH) -> FdtCells:
    return (GIC_SPI, spi, flags)


FdtCells = tuple[int, int, int]


def _gic(ph: Phandles) -> fdt.FdtNode:
    return node(
        f"intc@{GIC_DIST.base:x}",
        ph.prop("gic"),
        strings("compatible", "arm,cortex-a15-gic"),
        u32("#interrupt-cells", 3),
        u32("#address-cells", 0),  # no child nodes; dtc's interrupt_provider check wants it stated
        flag("interrupt-controller"),
        reg64("reg", [(GIC_DIST.base, GIC_DIST.size), (GIC_CPU.base, GIC_CPU.size)]),
    )


def _primecell(region: VirtRegion, name: str, ph: Phandles, spi: int, clock_names: Sequence[str]) -> fdt.FdtNode:
    return node(
        f"{name}@{region.base:x}",
        strings("compatible", f"arm,{name}", "arm,primecell"),
        reg64("reg", [(region.base, region.size)]),
        u32("interrupts", *_spi(spi)),
        u32("clocks", *(ph["apb-pclk"] for _ in clock_names)),
        strings("clock-names", *clock_names),
    )


def build_arm_virt_dtb(
    *,
    num_cpus: int,
    memory: Sequence[tuple[int, int]],
    bootargs: str | None = None,
    initrd: tuple[int, int] | None = None,
    uart: tuple[int, int] | None = (UART.base, UART.spi or 0),
    rtc: tuple[int, int] | None = (RTC.base, RTC.spi or 0),
    virtio_mmio: Sequence[tuple[int, int]] = (),
    conduit: str = "hvc",
    cpu_compatible: str = CPU_COMPATIBLE,
) -> bytes:
    """The board's flattened device tree.

    ``memory``: the config's (base, size) regions (those below RAM_BASE are flash, left out);
    ``initrd``: (start, end) guest addresses of a loaded initramfs; ``uart``/``rtc``: (base, SPI)
    of the PL011 (which /chosen's stdout-path names) and the PL031; ``virtio_mmio``: (base, SPI)
    of each populated transport; ``conduit``: how the guest calls PSCI. ValueError names a bad
    argument.
    """
    spis = [spi for _, spi in virtio_mmio] + [d[1] for d in (uart, rtc) if d is not None]
    _check_args(num_cpus, memory, initrd, spis, conduit)
    ph = Phandles()
    gic_ph = ph["gic"]
    chosen: list[fdt.Item] = []
    if bootargs is not None:
        chosen.append(strings("bootargs", bootargs))
    if uart is not None:
        chosen.append(strings("stdout-path", f"/pl011@{uart[0]:x}"))
    if initrd is not None:
        chosen += [u64("linux,initrd-start", initrd[0]), u64("linux,initrd-end", initrd[1])]
    timer_flags = ppi_cpu_mask(num_cpus) | IRQ_TYPE_LEVEL_HIGH
    devices: list[fdt.FdtNode] = []
    if uart is not None:
        devices.append(
            _primecell(VirtRegion(UART.name, uart[0], UART.size), "pl011", ph, uart[1], ("uartclk", "apb_pclk"))
        )
    if rtc is not None:
        devices.append(_primecell(VirtRegion(RTC.name, rtc[0], RTC.size), "pl031", ph, rtc[1], ("apb_pclk",)))
    for base, spi in virtio_mmio:
        devices.append(
            node(
                f"virtio_mmio@{base:x}",
                strings("compatible", "virtio,mmio"),
                reg64("reg", [(base, VIRTIO_MMIO_SIZE)]),
                u32("interrupts", *_spi(spi)),
                flag("dma-coherent"),
            )
        )
    devices.sort(key=lambda item: fdt.cells(item[item.index("reg")])[:2])  # address order
    root: list[fdt.Item] = [
        u32("#address-cells", 2),
        u32("#size-cells", 2),
        strings("compatible", "linux,dummy-virt"),
        strings("model", "linux,dummy-virt"),
        u32("interrupt-parent", gic_ph),
        node("chosen", *chosen),
        _psci(conduit),
    ]
    for base, size in ram_regions(memory):
        root.append(node(f"memory@{base:x}", strings("device_type", "memory"), reg64("reg", [(base, size)])))
    root += [
        _cpus(num_cpus, ph, cpu_compatible),
        node(
            "timer",
            strings("compatible", "arm,armv8-timer", "arm,armv7-timer"),
            u32("interrupts", *(cell for ppi in TIMER_PPIS for cell in (GIC_PPI, ppi, timer_flags))),
            flag("always-on"),
        ),
        node(
            "apb-pclk",
            ph.prop("apb-pclk"),
            strings("compatible", "fixed-clock"),
            u32("#clock-cells", 0),
            u32("clock-frequency", APB_PCLK_HZ),
            strings("clock-output-names", "clk24mhz"),
        ),
        _gic(ph),
        *devices,
    ]
    return fdt.to_dtb(node("/", *root))
