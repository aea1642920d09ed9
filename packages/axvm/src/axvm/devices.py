"""Emulated devices built from ``[devices] emu_devices`` entries.

One small builder per device type instead of one long match: the table says which types this
VMM models on which architecture. A type we do not model loads with a warning (accesses to its
range then get the bus's defined all-ones answer), so AxVisor configs still load.

Placement follows the architecture: on x86_64 the UART, isa-debug-exit and the i8042 sit on
the port bus (``base_gpa`` is the first port); elsewhere devices are memory-mapped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from axaddrspace import GuestMemory
from axdevice import (
    BaseDeviceOps,
    EmuDeviceType,
    IrqLine,
    ScratchRegisters,
    SifiveTest,
    Uart16550,
    Uart16550Mmio,
    Uart16550Port,
    VmControl,
)

from .config import Arch, AxVMCrateConfig, EmulatedDeviceConfig
from .device_manager import BusKind
from .host import HostResources, LocalHost

if TYPE_CHECKING:
    from axdevice import Pl011, RxResult, VirtioConsole, VirtioDevice

# The x86-only and virtio devices are imported by their builders: a VM loads the modules of the
# devices it has (axdevice imports each name on first use), which is start-up time saved.

OutputSink = Callable[[bytes], object]


@dataclass
class DeviceContext:
    """What a builder may wire a device to."""

    arch: Arch
    irq_line: Callable[[int], IrqLine]
    control: VmControl
    console_output: OutputSink
    memory: GuestMemory | None = None
    host: HostResources = field(default_factory=LocalHost)
    config: AxVMCrateConfig | None = None
    device_lock: threading.Lock = field(default_factory=threading.Lock)
    on_stop: list[Callable[[], object]] = field(default_factory=list)
    """What to release when the VM stops (disk files, network links)."""


@dataclass(frozen=True)
class BuiltDevice:
    device: BaseDeviceOps
    bus: BusKind
    uart: Uart16550 | Pl011 | None = None
    """A UART the console types into (its ``push_input``)."""
    virtio_console: VirtioConsole | None = None
    irqs: tuple[int, ...] = ()
    """The interrupts the device drives: the device manager allots each to it alone."""
    shared_irqs: bool = False
    """The device may share its interrupts with others that say so too (level-triggered lines
    whose drivers check every device on the line)."""


def _console(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    uart = Uart16550(ctx.irq_line(config.irq_id), ctx.console_output)
    irqs = (config.irq_id,)
    if ctx.arch is Arch.X86_64:
        return BuiltDevice(Uart16550Port(uart, config.base_gpa), BusKind.PORT, uart, irqs=irqs)
    reg_shift = config.cfg_list[0] if config.cfg_list else 0
    return BuiltDevice(Uart16550Mmio(uart, config.base_gpa, reg_shift, config.length), BusKind.MMIO, uart, irqs=irqs)


def _debug_exit(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    from axdevice import DebugExit

    return BuiltDevice(DebugExit(ctx.control, config.base_gpa), BusKind.PORT)


def _i8042(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    from axdevice import I8042

    return BuiltDevice(I8042(ctx.control), BusKind.PORT)


def _sifive_test(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    return BuiltDevice(SifiveTest(ctx.control, config.base_gpa, config.length), BusKind.MMIO)


def _scratch(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    return BuiltDevice(ScratchRegisters(config.base_gpa, config.length), BusKind.MMIO)


def _virtio(config: EmulatedDeviceConfig, ctx: DeviceContext, device: VirtioDevice,
            virtio_console: VirtioConsole | None = None) -> BuiltDevice:
    from axdevice import VirtioMmioTransport

    if ctx.memory is None:
        raise DeviceConfigError("virtio devices need the VM's guest memory")
    transport = VirtioMmioTransport(config.base_gpa, device, ctx.memory, ctx.irq_line(config.irq_id), config.length)
    return BuiltDevice(transport, BusKind.MMIO, virtio_console=virtio_console, irqs=(config.irq_id,))


def _virtio_blk(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    """The disk is ``[kernel] disk_path`` (AxVisor's key); ``cfg_list = [1]`` attaches it read-only."""
    from axdevice import DiskImageError, VirtioBlk

    path = ctx.config.kernel.disk_path if ctx.config is not None else None
    if path is None:
        raise DeviceConfigError("a virtio-blk device needs kernel.disk_path (the disk image file)")
    read_only = bool(config.cfg_list and config.cfg_list[0])
    try:
        disk = ctx.host.open_disk(path, read_only)
    except DiskImageError as error:  # not a disk (directory, FIFO, empty), or in use by another VM
        raise DeviceConfigError(f"kernel.disk_path: {error}") from None
    except OSError as error:
        raise DeviceConfigError(f"kernel.disk_path {path}: {error.strerror}; expected a readable"
                                f"{'' if read_only else ' and writable'} disk image") from None
    ctx.on_stop.append(disk.close)
    return _virtio(config, ctx, VirtioBlk(disk))


def _virtio_console(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    from axdevice import VirtioConsole

    console = VirtioConsole(ctx.console_output)
    return _virtio(config, ctx, console, virtio_console=console)


def _virtio_rng(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    from axdevice import VirtioRng

    return _virtio(config, ctx, VirtioRng(ctx.host.entropy))


def _virtio_net(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    """The host side comes from ``[devices] netdevs.<name>``; the MAC from the VM id and base."""
    from axdevice import VirtioNet

    specs = dict(ctx.config.devices.netdevs) if ctx.config is not None else {}
    spec = specs.get(config.name)
    if spec is None:
        raise DeviceConfigError(f"virtio-net {config.name!r} needs devices.netdevs.{config.name} "
                                '(e.g. "tap:axtap0" or "udp:127.0.0.1:5000:127.0.0.1:5001")')
    try:
        link = ctx.host.open_netdev(spec)
    except (OSError, ValueError) as error:
        raise DeviceConfigError(f"devices.netdevs.{config.name} = {spec!r}: {error}") from None
    vm_id = ctx.config.base.id if ctx.config is not None else 0
    mac = bytes([0x52, 0x54, 0x00, vm_id & 0xFF, (config.base_gpa >> 12) & 0xFF, config.irq_id & 0xFF])
    net = VirtioNet(link, mac, on_rx_buffers=link.rx_ready)
    lock = ctx.device_lock

    def deliver(frame: bytes) -> RxResult:
        with lock:
            return net.receive_frame(frame)

    link.start(deliver)
    ctx.on_stop.append(link.close)
    return _virtio(config, ctx, net)


Builder = Callable[[EmulatedDeviceConfig, DeviceContext], BuiltDevice]

BUILDERS: dict[EmuDeviceType, tuple[Builder, frozenset[Arch]]] = {
    EmuDeviceType.Dummy: (_scratch, frozenset(Arch)),
    EmuDeviceType.Console: (_console, frozenset(Arch)),
    EmuDeviceType.DebugExit: (_debug_exit, frozenset({Arch.X86_64})),
    EmuDeviceType.ResetControl: (_i8042, frozenset({Arch.X86_64})),
    EmuDeviceType.PowerControl: (_sifive_test, frozenset(Arch)),
    EmuDeviceType.VirtioBlk: (_virtio_blk, frozenset(Arch)),
    EmuDeviceType.VirtioConsole: (_virtio_console, frozenset(Arch)),
    EmuDeviceType.VirtioRng: (_virtio_rng, frozenset(Arch)),
    EmuDeviceType.VirtioNet: (_virtio_net, frozenset(Arch)),
}


MACHINE_STAND_INS: dict[tuple[EmuDeviceType, Arch], str] = {
    (EmuDeviceType.X86IoApic, Arch.X86_64): "the x86 machine's own IOAPIC (KVM's in-kernel one at 0xfec00000)",
    (EmuDeviceType.X86Pit, Arch.X86_64): "the x86 machine's own 8254 PIT (KVM's in-kernel one)",
    (EmuDeviceType.PPPTGlobal, Arch.RISCV64): "the riscv virt machine's own PLIC at 0xc000000",
}
"""AxVisor device types a machine here provides itself: the entry is not built, the machine's
device serves the guest (AxVisor's configs list them because AxVisor's VMs start empty)."""


class UnsupportedDevice(Exception):
    """An entry names a device this VMM does not model (a warning, not an error)."""


class DeviceConfigError(ValueError):
    """An entry cannot be built as written (an error naming the entry, and ``field`` when one
    field of it is the culprit)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def build_device(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    try:
        emu_type = EmuDeviceType.parse(config.emu_type)
    except ValueError as error:
        raise DeviceConfigError(str(error), field="emu_type") from None
    entry = BUILDERS.get(emu_type)
    stand_in = MACHINE_STAND_INS.get((emu_type, ctx.arch))
    if entry is None and stand_in is not None:
        raise UnsupportedDevice(f"{emu_type.name} ({int(emu_type):#x}) is not built from the entry: {stand_in} "
                                "serves the guest instead")
    if entry is None:
        raise UnsupportedDevice(f"{emu_type.name} ({int(emu_type):#x}) is not emulated yet; "
                                "guest accesses to its range read all-ones")
    builder, arches = entry
    if ctx.arch not in arches:
        raise DeviceConfigError(f"{emu_type.name} exists only on {', '.join(a.value for a in arches)}, "
                                f"not on {ctx.arch.value}", field="emu_type")
    try:
        return builder(config, ctx)
    except DeviceConfigError:
        raise
    except ValueError as error:  # a device model refusing a value from the entry (a length, a shift)
        raise DeviceConfigError(str(error)) from None
