"""Inter-VM channels (AxVisor's IVC): shared memory one VM publishes and others map.

Theory of operation. A VM that may use channels has an IVC window in its config: an
``emu_devices`` entry of type ``IVCChannel`` (0xA) whose ``base_gpa``/``length`` is the guest
physical range channels are mapped into (no device answers there; the range becomes RAM as
channels map). The hypercalls (AxVisor's codes, ``hypercalls.HyperCallCode``):

- ``HIVCPublishChannel(key, base_ptr, size_ptr)``: the guest wrote the size it wants as a u64
  at ``size_ptr``; a channel of that size rounded up to pages (at most ``MAX_CHANNEL_SIZE``) is
  created as host shared memory, mapped into the window, and its guest address and size are
  written back at ``base_ptr`` and ``size_ptr``;
- ``HIVCSubscribChannel(publisher_vm_id, key, base_ptr, size_ptr)``: the same host pages
  mapped into the subscriber's window, address and size written back;
- ``HIVCUnPublishChannel(key)`` / ``HIVCUnSubscribChannel(publisher_vm_id, key)``: unmapped
  (a channel lives on, in its subscribers, after its publisher leaves, until the last unmap).

Notification: a subscribe raises the publisher's IVC interrupt (the window entry's ``irq_id``),
so a publisher learns that a peer has mapped its channel; a subscriber that comes first gets
INVALID_PARAM and tries again later. Channels live in an ``IvcHub``; the VMs of one VMM process
share the process's hub (``DEFAULT_HUB``), so they can talk.

Guest arguments are bounded: pointers must be 8-byte words in guest RAM (INVALID_ADDRESS), a
size 1..MAX_CHANNEL_SIZE (INVALID_PARAM), a key already published ALREADY_AVAILABLE, an unknown
channel INVALID_PARAM, a full window FAILED.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from axaddrspace import AddrSpace, AddrSpaceError, GuestMemoryError, GuestMemoryRegion, MappingFlags
from axdevice import IrqLine

from .hypercalls import HvError, HyperCallCode, HypercallContext, HypercallError, HypercallTable

PAGE = 0x1000
MAX_CHANNEL_SIZE = 16 << 20
"""The largest channel a guest may ask for (host shared memory, allocated when touched)."""


@dataclass
class Channel:
    """One published channel: its host shared memory and who maps it."""

    publisher: int
    key: int
    size: int
    fd: int
    mapped_by: set[int] = field(default_factory=set)

    def close(self) -> None:
        os.close(self.fd)


class IvcHub:
    """The channels of one VMM process, by (publisher VM id, key)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.channels: dict[tuple[int, int], Channel] = {}
        self.endpoints: dict[int, IvcEndpoint] = {}

    def create(self, publisher: int, key: int, size: int) -> Channel:
        fd = os.memfd_create(f"axvisor-ivc-{publisher}-{key:#x}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            raise
        channel = Channel(publisher, key, size, fd)
        self.channels[(publisher, key)] = channel
        return channel

    def release(self, channel: Channel, vm_id: int) -> None:
        """``vm_id`` no longer maps ``channel``; the last one out frees it."""
        channel.mapped_by.discard(vm_id)
        if not channel.mapped_by:
            self.channels.pop((channel.publisher, channel.key), None)
            channel.close()


DEFAULT_HUB = IvcHub()


class IvcEndpoint:
    """One VM's side of IVC: its window, its mapped channels, its hypercall handlers."""

    def __init__(
        self,
        vm_id: int,
        addrspace: AddrSpace,
        window: tuple[int, int] | None,
        hub: IvcHub = DEFAULT_HUB,
        irq: IrqLine | None = None,
    ) -> None:
        """``window``: (base, length) from the config's IVCChannel entry (None: no channels);
        ``irq``: this VM's IVC interrupt, pulsed when a peer subscribes to its channel."""
        self.vm_id = vm_id
        self._addrspace = addrspace
        self._window = window
        self._hub = hub
        self.irq = irq
        with hub.lock:
            hub.endpoints[vm_id] = self
        self._mapped: dict[tuple[int, int], int] = {}
        """(publisher, key) -> the gpa this VM maps the channel at."""

    def install(self, table: HypercallTable) -> None:
        table.register(HyperCallCode.HIVCPublishChannel, self._publish)
        table.register(HyperCallCode.HIVCSubscribChannel, self._subscribe)
        table.register(HyperCallCode.HIVCUnPublishChannel, self._unpublish)
        table.register(HyperCallCode.HIVCUnSubscribChannel, self._unsubscribe)

    # -- hypercalls ----------------------------------------------------------------------------

    def _publish(self, context: HypercallContext) -> int:
        key, base_ptr, size_ptr = _args(context, 3)
        wanted = self._read_u64(size_ptr)
        if not 1 <= wanted <= MAX_CHANNEL_SIZE:
            raise HypercallError(HvError.INVALID_PARAM, f"channel size {wanted:#x}: expected 1..{MAX_CHANNEL_SIZE:#x}")
        size = -(-wanted // PAGE) * PAGE
        self._check_pointer(base_ptr)
        with self._hub.lock:
            if (self.vm_id, key) in self._hub.channels:
                raise HypercallError(HvError.ALREADY_AVAILABLE, f"channel key {key:#x} is already published")
            channel = self._hub.create(self.vm_id, key, size)
            try:
                gpa = self._map(channel)
            except HypercallError:
                self._hub.release(channel, self.vm_id)
                raise
        self._write_u64(base_ptr, gpa)
        self._write_u64(size_ptr, size)
        return 0

    def _subscribe(self, context: HypercallContext) -> int:
        publisher, key, base_ptr, size_ptr = _args(context, 4)
        self._check_pointer(base_ptr)
        self._check_pointer(size_ptr)
        with self._hub.lock:
            channel = self._hub.channels.get((publisher, key))
            if channel is None or publisher not in channel.mapped_by:
                raise HypercallError(HvError.INVALID_PARAM, f"VM {publisher} publishes no channel {key:#x}")
            if (publisher, key) in self._mapped:
                raise HypercallError(HvError.ALREADY_AVAILABLE, f"channel {publisher}:{key:#x} is already mapped")
            gpa = self._map(channel)
        self._write_u64(base_ptr, gpa)
        self._write_u64(size_ptr, channel.size)
        with self._hub.lock:
            peer = self._hub.endpoints.get(publisher)
        if peer is not None and peer.irq is not None:
            peer.irq.pulse()
        return 0

    def _unpublish(self, context: HypercallContext) -> int:
        (key,) = _args(context, 1)
        return self._unmap(self.vm_id, key)

    def _unsubscribe(self, context: HypercallContext) -> int:
        publisher, key = _args(context, 2)
        if publisher == self.vm_id:
            raise HypercallError(HvError.INVALID_PARAM, "a VM unpublishes its own channel, it does not unsubscribe")
        return self._unmap(publisher, key)

    # -- mapping ---------------------------------------------------------------------------------

    def _map(self, channel: Channel) -> int:
        """Map ``channel`` at the lowest free place in the window (the hub lock is held)."""
        gpa = self._free_gpa(channel.size)
        region = GuestMemoryRegion.from_file(gpa, f"/proc/self/fd/{channel.fd}", channel.size, shared=True)
        try:
            self._addrspace.map_linear(gpa, channel.size, region, MappingFlags.READ | MappingFlags.WRITE)
        except (AddrSpaceError, ValueError, OSError) as error:
            region.close()
            raise HypercallError(HvError.FAILED, f"mapping channel at {gpa:#x}: {error}") from None
        channel.mapped_by.add(self.vm_id)
        self._mapped[(channel.publisher, channel.key)] = gpa
        return gpa

    def _unmap(self, publisher: int, key: int) -> int:
        with self._hub.lock:
            gpa = self._mapped.pop((publisher, key), None)
            channel = self._hub.channels.get((publisher, key))
            if gpa is None or channel is None:
                raise HypercallError(HvError.INVALID_PARAM, f"channel {publisher}:{key:#x} is not mapped here")
            self._addrspace.unmap(gpa, channel.size)
            self._hub.release(channel, self.vm_id)
        return 0

    def _free_gpa(self, size: int) -> int:
        if self._window is None:
            raise HypercallError(HvError.NOT_SUPPORTED, "this VM has no IVC window (an IVCChannel emu_devices entry)")
        base, length = self._window
        taken = sorted((gpa, self._hub.channels[ident].size) for ident, gpa in self._mapped.items())
        candidate = base
        for start, used in taken:
            if candidate + size <= start:
                break
            candidate = max(candidate, start + used)
        if candidate + size > base + length:
            raise HypercallError(
                HvError.FAILED, f"the IVC window {base:#x}+{length:#x} has no room for {size:#x} bytes"
            )
        return candidate

    def close(self) -> None:
        """The VM is going: every channel it maps is released (its RAM goes with the VM)."""
        with self._hub.lock:
            for publisher, key in list(self._mapped):
                channel = self._hub.channels.get((publisher, key))
                if channel is not None:
                    self._hub.release(channel, self.vm_id)
            self._mapped.clear()
            if self._hub.endpoints.get(self.vm_id) is self:
                del self._hub.endpoints[self.vm_id]

    # -- guest words -------------------------------------------------------------------------------

    def _check_pointer(self, gpa: int) -> None:
        if gpa % 8 or not self._addrspace.memory.contains(gpa, 8):
            raise HypercallError(HvError.INVALID_ADDRESS, f"pointer {gpa:#x} is not an 8-byte word in guest RAM")

    def _read_u64(self, gpa: int) -> int:
        self._check_pointer(gpa)
        try:
            return self._addrspace.memory.read_u64(gpa)
        except GuestMemoryError as error:
            raise HypercallError(HvError.INVALID_ADDRESS, str(error)) from None

    def _write_u64(self, gpa: int, value: int) -> None:
        self._check_pointer(gpa)
        try:
            self._addrspace.memory.write_u64(gpa, value)
        except GuestMemoryError as error:
            raise HypercallError(HvError.INVALID_ADDRESS, str(error)) from None


def _args(context: HypercallContext, count: int) -> tuple[int, ...]:
    args = tuple(context.call.args) + (0,) * count
    return args[:count]
