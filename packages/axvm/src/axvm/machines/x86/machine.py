"""The x86_64 PC machine: COM1, isa-debug-exit, i8042 reset, ACPI PM1a power-off, CMOS RTC, PCI
type-1 ports on the port bus; KVM's in-kernel PIC/IOAPIC/PIT; e820, MP table and long-mode boot set up by the VMM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from axaddrspace import GuestPhysAddr
from axdevice import I8042, AcpiPmControl, CmosRtc, DebugExit, IrqLine, PciConfigPorts, Uart16550, Uart16550Port
from axvcpu.x86 import X86VCpu

from ...config import Arch, AxVMCrateConfig
from ...devices import BuiltDevice, DeviceContext
from ...machine import BootArea, BootPlan
from . import layout
from .bootinfo import boot_info
from .cpu_state import enter_long_mode, enter_protected_mode
from .e820 import e820_map
from .mptable import MAX_MP_CPUS, mp_table
from .tables import write_cpu_tables

if TYPE_CHECKING:
    from ...vm import AxVM

COM1_IRQ = 4
IOAPIC_PINS = 24
"""KVM's in-kernel IOAPIC (KVM_IOAPIC_NUM_PINS): a device's irq_id is one of its pins."""
MP_STATE_RUNNABLE = 0
MP_TABLE_SIZE = 1024
"""The last KiB of base memory, which the MP table may fill."""


class BootLayoutError(ValueError):
    """The configured RAM cannot hold the boot structures (a config problem)."""


class X86Machine:
    arch = Arch.X86_64

    def irq_line(self, vm: AxVM, irq: int) -> IrqLine:
        if not 0 <= irq < IOAPIC_PINS:  # checked here, not only by KVM, so a dry run finds it too
            raise ValueError(f"irq {irq} is not an IOAPIC pin 0..{IOAPIC_PINS - 1}")
        return vm.backend.irq_line(irq)

    def boot_areas(self, config: AxVMCrateConfig) -> Sequence[BootArea]:
        """The boot area at the start of the lowest region, and the MP table where RAM covers it."""
        regions = config.kernel.memory_regions
        areas = [BootArea("the x86 boot structures (GDT, page tables, boot stacks)",
                          layout.boot_base(regions), layout.BOOT_AREA_SIZE)]
        if any(r.gpa <= layout.MP_TABLE and layout.MP_TABLE + MP_TABLE_SIZE <= r.end for r in regions):
            areas.append(BootArea("the MP table", layout.MP_TABLE, MP_TABLE_SIZE))
        return areas

    def platform_devices(self, ctx: DeviceContext) -> Sequence[BuiltDevice]:
        uart = Uart16550(ctx.irq_line(COM1_IRQ), ctx.console_output)
        return (
            BuiltDevice(Uart16550Port(uart, 0x3F8), "port", uart),
            BuiltDevice(DebugExit(ctx.control), "port"),
            BuiltDevice(I8042(ctx.control), "port"),
            BuiltDevice(AcpiPmControl(ctx.control), "port"),
            BuiltDevice(CmosRtc(), "port"),
            BuiltDevice(PciConfigPorts(), "port"),
        )

    def prepare_boot(self, vm: AxVM, plan: BootPlan) -> None:
        regions = [(r.gpa, r.size) for r in vm.config.kernel.memory_regions]
        boot_base = layout.boot_base(vm.config.kernel.memory_regions)
        memory = vm.addrspace.memory
        if not memory.contains(GuestPhysAddr(boot_base), layout.BOOT_AREA_SIZE):
            raise BootLayoutError(f"the lowest RAM region at {boot_base:#x} is smaller than the "
                                  f"{layout.BOOT_AREA_SIZE:#x} bytes of boot structures")
        cpu_count = len(vm.vcpus)
        ram_limit = max(gpa + size for gpa, size in regions)
        write_cpu_tables(memory, boot_base, ram_limit)
        e820 = e820_map(regions)
        if memory.contains(GuestPhysAddr(layout.MP_TABLE), MP_TABLE_SIZE) and cpu_count <= MAX_MP_CPUS:
            memory.write(GuestPhysAddr(layout.MP_TABLE), mp_table(layout.MP_TABLE, cpu_count))
        x86_vcpus = [vcpu for vcpu in vm.vcpus if isinstance(vcpu.arch, X86VCpu)]  # hence the casts below
        if plan.protocol == "raw":
            if cpu_count > layout.MAX_BOOT_VCPUS:
                raise BootLayoutError(f"raw x86 images start with at most {layout.MAX_BOOT_VCPUS} vCPUs")
            cmdline = layout.cmdline_image(plan.cmdline)
            memory.write(GuestPhysAddr(boot_base + layout.CMDLINE), cmdline)
            info = boot_info(cpu_count, e820, boot_base + layout.CMDLINE, len(cmdline) - 1)
            memory.write(GuestPhysAddr(boot_base + layout.BOOT_INFO), info)
            for vcpu in x86_vcpus:
                stack_top = boot_base + layout.STACKS + (vcpu.id + 1) * layout.STACK_SIZE
                enter_long_mode(cast(X86VCpu, vcpu.arch), boot_base=boot_base, entry=plan.entry, rsp=stack_top,
                                rsi=boot_base + layout.BOOT_INFO, rdi=vcpu.id)
                if vcpu.id and hasattr(vcpu.arch, "set_mp_state"):
                    vcpu.arch.set_mp_state(MP_STATE_RUNNABLE)  # raw images start every vCPU at once
        elif plan.protocol == "linux":
            for vcpu in x86_vcpus[:1]:
                enter_long_mode(cast(X86VCpu, vcpu.arch), boot_base=boot_base, entry=plan.entry,
                                rsp=boot_base + layout.STACKS + layout.STACK_SIZE, rsi=plan.params or 0)
        elif plan.protocol == "pvh":
            for vcpu in x86_vcpus[:1]:
                enter_protected_mode(cast(X86VCpu, vcpu.arch), boot_base=boot_base, entry=plan.entry,
                                     rbx=plan.params or 0)
        else:
            raise BootLayoutError(f"x86_64 has no boot protocol {plan.protocol!r}")
