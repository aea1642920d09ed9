"""Where virtio-net's transmitted frames go: the ``NetBackend`` protocol.

A backend takes whole Ethernet frames (no virtio header) from the device. The real ones (a TAP
device, a socket, a user-mode stack) belong to the VMM, which also feeds received frames to
``VirtioNet.receive_frame`` from its own thread, under the VM's device lock. A backend that
raises loses the frame (counted in ``tx_errors``); it is never the guest's problem.
``receive_frame`` answers with an ``RxResult``, which tells the VMM whether to keep the frame.
"""

from __future__ import annotations

import enum
from typing import Protocol


class RxResult(enum.Enum):
    """What ``VirtioNet.receive_frame`` did with a frame, so the caller knows whether to retry.

    Retrying a frame the device already consumed would cost the guest one receive buffer per
    try (a too-small buffer goes back empty), so "dropped" and "not now" must differ.
    """

    DELIVERED = "delivered"
    """Written into a guest receive buffer (counted in ``rx_frames``)."""
    DROPPED = "dropped"
    """Consumed and lost (counted in ``rx_dropped``): over ``MAX_FRAME_SIZE``, bigger than the
    buffer the guest gave (returned to it empty), or a broken ring; never offer it again."""
    NO_BUFFER = "no_buffer"
    """Not taken now and not counted: no buffer posted, driver not ready or link down; the
    caller may keep the frame and offer it again when the guest posts buffers."""


class NetBackend(Protocol):
    def send(self, frame: bytes) -> object:
        """Transmit one Ethernet frame."""


class RecordingNetBackend:
    """A backend that keeps what it is sent, for tests and for wiring two devices by hand."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(bytes(frame))
