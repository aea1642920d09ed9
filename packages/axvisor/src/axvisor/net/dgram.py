"""A UDP socket as the host end of virtio-net (QEMU's ``-netdev dgram`` / ``-netdev socket,udp``).

Each Ethernet frame travels as one datagram from the ``local`` address to the ``remote`` one.
Two VMs whose backends name each other (A: local P, remote Q; B: local Q, remote P) share one
Ethernet segment without any host configuration or privilege. Only datagrams whose source is
the remote address are taken (others are counted in ``rx_foreign``), so another process that
can reach the local port cannot inject frames by accident. A frame too big for one datagram
(over 65507 bytes on IPv4) cannot be sent and is counted in ``tx_errors``.
"""

from __future__ import annotations

import errno
import logging
import socket

from .link import READ_SIZE, FrameLink, NetBackendError

log = logging.getLogger(__name__)

Address = tuple[str, int]


def _resolve(role: str, address: Address, family: int = socket.AF_UNSPEC) -> tuple[int, tuple]:
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError, OverflowError, TypeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise NetBackendError(f"cannot resolve the UDP {role} address {host}:{port}: {reason}; "
                              "expected an IP address or a host name and a port 0-65535") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # prefer IPv4, as "localhost" usually means
    return infos[0][0], infos[0][4]


def resolve_udp(local: Address, remote: Address) -> None:
    """Resolve a link's two addresses as DgramBackend does, binding nothing (``axvisor check``)."""
    family, _ = _resolve("local", local)
    _resolve("remote", remote, family)


class DgramBackend(FrameLink):
    """Frames as UDP datagrams: received on ``local``, sent to ``remote``."""

    def __init__(self, local: Address, remote: Address) -> None:
        label = f"udp:{local[0]}:{local[1]}:{remote[0]}:{remote[1]}"
        family, self.local_address = _resolve("local", local)
        _, self.remote_address = _resolve("remote", remote, family)
        self._remote_key = self._key(self.remote_address)
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self.local_address)
        except OSError as error:
            sock.close()
            fix = ("another process (or VM) uses that port; choose a free one" if error.errno == errno.EADDRINUSE
                   else "use an address of this host and a port you may bind")
            raise NetBackendError(f"cannot bind the UDP local address {local[0]}:{local[1]}: "
                                  f"{error.strerror}; {fix}") from None
        self._sock = sock
        self.rx_foreign = 0
        super().__init__(sock.fileno(), label)

    @staticmethod
    def _key(address: tuple) -> tuple[str, int]:
        return address[0], address[1]  # IPv6 addresses carry flowinfo and scope id as well

    @property
    def bound_address(self) -> tuple:
        """The local address as bound (the kernel's port when ``local`` asked for port 0)."""
        return tuple(self._sock.getsockname())

    def _recv(self) -> bytes | None:
        data, source = self._sock.recvfrom(READ_SIZE)
        if self._key(source) == self._remote_key:
            return data
        if self.rx_foreign == 0:
            log.warning("%s: ignoring datagrams from %s:%s, which is not the remote address",
                        self.label, source[0], source[1])
        self.rx_foreign += 1
        return None

    def _transmit(self, frame: bytes) -> None:
        self._sock.sendto(frame, self.remote_address)

    def _release_io(self) -> None:
        self._sock.close()

    def __repr__(self) -> str:
        return f"DgramBackend({self.label!r})"
