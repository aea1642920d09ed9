"""A TAP interface as the host end of virtio-net (QEMU's ``-netdev tap,ifname=NAME``).

The backend opens /dev/net/tun and attaches to (or creates) the TAP interface NAME with the
TUNSETIFF ioctl, flags IFF_TAP | IFF_NO_PI: each read() returns one Ethernet frame and each
write() sends one, with no packet-information prefix and no virtio-net header (IFF_VNET_HDR is
not set, matching a device that offers no offloads). Configuring the interface (bringing it up,
addresses, a bridge) is the host administrator's job, as with QEMU's ``script=no``.

An interface the backend creates vanishes when it is closed, taking its addresses with it; a
guest reset closes and reopens the link. To keep a configuration, create the interface first:
``ip tuntap add dev NAME mode tap user USER`` (that also lets USER open it without root).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from .link import READ_SIZE, FrameLink, NetBackendError

TUN_DEVICE = "/dev/net/tun"

# From <linux/if_tun.h> and <net/if.h>; tests/test_net_tap.py compares them with the headers.
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int): the argument is really a struct ifreq
IFF_TAP = 0x0002  # an Ethernet device (IFF_TUN would be IP packets)
IFF_NO_PI = 0x1000  # no 4-byte packet-information prefix on each frame
IFNAMSIZ = 16  # interface names are at most 15 bytes plus the terminating NUL

# struct ifreq is 40 bytes on 64-bit Linux: ifr_name[IFNAMSIZ], then a 24-byte union whose
# ifr_flags (a short) sits at offset 16. The kernel copies in and back out the whole 40 bytes.
IFREQ = struct.Struct(f"{IFNAMSIZ}sH22x")

_OPEN_FIXES = {
    errno.ENOENT: "the tun driver is missing; load it (modprobe tun), or in a container pass --device /dev/net/tun",
    errno.ENODEV: "the tun driver is missing; load it (modprobe tun)",
    errno.ENXIO: "the tun driver is missing; load it (modprobe tun)",
    errno.EACCES: "run as root, or give this user read/write access to /dev/net/tun",
    errno.EPERM: "run as root, or give this user read/write access to /dev/net/tun",
}


def _setiff_fix(name: str, code: int) -> str:
    if code == errno.EPERM:
        return (f"this needs CAP_NET_ADMIN: run as root, or create the interface for this user first "
                f"(ip tuntap add dev {name} mode tap user $USER)")
    if code == errno.EBUSY:
        return f"another process has {name} open; stop it or choose another interface name"
    if code == errno.EINVAL:
        return f"an interface named {name} exists and is not a TAP device; choose another name"
    return "check the interface name and that the tun driver works (ip tuntap add dev NAME mode tap)"


def check_ifname(name: str) -> str | None:
    """Why ``name`` cannot be a Linux interface name, or None when it can (as dev_valid_name)."""
    if not name or name in (".", ".."):
        return "is empty" if not name else "is not a name"
    if len(name.encode()) >= IFNAMSIZ:
        return f"is longer than {IFNAMSIZ - 1} bytes"
    if any(ch in name for ch in "/:") or any(ch.isspace() for ch in name):
        return "contains '/', ':' or white space"
    return None


class TapBackend(FrameLink):
    """Frames to and from the TAP interface ``ifname`` (a name with %d lets the kernel number it)."""

    def __init__(self, ifname: str) -> None:
        problem = check_ifname(ifname)
        if problem is not None:
            raise NetBackendError(f"TAP interface {ifname!r}: the name {problem}; expected at most "
                                  f"{IFNAMSIZ - 1} bytes without '/', ':' or spaces, such as axtap0")
        try:
            fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            fix = _OPEN_FIXES.get(error.errno or 0, "check that the tun driver is loaded")
            raise NetBackendError(f"TAP interface {ifname}: cannot open {TUN_DEVICE}: {error.strerror}; "
                                  f"{fix}") from None
        try:
            answer = fcntl.ioctl(fd, TUNSETIFF, IFREQ.pack(ifname.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as error:
            os.close(fd)
            fix = _setiff_fix(ifname, error.errno or 0)
            raise NetBackendError(f"TAP interface {ifname}: TUNSETIFF failed: {error.strerror}; {fix}") from None
        self.ifname = IFREQ.unpack(answer)[0].rstrip(b"\0").decode()
        """The interface's name as the kernel chose it (differs from a %d template)."""
        super().__init__(fd, f"tap:{self.ifname}")

    def _recv(self) -> bytes | None:
        return os.read(self._fd, READ_SIZE) or None

    def _transmit(self, frame: bytes) -> None:
        os.write(self._fd, frame)

    def _release_io(self) -> None:
        os.close(self._fd)

    def __repr__(self) -> str:
        return f"TapBackend({self.ifname!r})"
