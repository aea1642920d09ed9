"""The x86_64 PC machine: COM1, isa-debug-exit, i8042 reset, ACPI PM1a power-off, CMOS RTC, PCI
type-1 ports on the port bus; KVM's in-kernel PIC/IOAPIC/PIT; e820, MP table and long-mode boot set up by the VMM.

AxVisor's hypercalls: ``vmcall`` never reaches the VMM on KVM (the kernel answers it), so a guest
rings ``HYPERCALL_PORT`` instead: the code in rax, arguments in rdi, rsi, rdx, rcx (AxVisor's x86
registers, as for vmcall), then ``out %eax, $0xe0`` (the immediate form: rdx carries an argument,
so the port cannot be in dx); the result comes back in rax (``hypercalls``). No device sits
there, and the port is never a quiet one.

Device interrupts are the backend's numbered lines (the ``IrqLines`` capability): a backend
without them cannot run this machine, which says so (``MissingCapability``). Everything in the
boot area is written here at boot: GDT, TSS, page tables, the command line, and the boot info
(raw images), Linux zero page or PVH start_info that the boot plan's ``params`` names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from axaddrspace import GuestPhysAddr
from axdevice import I8042, AcpiPmControl, CmosRtc, DebugExit, IrqLine, PciConfigPorts, Uart16550, Uart16550Port
from axvcpu import Hypercall, VCpu
from axvcpu.x86 import X86VCpu

from ...config import Arch, AxVMCrateConfig
from ...device_manager import BusKind
from ...devices import BuiltDevice, DeviceContext
from ...machine import BootArea, BootPlan, BootTarget
from . import layout
from .bootinfo import boot_info
from .cpu_state import enter_long_mode, enter_protected_mode
from .e820 import e820_map
from .linux import boot_params, minimal_setup_header
from .mptable import MAX_MP_CPUS, mp_table
from .notify import notify_through_backend
from .pvh import start_info
from .tables import write_cpu_tables

COM1_IRQ = 4
IOAPIC_PINS = 24
"""KVM's in-kernel IOAPIC (KVM_IOAPIC_NUM_PINS): a device's irq_id is one of its pins."""
MP_STATE_RUNNABLE = 0
HYPERCALL_PORT = 0xE0
"""The hypercall doorbell (a write of any width): below 0x100 for ``out``'s immediate form, and a
port neither this machine, QEMU's PC machines nor Linux's delays (0x80, 0xed) use."""
HYPERCALL_ARGS = ("rdi", "rsi", "rdx", "rcx")
MP_TABLE_SIZE = 1024
"""The last KiB of base memory, which the MP table may fill."""


class BootLayoutError(ValueError):
    """The configured RAM cannot hold the boot structures (a config problem)."""


@runtime_checkable
class _MpStateVCpu(Protocol):
    """A vCPU whose run state can be set (KVM's KVM_SET_MP_STATE): how raw images start every
    vCPU at once instead of leaving application processors waiting for a SIPI."""

    def set_mp_state(self, mp_state: int) -> None: ...


def params_address(config: AxVMCrateConfig) -> int:
    """Where the machine writes the boot info, zero page or start_info: a boot plan's ``params``."""
    return layout.boot_base(config.kernel.memory_regions) + layout.BOOT_INFO


class X86Machine:
    arch = Arch.X86_64
    hypercall_port = HYPERCALL_PORT

    def doorbell_call(self, vcpu: VCpu) -> Hypercall:
        """The hypercall a doorbell write makes, from the vCPU's registers (``HypercallDoorbell``)."""
        return Hypercall(vcpu.get_register("rax"), tuple(vcpu.get_register(name) for name in HYPERCALL_ARGS))

    def irq_line(self, target: BootTarget, irq: int) -> IrqLine:
        if not 0 <= irq < IOAPIC_PINS:  # checked here, not only by KVM, so a dry run finds it too
            raise ValueError(f"irq {irq} is not an IOAPIC pin 0..{IOAPIC_PINS - 1}")
        return target.backend.need_irq_lines("the x86_64 machine (its IOAPIC pins)").irq_line(irq)

    def boot_areas(self, config: AxVMCrateConfig) -> Sequence[BootArea]:
        """The boot area at the start of the lowest region, and the MP table where RAM covers it."""
        regions = config.kernel.memory_regions
        areas = [BootArea("the x86 boot structures (GDT, page tables, boot stacks)",
                          layout.boot_base(regions), layout.BOOT_AREA_SIZE)]
        if any(r.gpa <= layout.MP_TABLE and layout.MP_TABLE + MP_TABLE_SIZE <= r.end for r in regions):
            areas.append(BootArea("the MP table", layout.MP_TABLE, MP_TABLE_SIZE))
        return areas

    def platform_devices(self, target: BootTarget, ctx: DeviceContext) -> Sequence[BuiltDevice]:
        """Also hands the config's virtio queue notifications to the backend where it can serve
        them without a vCPU exit (KVM ioeventfd, see notify.py): the config's devices are
        attached by now, the machine's own have no queues."""
        events = target.backend.write_events
        if events is not None and notify_through_backend(target.devices, events):
            ctx.on_stop.insert(0, events.stop_write_events)  # before anything those callbacks reach is released
        uart = Uart16550(ctx.irq_line(COM1_IRQ), ctx.console_output)
        return (
            BuiltDevice(Uart16550Port(uart, 0x3F8), BusKind.PORT, uart, irqs=(COM1_IRQ,)),
            BuiltDevice(DebugExit(ctx.control), BusKind.PORT),
            BuiltDevice(I8042(ctx.control), BusKind.PORT),
            BuiltDevice(AcpiPmControl(ctx.control), BusKind.PORT),
            BuiltDevice(CmosRtc(), BusKind.PORT),
            BuiltDevice(PciConfigPorts(), BusKind.PORT),
        )

    def prepare_boot(self, target: BootTarget, plan: BootPlan) -> None:
        """Also tells a backend that can answer them itself which ports have no device (the
        guest's port 0x80 delays and probes then cost no trip through Python after the first)."""
        quiet = target.backend.quiet_ports
        if quiet is not None:
            bitmap = bytearray(target.devices.ports_without_devices())
            bitmap[HYPERCALL_PORT // 8] &= ~(1 << HYPERCALL_PORT % 8)  # the doorbell must exit to the VMM
            quiet.set_quiet_ports(bytes(bitmap), target.devices.count_port_misses)
        config, memory = target.config, target.memory
        regions = [(r.gpa, r.size) for r in config.kernel.memory_regions]
        boot_base = layout.boot_base(config.kernel.memory_regions)
        if not memory.contains(GuestPhysAddr(boot_base), layout.BOOT_AREA_SIZE):
            raise BootLayoutError(f"the lowest RAM region at {boot_base:#x} is smaller than the "
                                  f"{layout.BOOT_AREA_SIZE:#x} bytes of boot structures")
        cpu_count = len(target.vcpus)
        ram_limit = max(gpa + size for gpa, size in regions)
        write_cpu_tables(memory, boot_base, ram_limit)
        e820 = e820_map(regions)
        if memory.contains(GuestPhysAddr(layout.MP_TABLE), MP_TABLE_SIZE) and cpu_count <= MAX_MP_CPUS:
            memory.write(GuestPhysAddr(layout.MP_TABLE), mp_table(layout.MP_TABLE, cpu_count))
        cmdline = layout.cmdline_image(plan.cmdline)
        cmdline_gpa, params_gpa = boot_base + layout.CMDLINE, params_address(config)
        memory.write(GuestPhysAddr(cmdline_gpa), cmdline)
        x86_vcpus = [(vcpu.id, vcpu.arch) for vcpu in target.vcpus if isinstance(vcpu.arch, X86VCpu)]
        if plan.protocol == "raw":
            if cpu_count > layout.MAX_BOOT_VCPUS:
                raise BootLayoutError(f"raw x86 images start with at most {layout.MAX_BOOT_VCPUS} vCPUs")
            memory.write(GuestPhysAddr(params_gpa), boot_info(cpu_count, e820, cmdline_gpa, len(cmdline) - 1))
            for vcpu_id, arch in x86_vcpus:
                stack_top = boot_base + layout.STACKS + (vcpu_id + 1) * layout.STACK_SIZE
                enter_long_mode(arch, boot_base=boot_base, entry=plan.entry, rsp=stack_top, rsi=params_gpa,
                                rdi=vcpu_id)
                if vcpu_id and isinstance(arch, _MpStateVCpu):
                    arch.set_mp_state(MP_STATE_RUNNABLE)  # raw images start every vCPU at once
        elif plan.protocol == "linux":
            header = plan.setup_header if plan.setup_header is not None else minimal_setup_header()
            memory.write(GuestPhysAddr(params_gpa),
                         boot_params(header, cmdline_gpa=cmdline_gpa, initrd=_initrd(config), e820=e820))
            for _, arch in x86_vcpus[:1]:
                enter_long_mode(arch, boot_base=boot_base, entry=plan.entry,
                                rsp=boot_base + layout.STACKS + layout.STACK_SIZE, rsi=params_gpa)
        elif plan.protocol == "pvh":
            memory.write(GuestPhysAddr(params_gpa), start_info(params_gpa, cmdline_gpa, e820))
            for _, arch in x86_vcpus[:1]:
                enter_protected_mode(arch, boot_base=boot_base, entry=plan.entry, rbx=params_gpa)
        else:
            raise BootLayoutError(f"x86_64 has no boot protocol {plan.protocol!r}")


def _initrd(config: AxVMCrateConfig) -> tuple[int, int] | None:
    """(address, size) of the loaded ramdisk, for the zero page."""
    kernel = config.kernel
    if kernel.ramdisk_path is None or kernel.ramdisk_load_addr is None:
        return None
    return kernel.ramdisk_load_addr, kernel.ramdisk_path.stat().st_size
