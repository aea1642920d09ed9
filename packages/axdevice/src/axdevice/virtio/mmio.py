"""The virtio-mmio transport, version 2 (virtio 1.2, section 4.2).

Theory of operation. A window of ``size`` bytes (0x1000 on QEMU's riscv and arm virt machines):
32-bit control registers below 0x100 (4.2.2, table below), the device's configuration space
from 0x100. The driver identifies the device (MagicValue "virt", Version 2, DeviceID), reads
the offered features 32 bits at a time through DeviceFeaturesSel, writes the ones it accepts,
sets FEATURES_OK and reads Status back to see whether the device agreed, sets up each queue
(QueueSel, QueueNum, the three ring addresses, QueueReady = 1) and sets DRIVER_OK, at which
point the device is activated with its queues. QueueNotify kicks a queue; the device serves it
inline, on the notifying vCPU's thread.

Interrupts: InterruptStatus bit 0 (used buffer) and bit 1 (configuration change) drive the
IrqLine as a level: high while InterruptStatus != 0, lowered when InterruptACK clears the
last bit (Linux's vm_interrupt reads the status, acks it, then serves the queues).

Status (3.1.1) is a set of bits the driver adds in order; this transport enforces the order
in one helper, ``_write_status``, from this table (a bit whose prerequisite is missing is not
set, and the driver sees that when it reads Status back):

    bit            may be set once Status has   and
    ACKNOWLEDGE    (nothing)
    DRIVER         ACKNOWLEDGE
    FEATURES_OK    DRIVER                       driver features offered, VERSION_1 among them
    DRIVER_OK      FEATURES_OK                  DEVICE_NEEDS_RESET clear (activates the device)
    FAILED         (nothing)

Writing 0 resets the device: queues, features, interrupt status (the line drops) and the
device's own state. Bits are never cleared otherwise. DEVICE_NEEDS_RESET belongs to the
device: it is set when the driver breaks the ring rules (a ``QueueError``), with a
configuration-change interrupt once DRIVER_OK is set, and the device stays stopped until reset.

Departures and choices, documented because a guest can observe them:
- Registers answer only 32-bit aligned accesses (4.2.2.2 requires drivers to use them); other
  widths or offsets read 0 and their writes are dropped. The config space takes any width.
- Write-only registers read 0; writes to read-only registers are dropped.
- Queue settings written while the queue is ready, and driver features written after
  FEATURES_OK, are dropped.
- VendorID is 0x554D4551 ("QEMU", as QEMU reports): the images we run were tested against it,
  and no guest driver we target treats a vendor specially.
- There are no shared memory regions: SHMLen and SHMBase read all ones (length -1, 4.2.2).
- VIRTIO_F_RING_RESET is not offered, so QueueReset reads 0 and ignores writes.
"""

from __future__ import annotations

import logging

from axaddrspace import AccessWidth, AddrRange, GuestMemory

from ..device import BaseDeviceOps
from ..irq import IrqLine
from ..types import EmuDeviceType
from .constants import (
    SUPPORTED_TRANSPORT_FEATURES,
    TRANSPORT_FEATURE_BITS,
    VIRTIO_F_EVENT_IDX,
    VIRTIO_F_INDIRECT_DESC,
    VIRTIO_F_VERSION_1,
    DeviceStatus,
    bit,
)
from .device import VirtioDevice
from .queue import QueueError, SplitQueue
from .state import VirtioMmioState

logger = logging.getLogger(__name__)

MAGIC_VALUE = 0x74726976  # "virt" little-endian
VERSION = 2  # the virtio 1.x register layout (1 was the legacy one)
VENDOR_ID = 0x554D4551  # "QEMU"
DEFAULT_WINDOW = 0x1000

# Register offsets (4.2.2, table 4.1).
MAGIC = 0x000
VERSION_REG = 0x004
DEVICE_ID = 0x008
VENDOR = 0x00C
DEVICE_FEATURES = 0x010
DEVICE_FEATURES_SEL = 0x014
DRIVER_FEATURES = 0x020
DRIVER_FEATURES_SEL = 0x024
QUEUE_SEL = 0x030
QUEUE_NUM_MAX = 0x034
QUEUE_NUM = 0x038
QUEUE_READY = 0x044
QUEUE_NOTIFY = 0x050
INTERRUPT_STATUS = 0x060
INTERRUPT_ACK = 0x064
STATUS = 0x070
QUEUE_DESC_LOW = 0x080
QUEUE_DESC_HIGH = 0x084
QUEUE_DRIVER_LOW = 0x090
QUEUE_DRIVER_HIGH = 0x094
QUEUE_DEVICE_LOW = 0x0A0
QUEUE_DEVICE_HIGH = 0x0A4
SHM_SEL = 0x0AC
SHM_LEN_LOW = 0x0B0
SHM_LEN_HIGH = 0x0B4
SHM_BASE_LOW = 0x0B8
SHM_BASE_HIGH = 0x0BC
QUEUE_RESET = 0x0C0
CONFIG_GENERATION = 0x0FC
CONFIG = 0x100

