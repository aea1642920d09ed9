"""Netdev specs, the strings in a config's ``[devices] netdevs`` table, and opening them.

    tap:IFNAME                                   a TAP interface (TapBackend)
    udp:LOCALHOST:LOCALPORT:REMOTEHOST:REMOTEPORT one UDP datagram per frame (DgramBackend)

Hosts are IP addresses or names; an IPv6 address goes in brackets: ``udp:[::1]:5000:[::1]:5001``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .dgram import DgramBackend
from .tap import TapBackend, check_ifname

FORMS = ('expected "tap:IFNAME" or "udp:LOCALHOST:LOCALPORT:REMOTEHOST:REMOTEPORT" '
         '(e.g. "tap:axtap0", "udp:127.0.0.1:5000:127.0.0.1:5001")')

_HOST = r"(\[[^\]]*\]|[^:\[\]]*)"
_UDP = re.compile(rf"{_HOST}:([^:]*):{_HOST}:([^:]*)")


@dataclass(frozen=True)
class TapSpec:
    ifname: str

    def open(self) -> TapBackend:
        return TapBackend(self.ifname)


@dataclass(frozen=True)
class UdpSpec:
    local: tuple[str, int]
    remote: tuple[str, int]

    def open(self) -> DgramBackend:
        return DgramBackend(self.local, self.remote)


NetdevSpec = TapSpec | UdpSpec


def _bad(problem: str) -> ValueError:
    return ValueError(f"{problem}; {FORMS}")


def _host(text: str, role: str) -> str:
    host = text[1:-1] if text.startswith("[") else text
    if not host:
        raise _bad(f"the {role} host is empty")
    return host


def _port(text: str, role: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _bad(f"the {role} port {text!r} is not a number 1-65535")
    return int(text)


def parse_netdev_spec(spec: str) -> NetdevSpec:
    """Check a spec's form without opening anything; ValueError (one line) when it is wrong."""
    kind, sep, rest = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or kind not in ("tap", "udp"):
        raise _bad(f"unknown netdev {spec!r}")
    if kind == "tap":
        problem = check_ifname(rest)
        if problem is not None:
            raise _bad(f"the interface name {rest!r} {problem}")
        return TapSpec(rest)
    match = _UDP.fullmatch(rest)
    if match is None:
        raise _bad(f"udp netdev {spec!r} does not have four fields")
    local_host, local_port, remote_host, remote_port = match.groups()
    return UdpSpec((_host(local_host, "local"), _port(local_port, "local")),
                   (_host(remote_host, "remote"), _port(remote_port, "remote")))


def parse_netdev(spec: str) -> TapBackend | DgramBackend:
    """Open the backend a spec names: ValueError for a malformed spec, NetBackendError (an
    OSError) when the host refuses it. Not started: the caller calls ``start(deliver)``."""
    return parse_netdev_spec(spec).open()
