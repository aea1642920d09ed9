"""The riscv64 virt machine: the board's CLINT, PLIC, UART and test finisher, device IRQs through
the PLIC, and the boot registers stock firmware expects (a0 = hart id, a1 = device tree, and for
OpenSBI's FW_DYNAMIC build a2 = struct fw_dynamic_info).

The CPU side comes from the backend's capabilities: ``HartLines`` drive a hart's MIP bit (the
CLINT's MSIP, the PLIC's MEIP/SEIP), ``MachineClock`` is the timer, with ``InlineMmio`` the
backend serves the guest's device accesses from inside its run through the device manager, and
with ``EcallHook`` the machine installs ``SbiCodeFence``: the guest's firmware interface is SBI,
whose remote fence.i and hart start tell a software CPU to drop translated code on every hart.
Each has a defined fallback, so the machine also composes on a backend with none of them (the
scripted one ``axvisor check`` uses): interrupt outputs go nowhere, mtime reads 0 and timer
compares are ignored, and device accesses come back as MMIO exits, which ``AxVM.run_vcpu``
hands to the same device manager.

Which firmware handoff the guest gets is the config's ``[kernel] boot_protocol``, never the
firmware's file name: the two OpenSBI builds cannot be told apart from their bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from axaddrspace import GuestPhysAddr
from axdevice import (
    Clint,
    IrqLine,
    NullIrqLine,
    Plic,
    SifiveTest,
    Uart16550,
    Uart16550Mmio,
)
from axdevice.clint import MTIMECMP_OFFSET
from axdevice.types import EmuDeviceType
from axvcpu.riscv_sbi import SbiCodeFence

from ...capabilities import MachineClock
from ...config import Arch, AxVMCrateConfig, BootProtocol
from ...device_manager import BusKind, DeviceManager
from ...devices import BuiltDevice, DeviceContext
from ...machine import BootArea, BootPlan, BootTarget
from . import layout

DTB_ALIGN = 0x1000
DTB_RESERVE = 0x20_0000
"""The DTB goes this far below the top of the first RAM region: out of the way of the kernel and
initrd, where QEMU puts it too."""
FW_DYNAMIC_INFO_GAP = 0x1000
"""fw_dynamic_info sits one page below the device tree."""


class _LockedUart:
    """The UART's polled-transmit side as the backend calls it, under the device manager's
    lock like every other access to a device (a console thread feeds the same UART)."""

    def __init__(self, uart: Uart16550, devices: DeviceManager) -> None:
        self._uart = uart
        self._devices = devices

    def polled_tx_lsr(self) -> int:
        with self._devices.lock:
            return self._uart.polled_tx_lsr()

    def transmit(self, data: bytes) -> None:
        with self._devices.lock:
            self._uart.transmit(data)


class RiscvVirtMachine:
    arch = Arch.RISCV64

    def __init__(self) -> None:
        self.plic: Plic | None = None
        self.clint: Clint | None = None

    @staticmethod
    def _hart_line(target: BootTarget, hart: int, bit: int) -> IrqLine:
        """The backend's line for a hart's MIP bit; a line to nothing without HartLines."""
        hart_lines = target.backend.hart_lines
        return hart_lines.hart_line(hart, bit) if hart_lines is not None else NullIrqLine()

    def _plic(self, target: BootTarget) -> Plic:
        if self.plic is None:
            lines = [self._hart_line(target, hart, bit) for hart in range(len(target.vcpus))
                     for bit in (layout.IRQ_M_EXT, layout.IRQ_S_EXT)]
            self.plic = Plic(layout.PLIC.base, layout.PLIC_NDEV, lines, layout.PLIC.size)
        return self.plic

    def irq_line(self, target: BootTarget, irq: int) -> IrqLine:
        return self._plic(target).source(irq)

    def boot_areas(self, config: AxVMCrateConfig) -> Sequence[BootArea]:
        """The generated device tree (to the end of the first region) and fw_dynamic_info below it."""
        dtb_addr, generated = device_tree_address(config)
        areas = []
        if generated:
            first_end = min(config.kernel.memory_regions, key=lambda region: region.gpa).end
            areas.append(BootArea("the generated device tree", dtb_addr, first_end - dtb_addr))
        if _fw_dynamic(config):
            areas.append(BootArea("OpenSBI's fw_dynamic_info", dtb_addr - FW_DYNAMIC_INFO_GAP, FW_DYNAMIC_INFO_GAP))
        return areas

    def platform_devices(self, target: BootTarget, ctx: DeviceContext) -> Sequence[BuiltDevice]:
        harts = len(target.vcpus)
        clock = target.backend.clock or _NO_CLOCK
        self.clint = Clint(layout.CLINT.base, harts,
                           [self._hart_line(target, hart, layout.IRQ_M_SOFT) for hart in range(harts)],
                           clock, clock.mtime)
        uart_irq = layout.UART0.irq or 0
        uart = Uart16550(ctx.irq_line(uart_irq), ctx.console_output)
        return (
            BuiltDevice(self._plic(target), BusKind.MMIO),
            BuiltDevice(self.clint, BusKind.MMIO),
            BuiltDevice(Uart16550Mmio(uart, layout.UART0.base, 0, layout.UART0.size), BusKind.MMIO, uart,
                        irqs=(uart_irq,)),
            BuiltDevice(SifiveTest(ctx.control, layout.SIFIVE_TEST.base, layout.SIFIVE_TEST.size), BusKind.MMIO),
        )

    def connect(self, target: BootTarget) -> None:
        """The runtime wiring, apart from boot data (a restored snapshot needs only this):
        device windows served inline, and the SBI-aware ecall observer."""
        timer_writes = target.backend.mtimecmp_writes
        if timer_writes is not None:  # before the windows are mapped: they are mapped once
            timer_writes.serve_mtimecmp_writes(layout.CLINT.base + MTIMECMP_OFFSET)
        uart_tx = target.backend.polled_uart_tx
        console = target.devices.bus(BusKind.MMIO).find(layout.UART0.base)  # the config may place its own
        if uart_tx is not None and isinstance(console, Uart16550Mmio) and console.reg_shift == 0:
            uart_tx.serve_uart_tx(console.base, _LockedUart(console.uart, target.devices))
        inline = target.backend.inline_mmio
        if inline is not None:
            inline.set_mmio_handler(target.devices.mmio_windows(), target.devices)
        ecall_hook = target.backend.ecall_hook
        if ecall_hook is not None:
            ecall_hook.set_ecall_observer(SbiCodeFence(ecall_hook.drop_code))

    def prepare_boot(self, target: BootTarget, plan: BootPlan) -> None:
        self.connect(target)
        config, memory = target.config, target.memory
        dtb_addr, generated = device_tree_address(config)
        if generated:
            memory.write(GuestPhysAddr(dtb_addr), self._device_tree(target, plan))
        info_addr = None
        if _fw_dynamic(config):
            # OpenSBI's FW_DYNAMIC firmware finds the next stage through a2 (struct fw_dynamic_info).
            info_addr = dtb_addr - FW_DYNAMIC_INFO_GAP
            info = layout.fw_dynamic_info(config.kernel.kernel_load_addr, layout.NEXT_MODE_S)
            memory.write(GuestPhysAddr(info_addr), info)
        for vcpu in target.vcpus:
            vcpu.set_register("a0", vcpu.id)
            vcpu.set_register("a1", dtb_addr)
            if info_addr is not None:
                vcpu.set_register("a2", info_addr)

    def _device_tree(self, target: BootTarget, plan: BootPlan) -> bytes:
        config = target.config
        kernel = config.kernel
        initrd = None
        if kernel.ramdisk_path is not None and kernel.ramdisk_load_addr is not None:
            initrd = (kernel.ramdisk_load_addr, kernel.ramdisk_load_addr + kernel.ramdisk_path.stat().st_size)
        virtio = [(d.base_gpa, d.irq_id) for d in config.devices.emu_devices
                  if d.emu_type in {int(t) for t in EmuDeviceType if t.is_virtio}]
        return layout.build_riscv_virt_dtb(
            num_harts=len(target.vcpus),
            memory=[(region.gpa, region.size) for region in kernel.memory_regions],
            bootargs=plan.cmdline.decode() or None,
            initrd=initrd,
            virtio_mmio=virtio,
        )


def device_tree_address(config: AxVMCrateConfig) -> tuple[int, bool]:
    """Where the guest finds its device tree, and whether the VMM generates it there: the config's
    own dtb when it loads one, else DTB_RESERVE below the end of the first RAM region."""
    kernel = config.kernel
    if kernel.dtb_path is not None and kernel.dtb_load_addr is not None:
        return kernel.dtb_load_addr, False
    first = min(kernel.memory_regions, key=lambda region: region.gpa)
    return (first.end - DTB_RESERVE) & ~(DTB_ALIGN - 1), True


def _fw_dynamic(config: AxVMCrateConfig) -> bool:
    """Whether the firmware is entered as OpenSBI's FW_DYNAMIC build, which finds the next stage
    through a2 (struct fw_dynamic_info): what ``[kernel] boot_protocol`` says."""
    kernel = config.kernel
    return kernel.bios_path is not None and kernel.boot_protocol is BootProtocol.FW_DYNAMIC


class _StoppedClock:
    """The fallback without a MachineClock: mtime stays 0 and compare values are ignored."""

    def mtime(self) -> int:
        return 0

    def set_mtimecmp(self, hart: int, value: int) -> None:
        pass


_NO_CLOCK: MachineClock = _StoppedClock()
