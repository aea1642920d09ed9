"""Saved state of a virtio-console device: a plain dataclass (the transport saves the queues)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VirtioConsoleState:
    bytes_sent: int = 0
    lost_output_bytes: int = 0
    bytes_received: int = 0
