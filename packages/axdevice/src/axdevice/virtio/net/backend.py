"""Where virtio-net's transmitted frames go: the ``NetBackend`` protocol.

A backend takes whole Ethernet frames (no virtio header) from the device. The real ones (a TAP
device, a socket, a user-mode stack) belong to the VMM, which also feeds received frames to
``VirtioNet.receive_frame`` from its own thread, under the VM's device lock. A backend that
raises loses the frame (counted in ``tx_errors``); it is never the guest's problem.
"""

from __future__ import annotations

from typing import Protocol


class NetBackend(Protocol):
    def send(self, frame: bytes) -> object:
        """Transmit one Ethernet frame."""


class RecordingNetBackend:
    """A backend that keeps what it is sent, for tests and for wiring two devices by hand."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(bytes(frame))
