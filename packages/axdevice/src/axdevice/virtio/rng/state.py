"""Saved state of a virtio-rng device: a plain dataclass (the transport saves the queues)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VirtioRngState:
    bytes_served: int = 0
    source_failures: int = 0
