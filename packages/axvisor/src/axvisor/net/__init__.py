"""Host network backends for virtio-net: a TAP interface or a UDP socket per link."""

from .dgram import DgramBackend
from .host import NetHost
from .link import RX_BACKLOG_FRAMES, RX_HEAD_ATTEMPTS, FrameLink, NetBackendError
from .spec import FORMS, NetdevSpec, TapSpec, UdpSpec, parse_netdev, parse_netdev_spec
from .tap import TapBackend, check_ifname

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
