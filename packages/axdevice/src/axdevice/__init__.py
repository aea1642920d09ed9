"""Emulated devices as sans-IO state machines, the device trait, buses and interrupt lines.

Each name is imported on first use (PEP 562): a VM loads the modules of the devices it has, so
``axvisor run`` of a VM without them does not pay for them at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .acpi_pm import AcpiPmControl
    from .bus import DeviceOverlapError, MmioBus, PortBus, SysRegBus
    from .callback_device import CallbackDevice
    from .clint import MTIME_FREQ_HZ, Clint, ClintState, HartTimers, RecordingHartTimers
    from .control import RecordingVmControl, VmControl
    from .debug_exit import DebugExit
    from .device import BaseDeviceOps
    from .gicv2 import Gicv2, ppi_intid, spi_intid
    from .gicv2_state import GicCpuState, GicState
    from .gicv2_windows import GicCpuInterfaceWindow, GicDistributorWindow, GicInputLine
    from .i8042 import I8042
    from .irq import IrqLine, NullIrqLine, RecordingIrqLine
    from .pci_host import PciConfigPorts
    from .pl011 import Pl011, Pl011State
    from .pl031 import Pl031, Pl031State
    from .plic import Plic, PlicSource, PlicState
    from .rtc import CmosRtc
    from .scratch import ScratchRegisters
    from .sifive_test import SifiveTest
    from .types import EmuDeviceType
    from .uart16550 import RX_FIFO_SIZE, Uart16550, UartState
    from .uart_devices import Uart16550Mmio, Uart16550Port
    from .virtio import (
        BlockBackend,
        DescriptorChain,
        DiskImageError,
        DiskInUseError,
        NetBackend,
        QueueError,
        RawFileBackend,
        RecordingNetBackend,
        RxResult,
        SplitQueue,
        VirtioBlk,
        VirtioConsole,
        VirtioDevice,
        VirtioMmioTransport,
        VirtioNet,
        VirtioRng,
    )

_MODULE_OF = {
    "AcpiPmControl": "acpi_pm",
    "DeviceOverlapError": "bus",
    "MmioBus": "bus",
    "PortBus": "bus",
    "SysRegBus": "bus",
    "CallbackDevice": "callback_device",
    "MTIME_FREQ_HZ": "clint",
    "Clint": "clint",
    "ClintState": "clint",
    "HartTimers": "clint",
    "RecordingHartTimers": "clint",
    "RecordingVmControl": "control",
    "VmControl": "control",
    "DebugExit": "debug_exit",
    "BaseDeviceOps": "device",
    "Gicv2": "gicv2",
    "ppi_intid": "gicv2",
    "spi_intid": "gicv2",
    "GicCpuState": "gicv2_state",
    "GicState": "gicv2_state",
    "GicCpuInterfaceWindow": "gicv2_windows",
    "GicDistributorWindow": "gicv2_windows",
    "GicInputLine": "gicv2_windows",
    "I8042": "i8042",
    "IrqLine": "irq",
    "NullIrqLine": "irq",
    "RecordingIrqLine": "irq",
    "PciConfigPorts": "pci_host",
    "Pl011": "pl011",
    "Pl011State": "pl011",
    "Pl031": "pl031",
    "Pl031State": "pl031",
    "Plic": "plic",
    "PlicSource": "plic",
    "PlicState": "plic",
    "CmosRtc": "rtc",
    "ScratchRegisters": "scratch",
    "SifiveTest": "sifive_test",
    "EmuDeviceType": "types",
    "RX_FIFO_SIZE": "uart16550",
    "Uart16550": "uart16550",
    "UartState": "uart16550",
    "Uart16550Mmio": "uart_devices",
    "Uart16550Port": "uart_devices",
    "BlockBackend": "virtio",
    "DescriptorChain": "virtio",
    "DiskImageError": "virtio",
    "DiskInUseError": "virtio",
    "NetBackend": "virtio",
    "QueueError": "virtio",
    "RawFileBackend": "virtio",
    "RecordingNetBackend": "virtio",
    "RxResult": "virtio",
    "SplitQueue": "virtio",
    "VirtioBlk": "virtio",
    "VirtioConsole": "virtio",
    "VirtioDevice": "virtio",
    "VirtioMmioTransport": "virtio",
    "VirtioNet": "virtio",
    "VirtioRng": "virtio",
}
"""Where each exported name lives, imported on its first use."""

__all__ = [
    "CallbackDevice",
    "AcpiPmControl",
    "ScratchRegisters",
    "I8042",
    "RX_FIFO_SIZE",
    "BaseDeviceOps",
    "CmosRtc",
    "DebugExit",
    "DeviceOverlapError",
    "EmuDeviceType",
    "IrqLine",
    "MmioBus",
    "NullIrqLine",
    "PciConfigPorts",
    "PortBus",
    "RecordingIrqLine",
    "RecordingVmControl",
    "SifiveTest",
    "SysRegBus",
    "Uart16550",
    "Uart16550Mmio",
    "Uart16550Port",
    "UartState",
    "VmControl",
    "MTIME_FREQ_HZ",
    "Clint",
    "ClintState",
    "HartTimers",
    "RecordingHartTimers",
    "Plic",
    "PlicSource",
    "PlicState",
    "Pl011",
    "Pl011State",
    "Pl031",
    "Pl031State",
    "Gicv2",
    "GicState",
    "GicCpuState",
    "GicInputLine",
    "GicDistributorWindow",
    "GicCpuInterfaceWindow",
    "spi_intid",
    "ppi_intid",
    "BlockBackend",
    "DescriptorChain",
    "DiskImageError",
    "DiskInUseError",
    "NetBackend",
    "QueueError",
    "RawFileBackend",
    "RecordingNetBackend",
    "RxResult",
    "SplitQueue",
    "VirtioBlk",
    "VirtioConsole",
    "VirtioDevice",
    "VirtioMmioTransport",
    "VirtioNet",
    "VirtioRng",
]


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value
