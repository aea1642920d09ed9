"""The riscv64 virt machine: the board's CLINT, PLIC, UART and test finisher, device IRQs through
the PLIC, and the boot registers stock firmware expects (a0 = hart id, a1 = device tree).

The CPU side comes from the backend: ``hart_line(hart, bit)`` drives a hart's MIP bit (the CLINT's
MSIP, the PLIC's MEIP/SEIP), ``set_mtimecmp``/``mtime`` are the timer, and ``set_mmio_handler``
routes the guest's device accesses to the VM's MMIO bus. A backend without them (the scripted
one in tests) gets devices whose interrupt outputs go nowhere.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from axaddrspace import AccessWidth, GuestPhysAddr
from axdevice import (
    Clint,
    IrqLine,
    MmioBus,
    NullIrqLine,
    Plic,
    SifiveTest,
    Uart16550,
    Uart16550Mmio,
)
from axdevice.types import EmuDeviceType

from ...config import Arch, AxVMCrateConfig
from ...devices import BuiltDevice, DeviceContext
from ...machine import BootArea, BootPlan
from . import layout

if TYPE_CHECKING:
    from ...vm import AxVM

DTB_ALIGN = 0x1000
DTB_RESERVE = 0x20_0000
"""The DTB goes this far below the top of the first RAM region: out of the way of the kernel and
initrd, where QEMU puts it too."""
FW_DYNAMIC_INFO_GAP = 0x1000
"""fw_dynamic_info sits one page below the device tree."""


class LockedMmio:
    """The VM's MMIO bus behind its device lock, for backends that call devices from vCPU threads."""

    def __init__(self, bus: MmioBus, lock: threading.Lock) -> None:
        self._bus = bus
        self._lock = lock

    def read(self, addr: int, width: AccessWidth) -> int:
        with self._lock:
            return self._bus.read(addr, width)

    def write(self, addr: int, width: AccessWidth, value: int) -> None:
        with self._lock:
            self._bus.write(addr, width, value)


class RiscvVirtMachine:
    arch = Arch.RISCV64

    def __init__(self) -> None:
        self.plic: Plic | None = None
        self.clint: Clint | None = None

    def _hart_line(self, vm: AxVM, hart: int, bit: int) -> IrqLine:
        hart_line = getattr(vm.backend, "hart_line", None)
        return hart_line(hart, bit) if hart_line is not None else NullIrqLine()

    def _plic(self, vm: AxVM) -> Plic:
        if self.plic is None:
            lines = [self._hart_line(vm, hart, bit) for hart in range(len(vm.vcpus))
                     for bit in (layout.IRQ_M_EXT, layout.IRQ_S_EXT)]
            self.plic = Plic(layout.PLIC.base, layout.PLIC_NDEV, lines, layout.PLIC.size)
        return self.plic

    def irq_line(self, vm: AxVM, irq: int) -> IrqLine:
        return self._plic(vm).source(irq)

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

    def platform_devices(self, ctx: DeviceContext) -> Sequence[BuiltDevice]:
        vm: AxVM = ctx.control  # type: ignore[assignment]  # the VM is every device's VmControl
        backend: Any = vm.backend
        harts = len(vm.vcpus)
        self.clint = Clint(layout.CLINT.base, harts,
                           [self._hart_line(vm, hart, layout.IRQ_M_SOFT) for hart in range(harts)],
                           backend if hasattr(backend, "set_mtimecmp") else _NoTimers(),
                           backend.mtime if hasattr(backend, "mtime") else (lambda: 0))
        uart = Uart16550(ctx.irq_line(layout.UART0.irq or 0), ctx.console_output)
        return (
            BuiltDevice(self._plic(vm), "mmio"),
            BuiltDevice(self.clint, "mmio"),
            BuiltDevice(Uart16550Mmio(uart, layout.UART0.base, 0, layout.UART0.size), "mmio", uart),
            BuiltDevice(SifiveTest(ctx.control, layout.SIFIVE_TEST.base, layout.SIFIVE_TEST.size), "mmio"),
        )

    def prepare_boot(self, vm: AxVM, plan: BootPlan) -> None:
        set_handler = getattr(vm.backend, "set_mmio_handler", None)
        if set_handler is not None:
            ranges = [(d.address_range.start, d.address_range.size) for d in vm.buses.mmio.devices]
            set_handler(ranges, LockedMmio(vm.buses.mmio, vm.device_lock))
        kernel = vm.config.kernel
        dtb_addr, generated = device_tree_address(vm.config)
        if generated:
            vm.addrspace.memory.write(GuestPhysAddr(dtb_addr), self._device_tree(vm, plan))
        info_addr = None
        if _fw_dynamic(vm.config):
            # OpenSBI's FW_DYNAMIC firmware finds the next stage through a2 (struct fw_dynamic_info).
            info_addr = dtb_addr - FW_DYNAMIC_INFO_GAP
            info = layout.fw_dynamic_info(kernel.kernel_load_addr, layout.NEXT_MODE_S)
            vm.addrspace.memory.write(GuestPhysAddr(info_addr), info)
        for vcpu in vm.vcpus:
            vcpu.set_register("a0", vcpu.id)
            vcpu.set_register("a1", dtb_addr)
            if info_addr is not None:
                vcpu.set_register("a2", info_addr)

    def _device_tree(self, vm: AxVM, plan: BootPlan) -> bytes:
        kernel = vm.config.kernel
        initrd = None
        if kernel.ramdisk_path is not None and kernel.ramdisk_load_addr is not None:
            initrd = (kernel.ramdisk_load_addr, kernel.ramdisk_load_addr + kernel.ramdisk_path.stat().st_size)
        virtio = [(d.base_gpa, d.irq_id) for d in vm.config.devices.emu_devices
                  if d.emu_type in {int(t) for t in EmuDeviceType if t.is_virtio}]
        return layout.build_riscv_virt_dtb(
            num_harts=len(vm.vcpus),
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
    """OpenSBI's FW_DYNAMIC firmware finds the next stage through a2 (struct fw_dynamic_info)."""
    return config.kernel.bios_path is not None and "fw_dynamic" in config.kernel.bios_path.name


class _NoTimers:
    def set_mtimecmp(self, hart: int, value: int) -> None:
        pass
