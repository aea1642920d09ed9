"""Saved state of a virtio-net device: a plain dataclass (the transport saves the queues)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VirtioNetState:
    mac: bytes = b"\x52\x54\x00\x12\x34\x56"
    link_up: bool = True
    tx_frames: int = 0
    tx_dropped: int = 0
    tx_errors: int = 0
    rx_frames: int = 0
    rx_dropped: int = 0
