"""QEMU's riscv64 ``virt`` board: its memory map, its device entries, its device tree, and the
fw_dynamic info OpenSBI's FW_DYNAMIC firmware reads.

Stock firmware and kernels (Debian's OpenSBI, U-Boot qemu-riscv64[_smode], Linux) know this
board, so the layout is QEMU's (hw/riscv/virt.c, ``virt_memmap``) and the device tree carries
what QEMU's does, less what we do not model (fw_cfg, flash, RTC, PCIe, platform bus, rng-seed).
Interrupt wiring follows QEMU: PLIC context 2h is hart h's M mode, 2h+1 its S mode, so the
PLIC's ``interrupts-extended`` lists <intc_h 11 intc_h 9> per hart, and the CLINT's lists
<intc_h 3 intc_h 7> (machine software and timer interrupts).

The ISA string is rv64imafdc with sv39 paging: what the software CPU implements (no H, no
Sstc, no Zb*), which a guest must not be told otherwise.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from axdevice import EmuDeviceType

from ...config import EmulatedDeviceConfig
from .. import fdt
from ..fdt import Phandles, flag, node, reg64, strings, u32, u64


@dataclass(frozen=True)
class VirtRegion:
    """One entry of the board's memory map."""

    name: str
    base: int
    size: int
    irq: int | None = None  # PLIC source, for devices that interrupt

    @property
    def end(self) -> int:
        return self.base + self.size


DRAM_BASE = 0x8000_0000
SIFIVE_TEST = VirtRegion("test", 0x0010_0000, 0x1000)
CLINT = VirtRegion("clint", 0x0200_0000, 0x10000)
PLIC = VirtRegion("plic", 0x0C00_0000, 0x60_0000)
UART0 = VirtRegion("uart0", 0x1000_0000, 0x100, irq=10)
VIRTIO_MMIO_BASE = 0x1000_1000
VIRTIO_MMIO_SIZE = 0x1000
VIRTIO_MMIO_COUNT = 8  # QEMU's VIRTIO_COUNT: slots 0..7 on PLIC sources 1..8
VIRTIO_MMIO = tuple(
    VirtRegion(f"virtio_mmio{n}", VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE, VIRTIO_MMIO_SIZE, irq=1 + n)
    for n in range(VIRTIO_MMIO_COUNT)
)

# QEMU's PLIC has 96 sources counting the nonexistent source 0 (VIRT_IRQCHIP_NUM_SOURCES), so
# its device tree says riscv,ndev = <95>: sources 1..95. axdevice's Plic takes this count.
PLIC_NDEV = 95
# QEMU's VIRT_CPUS_MAX: the PLIC window (0x60_0000) holds 2 contexts for each of 512 harts.
MAX_HARTS = 512
TIMEBASE_FREQUENCY = 10_000_000  # the CLINT's mtime rate (axdevice MTIME_FREQ_HZ)
UART_CLOCK_FREQUENCY = 3_686_400  # QEMU's ns16550a clock-frequency
ISA = "rv64imafdc"
MMU_TYPE = "riscv,sv39"

IRQ_M_SOFT, IRQ_M_TIMER = 3, 7  # mip bits: what the CLINT drives
IRQ_S_EXT, IRQ_M_EXT = 9, 11  # mip bits: what PLIC contexts drive
POWEROFF_VALUE, REBOOT_VALUE = 0x5555, 0x7777  # sifive_test finisher codes


def virtio_mmio_slot(n: int) -> VirtRegion:
    """Virtio-mmio transport slot ``n`` (0..7)."""
    if not 0 <= n < VIRTIO_MMIO_COUNT:
        raise ValueError(f"riscv virt has virtio-mmio slots 0..{VIRTIO_MMIO_COUNT - 1}, not {n}")
    return VIRTIO_MMIO[n]


def plic_context(hart: int, supervisor: bool) -> int:
    """The PLIC context of a hart's M (False) or S (True) mode on this board."""
    return 2 * hart + int(supervisor)


def riscv_virt_device_entries(*, uart: bool = True, test_device: bool = True) -> tuple[EmulatedDeviceConfig, ...]:
    """The board's fixed devices as ``[devices] emu_devices`` entries.

    The PLIC entry's ``cfg_list`` is ``(riscv,ndev,)``; the CLINT and PLIC have no ``irq_id``
    (they are the interrupt sources' sinks). Virtio slots are left to the devices attached.
    """
    entries = [
        EmulatedDeviceConfig(CLINT.name, CLINT.base, CLINT.size, 0, int(EmuDeviceType.Timer)),
        EmulatedDeviceConfig(PLIC.name, PLIC.base, PLIC.size, 0, int(EmuDeviceType.InterruptController), (PLIC_NDEV,)),
    ]
    if uart:
        entries.append(EmulatedDeviceConfig(UART0.name, UART0.base, UART0.size, UART0.irq or 0,
                                            int(EmuDeviceType.Console)))
    if test_device:
        entries.append(EmulatedDeviceConfig(SIFIVE_TEST.name, SIFIVE_TEST.base, SIFIVE_TEST.size, 0,
                                            int(EmuDeviceType.PowerControl)))
    return tuple(entries)


