"""Emulated devices built from ``[devices] emu_devices`` entries.

One small builder per device type instead of one long match: the table says which types this
VMM models on which architecture. A type we do not model loads with a warning (accesses to its
range then get the bus's defined all-ones answer), so AxVisor configs still load.

Placement follows the architecture: on x86_64 the UART, isa-debug-exit and the i8042 sit on
the port bus (``base_gpa`` is the first port); elsewhere devices are memory-mapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from axdevice import (
    I8042,
    BaseDeviceOps,
    DebugExit,
    EmuDeviceType,
    IrqLine,
    ScratchRegisters,
    SifiveTest,
    Uart16550,
    Uart16550Mmio,
    Uart16550Port,
    VmControl,
)

from .config import Arch, EmulatedDeviceConfig

OutputSink = Callable[[bytes], object]


@dataclass
class DeviceContext:
    """What a builder may wire a device to."""

    arch: Arch
    irq_line: Callable[[int], IrqLine]
    control: VmControl
    console_output: OutputSink


@dataclass(frozen=True)
class BuiltDevice:
    device: BaseDeviceOps
    bus: str  # "mmio", "port" or "sysreg"
    uart: Uart16550 | None = None


def _console(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    uart = Uart16550(ctx.irq_line(config.irq_id), ctx.console_output)
    if ctx.arch is Arch.X86_64:
        return BuiltDevice(Uart16550Port(uart, config.base_gpa), "port", uart)
    reg_shift = config.cfg_list[0] if config.cfg_list else 0
    return BuiltDevice(Uart16550Mmio(uart, config.base_gpa, reg_shift, config.length), "mmio", uart)


def _debug_exit(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    return BuiltDevice(DebugExit(ctx.control, config.base_gpa), "port")


def _i8042(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    return BuiltDevice(I8042(ctx.control), "port")


def _sifive_test(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    return BuiltDevice(SifiveTest(ctx.control, config.base_gpa, config.length), "mmio")


def _scratch(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    return BuiltDevice(ScratchRegisters(config.base_gpa, config.length), "mmio")


Builder = Callable[[EmulatedDeviceConfig, DeviceContext], BuiltDevice]

BUILDERS: dict[EmuDeviceType, tuple[Builder, frozenset[Arch]]] = {
    EmuDeviceType.Dummy: (_scratch, frozenset(Arch)),
    EmuDeviceType.Console: (_console, frozenset(Arch)),
    EmuDeviceType.DebugExit: (_debug_exit, frozenset({Arch.X86_64})),
    EmuDeviceType.ResetControl: (_i8042, frozenset({Arch.X86_64})),
    EmuDeviceType.PowerControl: (_sifive_test, frozenset(Arch)),
}


class UnsupportedDevice(Exception):
    """An entry names a device this VMM does not model (a warning, not an error)."""


class DeviceConfigError(ValueError):
    """An entry cannot be built as written (an error naming the entry)."""


def build_device(config: EmulatedDeviceConfig, ctx: DeviceContext) -> BuiltDevice:
    try:
        emu_type = EmuDeviceType.parse(config.emu_type)
    except ValueError as error:
        raise DeviceConfigError(str(error)) from None
    entry = BUILDERS.get(emu_type)
    if entry is None:
        raise UnsupportedDevice(f"{emu_type.name} ({int(emu_type):#x}) is not emulated yet; "
                                "guest accesses to its range read all-ones")
    builder, arches = entry
    if ctx.arch not in arches:
        raise DeviceConfigError(f"{emu_type.name} exists only on {', '.join(a.value for a in arches)}, "
                                f"not on {ctx.arch.value}")
    return builder(config, ctx)
