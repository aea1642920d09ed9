"""The host resources axvisor gives its VMs: axvm's local disks and entropy, plus networking."""

from __future__ import annotations

from axvm.host import HostNetLink, LocalHost


class NetHost(LocalHost):
    """``LocalHost`` whose ``open_netdev`` opens TAP and UDP backends (see ``parse_netdev``)."""

    def open_netdev(self, spec: str) -> HostNetLink:
        from .spec import parse_netdev  # sockets and TAP: every VM's host is one, few have a netdev

        return parse_netdev(spec)