# -- the device tree ---------------------------------------------------------------------------


def _check_args(num_harts: int, memory: Sequence[tuple[int, int]], initrd: tuple[int, int] | None,
                plic_ndev: int, irqs: Sequence[int]) -> None:
    """ValueError naming the argument, since these come from a user's VM config."""
    if not 1 <= num_harts <= MAX_HARTS:
        raise ValueError(f"num_harts {num_harts} is not 1..{MAX_HARTS} (riscv virt's limit)")
    if not memory:
        raise ValueError("memory: at least one (base, size) region is needed")
    for base, size in memory:
        if size <= 0 or base < 0 or base + size > fdt.U64_MAX + 1:
            raise ValueError(f"memory region ({base:#x}, {size:#x}) is empty or outside 64-bit addresses")
    regions = sorted(memory)
    for (base, size), (next_base, _) in pairwise(regions):
        if base + size > next_base:
            raise ValueError(f"memory regions at {base:#x} and {next_base:#x} overlap")
    if initrd is not None and not 0 <= initrd[0] <= initrd[1] <= fdt.U64_MAX:
        raise ValueError(f"initrd ({initrd[0]:#x}, {initrd[1]:#x}) is not (start, end) with start <= end")
    if not 1 <= plic_ndev <= 1023:
        raise ValueError(f"plic_ndev {plic_ndev} is not 1..1023")
    for irq in irqs:
        if not 1 <= irq <= plic_ndev:
            raise ValueError(f"interrupt {irq} is not a PLIC source 1..{plic_ndev}")


def _cpus(num_harts: int, ph: Phandles, isa: str) -> fdt.FdtNode:
    cpus = [
        node(
            f"cpu@{h:x}",
            ph.prop(f"cpu{h}"),
            strings("device_type", "cpu"),
            u32("reg", h),
            strings("status", "okay"),
            strings("compatible", "riscv"),
            strings("riscv,isa", isa),
            strings("mmu-type", MMU_TYPE),
            node(
                "interrupt-controller",
                u32("#address-cells", 0),  # dtc's interrupt_provider check wants it stated
                u32("#interrupt-cells", 1),
                flag("interrupt-controller"),
                strings("compatible", "riscv,cpu-intc"),
                ph.prop(f"intc{h}"),
            ),
        )
        for h in range(num_harts)
    ]
    cores = [node(f"core{h}", u32("cpu", ph[f"cpu{h}"])) for h in range(num_harts)]
    return node(
        "cpus",
        u32("#address-cells", 1),
        u32("#size-cells", 0),
        u32("timebase-frequency", TIMEBASE_FREQUENCY),
        *cpus,
        node("cpu-map", node("cluster0", *cores)),
    )


def _per_hart(num_harts: int, ph: Phandles, *irqs: int) -> list[int]:
    """interrupts-extended cells: <intc_h irq ...> for each hart, in hart order."""
    return [cell for h in range(num_harts) for irq in irqs for cell in (ph[f"intc{h}"], irq)]


def _device(region: VirtRegion, name: str, compatible: Sequence[str], *extra: fdt.Item) -> fdt.FdtNode:
    return node(f"{name}@{region.base:x}", *extra, reg64("reg", [(region.base, region.size)]),
                strings("compatible", *compatible))


def _soc(num_harts: int, ph: Phandles, plic_ndev: int, uart: tuple[int, int] | None,
         virtio_mmio: Sequence[tuple[int, int]], has_test_device: bool) -> fdt.FdtNode:
    plic_ph = ph["plic"]
    children: list[fdt.Item] = []
    if has_test_device:
        children.append(_device(SIFIVE_TEST, "test", ("sifive,test1", "sifive,test0", "syscon"), ph.prop("test")))
    if uart is not None:
        base, irq = uart
        region = VirtRegion(UART0.name, base, UART0.size)
        children.append(_device(region, "serial", ("ns16550a",), u32("interrupts", irq),
                                u32("interrupt-parent", plic_ph), u32("clock-frequency", UART_CLOCK_FREQUENCY)))
    for base, irq in virtio_mmio:
        region = VirtRegion("virtio", base, VIRTIO_MMIO_SIZE)
        children.append(_device(region, "virtio_mmio", ("virtio,mmio",), u32("interrupts", irq),
                                u32("interrupt-parent", plic_ph)))
    children.append(_device(
        PLIC, "plic", ("sifive,plic-1.0.0", "riscv,plic0"),
        ph.prop("plic"),
        u32("riscv,ndev", plic_ndev),
        u32("interrupts-extended", *_per_hart(num_harts, ph, IRQ_M_EXT, IRQ_S_EXT)),
        flag("interrupt-controller"),
        u32("#address-cells", 0),
        u32("#interrupt-cells", 1),
    ))
    children.append(_device(CLINT, "clint", ("sifive,clint0", "riscv,clint0"),
                            u32("interrupts-extended", *_per_hart(num_harts, ph, IRQ_M_SOFT, IRQ_M_TIMER))))
    children.sort(key=lambda item: fdt.cells(item[item.index("reg")])[:2])  # address order, as QEMU's
    return node("soc", u32("#address-cells", 2), u32("#size-cells", 2), strings("compatible", "simple-bus"),
                flag("ranges"), *children)


