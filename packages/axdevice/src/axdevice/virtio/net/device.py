"""virtio-net (virtio 1.2, 5.1): one receive/transmit queue pair, no control queue, no offloads.

Theory of operation. Features offered: VERSION_1, INDIRECT_DESC, EVENT_IDX, MAC (the
configured address is in the config space) and STATUS (link state, up unless ``set_link``
says otherwise; a change raises a configuration interrupt). No checksum or segmentation
offloads and no merged receive buffers, so every frame is at most ``MAX_FRAME_SIZE`` bytes and
fits one buffer.

Transmit: a kick on transmitq 1 drains it, handing each frame (without the virtio header) to
the injected ``NetBackend.send``; an oversized frame is dropped (``tx_dropped``), a failing
backend loses it (``tx_errors``); every chain is returned with 0 bytes written.

Receive: the VMM calls ``receive_frame(frame)`` (under the VM's device lock) for each frame
from the host; it takes one receive buffer, writes the header and the frame, and interrupts
(``RxResult.DELIVERED``). A frame over ``MAX_FRAME_SIZE`` or too big for the buffer it took is
dropped (``rx_dropped``, ``RxResult.DROPPED``); a buffer that is too small is returned to the
driver empty (Linux counts a length error and reposts it), so the caller must not offer that
frame again. Without a posted buffer, before DRIVER_OK or with the link down nothing is taken
or counted (``RxResult.NO_BUFFER``): the caller may hold the frame and retry. The optional
``on_rx_buffers`` callback runs when the driver kicks receiveq 0 with new buffers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from axaddrspace import GuestMemoryError

from ...types import EmuDeviceType
from ..constants import VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, DeviceId, bit
from ..device import VirtioDevice, call_host_hook, restore_counters
from ..queue import QueueError
from .backend import NetBackend, RxResult
from .request import MAX_FRAME_SIZE, rx_fill, tx_frame
from .state import VirtioNetState

VIRTIO_NET_F_MAC = 5
VIRTIO_NET_F_STATUS = 16
VIRTIO_NET_S_LINK_UP = 1

RECEIVEQ = 0
TRANSMITQ = 1

DEFAULT_MAC = b"\x52\x54\x00\x12\x34\x56"  # QEMU's default: locally administered, unicast

_CONFIG = struct.Struct("<6sHHH")  # mac, status, max_virtqueue_pairs, mtu


def _check_mac(mac: bytes) -> bytes:
    mac = bytes(mac)
    if len(mac) != 6 or mac[0] & 1:
        raise ValueError(f"MAC address {mac.hex(':')} is not 6 bytes of a unicast address")
    return mac


class VirtioNet(VirtioDevice):
    """A virtio network device sending through ``backend``; frames arrive by receive_frame."""

    def __init__(
        self,
        backend: NetBackend,
        mac: bytes = DEFAULT_MAC,
        on_rx_buffers: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.mac = _check_mac(mac)
        self._on_rx_buffers = on_rx_buffers
        self.link_up = True
        self.tx_frames = self.tx_dropped = self.tx_errors = 0
        self.rx_frames = self.rx_dropped = 0

    @classmethod
    def from_state(
        cls, state: VirtioNetState, backend: NetBackend, on_rx_buffers: Callable[[], object] | None = None
    ) -> VirtioNet:
        device = cls(backend, state.mac, on_rx_buffers)
        device.link_up = bool(state.link_up)
        restore_counters(device, state, ("tx_frames", "tx_dropped", "tx_errors", "rx_frames", "rx_dropped"))
        return device

    def restore(self, state: VirtioNetState) -> None:
        """Take the link state and counters in place (a VM snapshot restored). The MAC stays
        this device's own: a clone of a snapshot is built with its own address."""
        if not isinstance(state.link_up, bool):
            raise ValueError(f"VirtioNetState.link_up = {state.link_up!r} is not true or false")
        restore_counters(self, state, ("tx_frames", "tx_dropped", "tx_errors", "rx_frames", "rx_dropped"))
        self.link_up = state.link_up

    def state(self) -> VirtioNetState:
        return VirtioNetState(
            self.mac, self.link_up, self.tx_frames, self.tx_dropped, self.tx_errors, self.rx_frames, self.rx_dropped
        )

    @property
    def device_id(self) -> int:
        return DeviceId.NET

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.VirtioNet

    @property
    def features(self) -> int:
        return (
            bit(VIRTIO_F_VERSION_1)
            | bit(VIRTIO_F_INDIRECT_DESC)
            | bit(VIRTIO_F_EVENT_IDX)
            | bit(VIRTIO_NET_F_MAC)
            | bit(VIRTIO_NET_F_STATUS)
        )

    @property
    def num_queues(self) -> int:
        return 2

    def config_space(self) -> bytes:
        status = VIRTIO_NET_S_LINK_UP if self.link_up else 0
        return _CONFIG.pack(self.mac, status, 1, 0)

    def set_link(self, up: bool) -> None:
        """Report the link up or down to the driver (a configuration change)."""
        if bool(up) != self.link_up:
            self.link_up = bool(up)
            self.config_changed()

    def queue_notify(self, index: int) -> None:
        if index == RECEIVEQ:
            call_host_hook(self._on_rx_buffers)
            return
        queue = self.queue(TRANSMITQ)
        served = False
        while (chain := queue.pop()) is not None:
            frame = tx_frame(chain, queue.memory)
            if frame is None:
                self.tx_dropped += 1
            else:
                self._send(frame)
            queue.push_used(chain.head, 0)
            served = True
        if served:
            self.interrupt(TRANSMITQ)

    def _send(self, frame: bytes) -> None:
        if not self.link_up:
            self.tx_dropped += 1
            return
        try:
            self.backend.send(frame)
        except Exception:  # the host side failing loses the frame, never the VMM
            self.tx_errors += 1
        else:
            self.tx_frames += 1

    def receive_frame(self, frame: bytes | bytearray | memoryview) -> RxResult:
        """Host -> guest: deliver one Ethernet frame; the result says whether to offer it again."""
        with memoryview(frame) as view:
            size = view.nbytes
        if size > MAX_FRAME_SIZE:
            self.rx_dropped += 1
            return RxResult.DROPPED
        if not self.active or not self.link_up:
            return RxResult.NO_BUFFER
        queue = self.queue(RECEIVEQ)
        try:
            chain = queue.pop()
            if chain is None:
                return RxResult.NO_BUFFER
            used = rx_fill(chain, queue.memory, bytes(frame))
            queue.push_used(chain.head, used or 0)
        except (QueueError, GuestMemoryError) as error:
            self.rx_dropped += 1
            self.fail(error)
            return RxResult.DROPPED
        self.interrupt(RECEIVEQ)
        if used is None:  # the buffer went back empty: offering the frame again would cost another
            self.rx_dropped += 1
            return RxResult.DROPPED
        self.rx_frames += 1
        return RxResult.DELIVERED