INT_USED_BUFFER = 1
INT_CONFIG_CHANGE = 2
_INT_MASK = INT_USED_BUFFER | INT_CONFIG_CHANGE

_DRIVER_STATUS_BITS = (
    DeviceStatus.ACKNOWLEDGE,
    DeviceStatus.DRIVER,
    DeviceStatus.FEATURES_OK,
    DeviceStatus.DRIVER_OK,
    DeviceStatus.FAILED,
)
_STATUS_REQUIRES = {
    DeviceStatus.ACKNOWLEDGE: 0,
    DeviceStatus.DRIVER: DeviceStatus.ACKNOWLEDGE,
    DeviceStatus.FEATURES_OK: DeviceStatus.DRIVER,
    DeviceStatus.DRIVER_OK: DeviceStatus.FEATURES_OK,
    DeviceStatus.FAILED: 0,
}
_ALL_STATUS = sum(DeviceStatus)
_FEATURE_WORDS = 2  # offered features fit in 64 bits (the highest reserved bit is 41)

# Each 32-bit half of a 64-bit ring address: (QueueState attribute, shift).
_ADDRESS_REGISTERS = {
    QUEUE_DESC_LOW: ("desc_addr", 0),
    QUEUE_DESC_HIGH: ("desc_addr", 32),
    QUEUE_DRIVER_LOW: ("avail_addr", 0),
    QUEUE_DRIVER_HIGH: ("avail_addr", 32),
    QUEUE_DEVICE_LOW: ("used_addr", 0),
    QUEUE_DEVICE_HIGH: ("used_addr", 32),
}