def build_riscv_virt_dtb(
    *,
    num_harts: int,
    memory: Sequence[tuple[int, int]],
    bootargs: str | None = None,
    initrd: tuple[int, int] | None = None,
    uart: tuple[int, int] | None = (UART0.base, UART0.irq or 0),
    virtio_mmio: Sequence[tuple[int, int]] = (),
    has_test_device: bool = True,
    plic_ndev: int = PLIC_NDEV,
    isa: str = ISA,
) -> bytes:
    """The board's flattened device tree.

    ``memory``: (base, size) RAM regions; ``initrd``: (start, end) guest addresses of a loaded
    initramfs; ``uart``: (base, PLIC source) of the ns16550a console, which /chosen's
    stdout-path names; ``virtio_mmio``: (base, PLIC source) of each populated transport.
    ValueError names a bad argument.
    """
    irqs = [irq for _, irq in virtio_mmio] + ([uart[1]] if uart is not None else [])
    _check_args(num_harts, memory, initrd, plic_ndev, irqs)
    ph = Phandles()
    chosen: list[fdt.Item] = []
    if bootargs is not None:
        chosen.append(strings("bootargs", bootargs))
    if uart is not None:
        chosen.append(strings("stdout-path", f"/soc/serial@{uart[0]:x}"))
    if initrd is not None:
        chosen += [u64("linux,initrd-start", initrd[0]), u64("linux,initrd-end", initrd[1])]
    root: list[fdt.Item] = [
        u32("#address-cells", 2),
        u32("#size-cells", 2),
        strings("compatible", "riscv-virtio"),
        strings("model", "riscv-virtio,qemu"),
        node("chosen", *chosen),
    ]
    if has_test_device:
        test_ph = ph["test"]
        for name, value in (("poweroff", POWEROFF_VALUE), ("reboot", REBOOT_VALUE)):
            root.append(node(name, strings("compatible", f"syscon-{name}"), u32("regmap", test_ph),
                             u32("offset", 0), u32("value", value)))
    for base, size in sorted(memory):
        root.append(node(f"memory@{base:x}", strings("device_type", "memory"), reg64("reg", [(base, size)])))
    root.append(_cpus(num_harts, ph, isa))
    root.append(_soc(num_harts, ph, plic_ndev, uart, virtio_mmio, has_test_device))
    return fdt.to_dtb(node("/", *root))


# -- OpenSBI fw_dynamic ------------------------------------------------------------------------

# OpenSBI include/sbi/fw_dynamic.h: struct fw_dynamic_info, six unsigned longs (8 bytes each on
# rv64), passed to FW_DYNAMIC firmware in a2. Version 2 added boot_hart; -1 (all ones) asks for
# the relocation lottery instead of a preferred boot hart.
FW_DYNAMIC_INFO_MAGIC = 0x4942534F  # "OSBI"
FW_DYNAMIC_INFO_VERSION = 2
FW_DYNAMIC_INFO_SIZE = 6 * 8
NEXT_MODE_U, NEXT_MODE_S, NEXT_MODE_M = 0, 1, 3
FW_OPTION_NO_BOOT_PRINTS = 1 << 0  # sbi_scratch_options: SBI_SCRATCH_NO_BOOT_PRINTS
FW_OPTION_DEBUG_PRINTS = 1 << 1  # SBI_SCRATCH_DEBUG_PRINTS
ANY_BOOT_HART = fdt.U64_MAX


def fw_dynamic_info(next_addr: int, next_mode: int = NEXT_MODE_S, *, options: int = 0,
                    boot_hart: int = ANY_BOOT_HART) -> bytes:
    """The 48-byte little-endian struct fw_dynamic_info for an rv64 guest."""
    if next_mode not in (NEXT_MODE_U, NEXT_MODE_S, NEXT_MODE_M):
        raise ValueError(f"fw_dynamic next_mode {next_mode} is not 0 (U), 1 (S) or 3 (M)")
    if boot_hart == -1:
        boot_hart = ANY_BOOT_HART
    for name, value in (("next_addr", next_addr), ("options", options), ("boot_hart", boot_hart)):
        if not 0 <= value <= fdt.U64_MAX:
            raise ValueError(f"fw_dynamic {name} {value:#x} is not a 64-bit value")
    return struct.pack("<6Q", FW_DYNAMIC_INFO_MAGIC, FW_DYNAMIC_INFO_VERSION, next_addr, next_mode, options, boot_hart)
