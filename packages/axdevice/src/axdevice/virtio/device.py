"""The interface between a virtio device type (block, console, ...) and its transport.

A device knows its ID, the features it offers, its queues and its configuration space. The
transport (virtio-mmio here; PCI would be another) owns the registers, the feature handshake
and the ``SplitQueue`` objects; when the driver sets DRIVER_OK it ``activate``s the device with
the queues and the negotiated features (it ``attach``ed itself as the device's ``DeviceLink``
when it was built). From then on:

- the transport calls ``notify(index)`` when the driver kicks queue ``index``; the device's
  ``queue_notify`` pops chains, does the work, ``push_used``s them and calls
  ``interrupt(index)``, which asks the transport for a used-buffer interrupt if the queue's
  notification suppression allows it;
- a ``QueueError`` (the driver broke the ring rules) raised while a device works is caught
  here and reported with ``fail``: the transport sets DEVICE_NEEDS_RESET, raises a
  configuration-change interrupt, and the device stops until the driver resets it;
- ``reset`` (Status = 0) deactivates the device and forgets the negotiated features.

Draining. A kick drains its queue until the ring is empty, as QEMU does. At most ``size`` chains
are available at once; a driver that keeps refilling the ring while the device drains it keeps
its own vCPU in the device and delays nobody but its own VM. Host-side entry points
(``push_input``, ``receive_frame``) take at most one queue's worth of chains per call, so the
VMM's threads are never held by the guest.

Threads. vCPU threads call into devices while dispatching MMIO exits; host-side sources
(console input, network frames) call the devices' ``push_input`` / ``receive_frame`` from the
VMM's own threads. The VMM makes both hold the VM's device lock, the same lock vCPU threads
hold around device accesses, so a device is only ever entered by one thread at a time and
needs no lock of its own (and its modules import no ``threading``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Protocol

from axaddrspace import AccessWidth, GuestMemoryError

from ..types import EmuDeviceType
from .constants import bit
from .queue import QueueError, SplitQueue

DEFAULT_QUEUE_MAX_SIZE = 256  # what QEMU offers for block and network queues; Linux uses all of it


class DeviceLink(Protocol):
    """What an active device may ask of its transport."""

    def signal_used(self, queue_index: int) -> None:
        """Raise the used-buffer interrupt for queue ``queue_index``."""

    def signal_config(self) -> None:
        """The configuration space changed: bump ConfigGeneration, raise the config interrupt."""

    def device_failed(self, error: Exception) -> None:
        """The driver broke the queue rules: set DEVICE_NEEDS_RESET and tell the driver."""


class VirtioDevice(ABC):
    """A virtio device type, independent of the transport that carries it."""

    queue_max_size: int = DEFAULT_QUEUE_MAX_SIZE
    """QueueNumMax of every queue: a power of two up to ``MAX_QUEUE_SIZE``."""

    def __init__(self) -> None:
        self._queues: tuple[SplitQueue, ...] = ()
        self._link: DeviceLink | None = None
        self._active = False
        self.driver_features = 0

    # -- what the device is ---------------------------------------------------------------------

    @property
    @abstractmethod
    def device_id(self) -> int:
        """The virtio device ID (1 net, 2 block, 3 console, 4 entropy)."""

    @property
    @abstractmethod
    def emu_type(self) -> EmuDeviceType:
        """The kind a VM config names this device by."""

    @property
    @abstractmethod
    def features(self) -> int:
        """The feature bits offered, device-specific and transport (INDIRECT_DESC, EVENT_IDX)."""

    @property
    @abstractmethod
    def num_queues(self) -> int:
        """How many virtqueues the device has."""

    @abstractmethod
    def config_space(self) -> bytes:
        """The configuration space as the driver would read it now (little-endian fields)."""

    @abstractmethod
    def queue_notify(self, index: int) -> None:
        """Serve queue ``index`` (ready, device active); may raise QueueError."""

    @abstractmethod
    def state(self) -> object:
        """The device's own saved state, a plain dataclass (the transport saves the queues)."""

    # -- configuration space ----------------------------------------------------------------------

    def read_config(self, offset: int, width: AccessWidth) -> int:
        """A driver read of ``width`` bytes at ``offset`` in the config space; 0 past its end."""
        space = self.config_space()
        if offset < 0 or offset + int(width) > len(space):
            return 0
        return int.from_bytes(space[offset : offset + int(width)], "little")

    def write_config(self, offset: int, width: AccessWidth, value: int) -> None:
        """A driver write to the config space; read-only for every device here, so dropped."""

    # -- lifecycle ----------------------------------------------------------------------------------

    def attach(self, link: DeviceLink) -> None:
        """Connect the device to its transport (when the transport is built; a new one replaces it)."""
        self._active = False
        self._link = link

    @property
    def active(self) -> bool:
        """Whether the driver set DRIVER_OK and the device has not failed or been reset since."""
        return self._active

    def activate(self, queues: Sequence[SplitQueue], driver_features: int) -> None:
        """Start serving ``queues`` with ``driver_features`` negotiated; see the module doc."""
        if len(queues) != self.num_queues:
            raise ValueError(f"{type(self).__name__} has {self.num_queues} queues, got {len(queues)}")
        self._queues = tuple(queues)
        self.driver_features = driver_features
        self._active = True
        self.on_activate()

    def on_activate(self) -> None:
        """Hook: the device just became active."""

    def reset(self) -> None:
        """The driver reset the device (or the VM is reset): stop and forget the negotiation."""
        self._queues = ()
        self._active = False
        self.driver_features = 0

    def has_feature(self, feature_bit: int) -> bool:
        """Whether feature ``feature_bit`` was negotiated."""
        return bool(self.driver_features & bit(feature_bit))

    def queue(self, index: int) -> SplitQueue:
        return self._queues[index]

    # -- the transport's entry point and the device's requests to it ---------------------------

    def notify(self, index: int) -> None:
        """The driver kicked queue ``index``: serve it, turning a ring violation into ``fail``."""
        if not self._active or not 0 <= index < len(self._queues) or not self._queues[index].ready:
            return
        try:
            self.queue_notify(index)
        except (QueueError, GuestMemoryError) as error:
            self.fail(error)

    def interrupt(self, queue_index: int) -> None:
        """Ask for a used-buffer interrupt on ``queue_index`` if the driver wants one now."""
        if not self._active or self._link is None:
            return
        try:
            wanted = self._queues[queue_index].should_notify()
        except QueueError as error:
            self.fail(error)
            return
        if wanted:
            self._link.signal_used(queue_index)

    def config_changed(self) -> None:
        """Tell the driver the config space changed (a link going down, a disk resized)."""
        if self._link is not None:
            self._link.signal_config()

    def fail(self, error: Exception) -> None:
        """The driver broke the queue rules: stop serving queues and report to the transport."""
        was_active, self._active = self._active, False
        if was_active and self._link is not None:
            self._link.device_failed(error)

    def deactivate(self) -> None:
        """Stop serving queues without telling the transport (it is the one asking)."""
        self._active = False


def call_host_hook(hook: Callable[[], object] | None) -> None:
    """Run a VMM hook (e.g. "the driver posted receive buffers"); its failure is never the guest's."""
    if hook is None:
        return
    try:
        hook()
    except Exception:
        pass  # the VMM's wake-up hook failing is no reason to fail the guest


def restore_counters(device: object, state: object, names: tuple[str, ...]) -> None:
    """Copy saved counters onto a device; a saved value that is not a count is rejected, naming it."""
    for name in names:
        value = getattr(state, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{type(state).__name__}.{name} = {value!r} is not a count")
        setattr(device, name, value)
