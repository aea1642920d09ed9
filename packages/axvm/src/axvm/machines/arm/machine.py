"""The arm virt machine: QEMU's ``virt`` board for aarch64 guests on a software CPU.

What it adds: a GICv2 (distributor and CPU interface, banked per accessing vCPU), the PL011
UART and the PL031 RTC at QEMU's addresses, device IRQs as GIC SPIs (``irq_id`` = SPI number),
the device tree at the start of RAM, PSCI 1.0 answered by the VMM, and the boot registers.

Boot (the same for firmware and a kernel, as QEMU leaves them): the device tree is written at
RAM_BASE, where U-Boot's qemu_arm64 board looks for it (``board_fdt_blob_setup``: "QEMU loads a
generated DTB for us at the start of RAM"), and x0 points at it, as the arm64 Linux boot
protocol wants (Documentation/arch/arm64/booting.rst: x0 = DTB, x1-x3 = 0, MMU off, EL1 or
EL2). So a kernel is loaded at a 2 MiB-aligned address above it plus the Image's text_offset
(0x4020_0000 for today's kernels, whose text_offset is 0) and firmware runs from flash at 0.

CPU side, from the backend's capabilities: ``ArmCpuLines`` gives each vCPU's IRQ input (the
GIC CPU interface drives it) and reports each vCPU's generic-timer outputs, which this machine
raises as the GIC's PPIs (under the device lock, as every GIC access); ``InlineMmio`` serves
the device windows inside the run, on the accessing vCPU's thread, so the GIC's banked
registers are those of the vCPU whose thread last passed ``vcpu_enter`` (a thread-local).
The guest's PSCI calls reach the machine as ``Hypercall(nr=w0, args=(x1, ...))`` exits (HVC
or SMC; the device tree names hvc) through ``vcpu_exit``, which writes the answer to x0; a
vCPU that is off runs nothing (``vcpu_enter`` answers Halt, and the VMM waits) until CPU_ON
hands it an entry. SYSTEM_OFF and SYSTEM_RESET end the VM with status 0 (or as a reset).
Without those capabilities (the scripted backend ``check`` composes on) the GIC's outputs go
nowhere and the timers never fire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from axaddrspace import GuestPhysAddr
from axdevice import Gicv2, IrqLine, NullIrqLine, Pl011, Pl031, VmControl, ppi_intid, spi_intid
from axdevice.types import EmuDeviceType
from axvcpu import AxVCpuExitReason, Halt, Hypercall, SystemDown

from ...config import Arch, AxVMCrateConfig
from ...device_manager import BusKind
from ...devices import BuiltDevice, DeviceContext
from ...machine import BootArea, BootPlan, BootTarget
from . import layout, psci
from .power import CpuPower

DTB_RESERVE = 0x20_0000
"""The device tree's room at the start of RAM: 2 MiB, the most arm64 Linux accepts, and the
gap below a kernel at RAM_BASE + 2 MiB."""


class ArmVirtMachine:
    arch = Arch.AARCH64

    def __init__(self, conduit: str = "hvc") -> None:
        self.conduit = conduit
        self.gic: Gicv2 | None = None
        self.uart: Pl011 | None = None
        self.rtc: Pl031 | None = None
        self.power: CpuPower | None = None
        self._control: VmControl | None = None
        self._current = threading.local()
        """``cpu``: the vCPU this thread runs, set in ``vcpu_enter``; the GIC's banked registers."""

    # -- interrupts ----------------------------------------------------------------------

    def _gic(self, target: BootTarget) -> Gicv2:
        if self.gic is None:
            lines = target.backend.arm_cpu_lines
            cpu_lines: list[IrqLine] = [
                lines.irq_input(cpu) if lines is not None else NullIrqLine() for cpu in range(len(target.vcpus))
            ]
            self.gic = Gicv2(layout.GIC_NUM_IRQS, cpu_lines)
        return self.gic

    def irq_line(self, target: BootTarget, irq: int) -> IrqLine:
        """SPI ``irq`` (the device tree's number; INTID 32 + irq)."""
        if not 0 <= irq <= layout.MAX_SPI:
            raise ValueError(f"irq_id {irq} is not a GIC SPI 0..{layout.MAX_SPI} of the arm virt machine")
        return self._gic(target).spi_line(spi_intid(irq))

    # -- building --------------------------------------------------------------------------

    def boot_areas(self, config: AxVMCrateConfig) -> Sequence[BootArea]:
        dtb_addr, generated = device_tree_address(config)
        return [BootArea("the generated device tree", dtb_addr, DTB_RESERVE)] if generated else []

    def platform_devices(self, target: BootTarget, ctx: DeviceContext) -> Sequence[BuiltDevice]:
        gic = self._gic(target)
        self._control = ctx.control
        self.power = CpuPower(len(target.vcpus))
        current = self.current_cpu
        lines = target.backend.arm_cpu_lines
        if lines is not None:
            lock = target.devices.lock
            timer_ppis = {ppi_intid(layout.TIMER_VIRT_PPI), ppi_intid(layout.TIMER_PHYS_PPI)}

            def timer_output(cpu: int, intid: int, level: bool) -> None:
                if intid in timer_ppis and 0 <= cpu < gic.num_cpus:
                    with lock:
                        gic.set_ppi_level(cpu, intid, level)

            lines.set_timer_sink(timer_output)
        uart_spi, rtc_spi = layout.UART.spi or 0, layout.RTC.spi or 0
        self.uart = Pl011(ctx.irq_line(uart_spi), ctx.console_output, layout.UART.base, layout.UART.size)
        self.rtc = Pl031(ctx.irq_line(rtc_spi), time.time, None, layout.RTC.base, layout.RTC.size)
        return (
            BuiltDevice(gic.distributor_window(current, layout.GIC_DIST.base, layout.GIC_DIST.size), BusKind.MMIO),
            BuiltDevice(gic.cpu_interface_window(current, layout.GIC_CPU.base, layout.GIC_CPU.size), BusKind.MMIO),
            BuiltDevice(self.uart, BusKind.MMIO, self.uart, irqs=(uart_spi,)),
            BuiltDevice(self.rtc, BusKind.MMIO, irqs=(rtc_spi,)),
        )

    # -- boot ------------------------------------------------------------------------------

    def connect(self, target: BootTarget) -> None:
        """The runtime wiring apart from boot data (all a restored snapshot needs): the device
        windows served inline."""
        inline = target.backend.inline_mmio
        if inline is not None:
            inline.set_mmio_handler(target.devices.mmio_windows(), target.devices)

    def save_platform_state(self) -> dict[str, Any]:
        """The machine's own state for a snapshot: each vCPU's PSCI power state."""
        return {"power": self.power.saved() if self.power is not None else None}

    def restore_platform_state(self, saved: Mapping[str, Any]) -> None:
        """Take back ``save_platform_state``'s data (ValueError naming the field)."""
        power = saved.get("power") if isinstance(saved, Mapping) else None
        if self.power is not None:
            if not isinstance(power, Mapping):
                raise ValueError(f"power must be a table, not {power!r}")
            self.power.restore_saved(power)

    def prepare_boot(self, target: BootTarget, plan: BootPlan) -> None:
        self.connect(target)
        dtb_addr, generated = device_tree_address(target.config)
        if generated:
            target.memory.write(GuestPhysAddr(dtb_addr), self.device_tree(target, plan))
        boot = target.vcpus[0]
        for reg in ("x1", "x2", "x3"):
            boot.set_register(reg, 0)
        boot.set_register("x0", dtb_addr)

    def device_tree(self, target: BootTarget, plan: BootPlan) -> bytes:
        config = target.config
        kernel = config.kernel
        initrd = None
        if kernel.ramdisk_path is not None and kernel.ramdisk_load_addr is not None:
            initrd = (kernel.ramdisk_load_addr, kernel.ramdisk_load_addr + kernel.ramdisk_path.stat().st_size)
        virtio = [
            (d.base_gpa, d.irq_id)
            for d in config.devices.emu_devices
            if d.emu_type in {int(t) for t in EmuDeviceType if t.is_virtio}
        ]
        return layout.build_arm_virt_dtb(
            num_cpus=len(target.vcpus),
            memory=[(region.gpa, region.size) for region in kernel.memory_regions],
            bootargs=plan.cmdline.decode() or None,
            initrd=initrd,
            virtio_mmio=virtio,
            conduit=self.conduit,
        )

    # -- running: power states and PSCI ----------------------------------------------------

    def current_cpu(self) -> int:
        """The vCPU the calling thread runs (0 on a thread that runs none)."""
        cpu: int = getattr(self._current, "cpu", 0)
        return cpu

    def vcpu_enter(self, target: BootTarget, vcpu_id: int) -> AxVCpuExitReason | None:
        """Before vCPU ``vcpu_id`` runs, on its thread: Halt while it is off (the VMM waits, then
        asks again); a CPU_ON left for it sets its entry registers and lets it run."""
        self._current.cpu = vcpu_id
        power = self.power
        if power is None or power.is_on(vcpu_id):
            return None
        start = power.take_start(vcpu_id)
        if start is None:
            return Halt()
        vcpu = target.vcpus[vcpu_id]
        vcpu.set_register("pc", start.entry)
        vcpu.set_register("x0", start.context_id)
        return None

    def vcpu_exit(self, target: BootTarget, vcpu_id: int, exit_reason: AxVCpuExitReason) -> AxVCpuExitReason | None:
        """A PSCI call (HVC or SMC, the function id in w0) is answered here, x0 written: None
        lets the vCPU run on; Halt (CPU_OFF, CPU_SUSPEND) or SystemDown go back to the VMM. Any
        other exit, and a call outside PSCI's function ids, is returned unchanged.
        """
        if not isinstance(exit_reason, Hypercall) or self.power is None or not psci.is_psci_call(exit_reason.nr):
            return exit_reason  # AxVM serves AxVisor's own hypercalls (hvc #0, code in x0)
        vcpu = target.vcpus[vcpu_id]
        x1, x2, x3 = (*exit_reason.args, 0, 0, 0)[:3]
        result = self.power.call(vcpu_id, exit_reason.nr, x1, x2, x3, _entry_in_ram(target))
        if result.x0 is not None:
            vcpu.set_register("x0", result.x0)
        match result.action:
            case psci.CpuOn(target=started):
                target.vcpus[started].kick()  # its thread waits in Halt: wake it to take the start
                return None
            case psci.CpuOff():
                return Halt()  # vcpu_enter keeps it there until a CPU_ON
            case psci.CpuSuspend():
                return Halt()
            case psci.SystemOff():
                return SystemDown(0)
            case psci.SystemReset():
                return SystemDown(0, reset=True)
            case _:
                return None


def _entry_in_ram(target: BootTarget) -> Callable[[int], bool]:
    """CPU_ON's check of an entry point: inside the VM's memory (else INVALID_ADDRESS)."""
    regions = [(region.gpa, region.end) for region in target.config.kernel.memory_regions]

    def entry_ok(address: int) -> bool:
        return any(start <= address < end for start, end in regions)

    return entry_ok


def device_tree_address(config: AxVMCrateConfig) -> tuple[int, bool]:
    """Where the guest finds its device tree, and whether the VMM generates it there: the config's
    own dtb when it loads one, else the start of the first RAM region at or above RAM_BASE."""
    kernel = config.kernel
    if kernel.dtb_path is not None and kernel.dtb_load_addr is not None:
        return kernel.dtb_load_addr, False
    ram = [region.gpa for region in kernel.memory_regions if region.gpa >= layout.RAM_BASE]
    return (min(ram) if ram else layout.RAM_BASE), True