class VirtioMmioTransport(BaseDeviceOps):
    """A virtio device on the MMIO bus at ``base``, interrupting through ``irq``."""

    def __init__(
        self, base: int, device: VirtioDevice, memory: GuestMemory, irq: IrqLine, size: int = DEFAULT_WINDOW
    ) -> None:
        if size < CONFIG + len(device.config_space()):
            raise ValueError(f"virtio-mmio window of {size:#x} bytes cannot hold the registers and config space")
        offered = device.features | bit(VIRTIO_F_VERSION_1)
        transport_bits = sum(bit(n) for n in TRANSPORT_FEATURE_BITS)
        unsupported = offered & transport_bits & ~SUPPORTED_TRANSPORT_FEATURES
        if unsupported:
            raise ValueError(f"{type(device).__name__} offers transport features {unsupported:#x} not implemented")
        self.base = base
        self.device = device
        self.memory = memory
        self._irq = irq
        self._range = AddrRange.from_start_size(base, size)
        self.device_features = offered
        self.queues = tuple(SplitQueue(memory, device.queue_max_size) for _ in range(device.num_queues))
        self._irq_level = False
        self.config_generation = 0
        self.queue_errors = 0
        self.refused_status_writes = 0
        self._reset_registers()
        device.attach(self)

    def _reset_registers(self) -> None:
        self.status = 0
        self.device_features_sel = 0
        self.driver_features = 0
        self.driver_features_sel = 0
        self._unknown_driver_features = False  # set a bit in a word above the offered 64
        self.queue_sel = 0
        self.interrupt_status = 0
        for queue in self.queues:
            queue.reset()
        self._update_irq()

    def reset(self) -> None:
        """What a driver's write of 0 to Status does; also the VM's reset."""
        self.device.reset()
        self._reset_registers()

    # -- BaseDeviceOps ----------------------------------------------------------------------------

    @property
    def emu_type(self) -> EmuDeviceType:
        return self.device.emu_type

    @property
    def address_range(self) -> AddrRange:
        return self._range

    @property
    def irq_level(self) -> bool:
        return self._irq_level

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        offset = addr - self.base
        if offset >= CONFIG:
            return self.device.read_config(offset - CONFIG, width)
        if width != AccessWidth.DWORD or offset & 3:
            return 0
        return self._read_register(offset)

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        offset = addr - self.base
        if offset >= CONFIG:
            self.device.write_config(offset - CONFIG, width, value)
        elif width == AccessWidth.DWORD and not offset & 3:
            self._write_register(offset, value & 0xFFFFFFFF)

    # -- registers ------------------------------------------------------------------------------------

    def _selected_queue(self) -> SplitQueue | None:
        return self.queues[self.queue_sel] if self.queue_sel < len(self.queues) else None

    def _read_register(self, offset: int) -> int:
        queue = self._selected_queue()
        if offset == MAGIC:
            return MAGIC_VALUE
        if offset == VERSION_REG:
            return VERSION
        if offset == DEVICE_ID:
            return self.device.device_id
        if offset == VENDOR:
            return VENDOR_ID
        if offset == DEVICE_FEATURES:
            if self.device_features_sel >= _FEATURE_WORDS:
                return 0
            return (self.device_features >> (32 * self.device_features_sel)) & 0xFFFFFFFF
        if offset == QUEUE_NUM_MAX:
            return queue.max_size if queue is not None else 0
        if offset == QUEUE_READY:
            return int(queue is not None and queue.ready)
        if offset == INTERRUPT_STATUS:
            return self.interrupt_status
        if offset == STATUS:
            return self.status
        if offset in (SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH):
            return 0xFFFFFFFF
        if offset == CONFIG_GENERATION:
            return self.config_generation
        return 0  # write-only, reserved, or QueueReset (RING_RESET not offered)

    def _write_register(self, offset: int, value: int) -> None:
        if offset == DEVICE_FEATURES_SEL:
            self.device_features_sel = value
        elif offset == DRIVER_FEATURES_SEL:
            self.driver_features_sel = value
        elif offset == DRIVER_FEATURES:
            self._write_driver_features(value)
        elif offset == QUEUE_SEL:
            self.queue_sel = value
        elif offset == QUEUE_NOTIFY:
            if self.status & DeviceStatus.DRIVER_OK and not self.status & DeviceStatus.DEVICE_NEEDS_RESET:
                self.device.notify(value)
        elif offset == INTERRUPT_ACK:
            self.interrupt_status &= ~value
            self._update_irq()
        elif offset == STATUS:
            if value == 0:
                self.reset()
            else:
                self._write_status(value)
        else:
            self._write_queue_register(offset, value)

    def _write_driver_features(self, value: int) -> None:
        if self.status & DeviceStatus.FEATURES_OK:
            return  # the negotiation is over (3.1.1)
        sel = self.driver_features_sel
        if sel >= _FEATURE_WORDS:
            self._unknown_driver_features |= value != 0
            return
        shift = 32 * sel
        self.driver_features = (self.driver_features & ~(0xFFFFFFFF << shift)) | (value << shift)

    def _write_queue_register(self, offset: int, value: int) -> None:
        queue = self._selected_queue()
        if queue is None:
            return
        if offset == QUEUE_READY:
            if not value & 1:
                queue.disable()
            elif not queue.ready:
                try:
                    queue.enable()
                except QueueError as error:
                    self.device_failed(error)
            return
        if queue.ready:
            return  # 4.2.3.2: the driver configures a queue before making it ready
        if offset == QUEUE_NUM:
            queue.size = value
        elif offset in _ADDRESS_REGISTERS:
            name, shift = _ADDRESS_REGISTERS[offset]
            old = getattr(queue, name)
            setattr(queue, name, (old & ~(0xFFFFFFFF << shift)) | (value << shift))

    def _write_status(self, value: int) -> None:
        """Add the driver's new status bits that the table in the module doc allows."""
        for flag in _DRIVER_STATUS_BITS:
            if not value & flag or self.status & flag:
                continue
            required = _STATUS_REQUIRES[flag]
            if self.status & required != required or not self._status_bit_allowed(flag):
                self.refused_status_writes += 1
                continue
            self.status = int(self.status | flag)
            if flag == DeviceStatus.FEATURES_OK:
                for queue in self.queues:
                    queue.event_idx = bool(self.driver_features & bit(VIRTIO_F_EVENT_IDX))
                    queue.indirect = bool(self.driver_features & bit(VIRTIO_F_INDIRECT_DESC))
            elif flag == DeviceStatus.DRIVER_OK:
                self.device.activate(self.queues, self.driver_features)

    def _status_bit_allowed(self, flag: DeviceStatus) -> bool:
        if flag == DeviceStatus.FEATURES_OK:
            return (
                not self._unknown_driver_features
                and not self.driver_features & ~self.device_features
                and bool(self.driver_features & bit(VIRTIO_F_VERSION_1))
            )
        if flag == DeviceStatus.DRIVER_OK:
            return not self.status & DeviceStatus.DEVICE_NEEDS_RESET
        return True

    # -- interrupts and the device's requests (DeviceLink) --------------------------------------------

    def _raise(self, bits: int) -> None:
        self.interrupt_status |= bits
        self._update_irq()

    def _update_irq(self) -> None:
        level = self.interrupt_status != 0
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)

    def signal_used(self, queue_index: int) -> None:
        self._raise(INT_USED_BUFFER)

    def signal_config(self) -> None:
        self.config_generation = (self.config_generation + 1) & 0xFFFFFFFF
        if self.status & DeviceStatus.DRIVER_OK:
            self._raise(INT_CONFIG_CHANGE)

    def device_failed(self, error: Exception) -> None:
        """The driver broke the ring rules: DEVICE_NEEDS_RESET, and tell it if it is running."""
        self.queue_errors += 1
        if self.queue_errors == 1:
            logger.warning(
                "virtio-mmio at %#x (%s): %s; device needs reset (further violations are counted)",
                self.base,
                type(self.device).__name__,
                error,
            )
        self.device.deactivate()
        self.status = int(self.status | DeviceStatus.DEVICE_NEEDS_RESET)
        if self.status & DeviceStatus.DRIVER_OK:
            self._raise(INT_CONFIG_CHANGE)

    # -- saved state ------------------------------------------------------------------------------------

    def state(self) -> VirtioMmioState:
        """The registers and queues; save ``device.state()`` beside it."""
        return VirtioMmioState(
            status=self.status,
            device_features_sel=self.device_features_sel,
            driver_features=self.driver_features,
            driver_features_sel=self.driver_features_sel,
            queue_sel=self.queue_sel,
            interrupt_status=self.interrupt_status,
            config_generation=self.config_generation,
            queues=[queue.state() for queue in self.queues],
        )

    @classmethod
    def from_state(
        cls,
        state: VirtioMmioState,
        base: int,
        device: VirtioDevice,
        memory: GuestMemory,
        irq: IrqLine,
        size: int = DEFAULT_WINDOW,
    ) -> VirtioMmioTransport:
        """A transport resumed from ``state`` around ``device`` (already restored by the caller).

        ValueError if the state is not one this transport and device can be in. A running
        device (DRIVER_OK, not NEEDS_RESET) is activated again; the line is raised at once if
        an interrupt was pending.
        """
        transport = cls(base, device, memory, irq, size)
        transport.restore(state)
        return transport

    def restore(self, state: VirtioMmioState) -> None:
        """Put this transport into ``state`` in place (a VM snapshot restored), around its
        device (restored first by the caller); ValueError as ``from_state``."""
        for name in ("status", "device_features_sel", "driver_features_sel", "queue_sel", "config_generation"):
            value = getattr(state, name)
            if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"VirtioMmioState.{name} = {value!r} is not a 32-bit register value")
        if state.status & ~_ALL_STATUS:
            raise ValueError(f"VirtioMmioState.status = {state.status:#x} has undefined bits")
        if not isinstance(state.interrupt_status, int) or state.interrupt_status & ~_INT_MASK:
            raise ValueError(f"VirtioMmioState.interrupt_status = {state.interrupt_status!r} is not 0..3")
        features = state.driver_features
        if not isinstance(features, int) or features < 0 or features & ~self.device_features:
            raise ValueError(f"VirtioMmioState.driver_features = {features!r} were not offered")
        if len(state.queues) != self.device.num_queues:
            raise ValueError(f"VirtioMmioState has {len(state.queues)} queues, the device {self.device.num_queues}")
        self.queues = tuple(SplitQueue.from_state(self.memory, self.device.queue_max_size, q) for q in state.queues)
        self.status = state.status
        self.device_features_sel = state.device_features_sel
        self.driver_features = features
        self.driver_features_sel = state.driver_features_sel
        self.queue_sel = state.queue_sel
        self.config_generation = state.config_generation
        self.interrupt_status = state.interrupt_status
        running = state.status & DeviceStatus.DRIVER_OK and not state.status & DeviceStatus.DEVICE_NEEDS_RESET
        if running:
            self.device.activate(self.queues, features)
        self._update_irq()
