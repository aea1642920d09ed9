"""Emulated devices as sans-IO state machines, the device trait, buses and interrupt lines."""

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
