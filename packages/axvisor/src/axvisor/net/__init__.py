"""Host network backends for virtio-net: a TAP interface or a UDP socket per link.

Each name is imported on first use (PEP 562): every VM's host is a ``NetHost``, but sockets and
TAP are loaded only for a VM that has a netdev, so ``axvisor run`` does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .dgram import DgramBackend
    from .host import NetHost
    from .link import RX_BACKLOG_FRAMES, RX_HEAD_ATTEMPTS, FrameLink, NetBackendError
    from .spec import FORMS, NetdevSpec, TapSpec, UdpSpec, parse_netdev, parse_netdev_spec
    from .tap import TapBackend, check_ifname

_MODULE_OF = {
    "FORMS": "spec",
    "RX_BACKLOG_FRAMES": "link",
    "RX_HEAD_ATTEMPTS": "link",
    "DgramBackend": "dgram",
    "FrameLink": "link",
    "NetBackendError": "link",
    "NetHost": "host",
    "NetdevSpec": "spec",
    "TapBackend": "tap",
    "TapSpec": "spec",
    "UdpSpec": "spec",
    "check_ifname": "tap",
    "parse_netdev": "spec",
    "parse_netdev_spec": "spec",
}

__all__ = [
    "FORMS",
    "RX_BACKLOG_FRAMES",
    "RX_HEAD_ATTEMPTS",
    "DgramBackend",
    "FrameLink",
    "NetBackendError",
    "NetHost",
    "NetdevSpec",
    "TapBackend",
    "TapSpec",
    "UdpSpec",
    "check_ifname",
    "parse_netdev",
    "parse_netdev_spec",
]


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value
