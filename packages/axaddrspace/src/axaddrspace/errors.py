"""The two ways an address can be wrong: a guest access that misses RAM, and a bad mapping.

They are kept apart because they have different culprits. A ``GuestMemoryError`` is the guest's
doing (a descriptor pointing at nothing, a length running off the end of RAM): devices catch it
and answer with their defined error. An ``AddrSpaceError`` is the VMM's or the config's doing
(two regions overlapping, an unaligned size) and should stop the VM build with a clear message.
"""

from __future__ import annotations

from .range import AddrRange


def _hex(addr: int) -> str:
    """Underscored hex (``0x9000_0000``) so long guest addresses are readable in logs."""
    return f"{addr:#_x}"


class GuestMemoryError(Exception):
    """A guest physical access that guest RAM cannot satisfy.

    ``addr`` is the first offending byte (not necessarily the start of the access) and
    ``size`` the size of the whole access, so a log line tells both where and how much.
    """

    def __init__(self, addr: int, size: int, reason: str = "is not backed by guest RAM") -> None:
        self.addr = addr
        self.size = size
        self.reason = reason
        super().__init__(f"guest physical address {_hex(addr)} ({size} bytes) {reason}")

    def __reduce__(self) -> tuple[type[GuestMemoryError], tuple[int, int, str]]:
        # Keep the attributes when the error crosses a process boundary (multiprocessing).
        return (type(self), (self.addr, self.size, self.reason))


class AddrSpaceError(Exception):
    """A mapping request that cannot be honoured: overlap, misalignment, nothing mapped there.

    ``range`` is the requested guest physical range when there is one; the message names it.
    """

    def __init__(self, message: str, addr_range: AddrRange | None = None) -> None:
        self.range = addr_range
        super().__init__(message)

    def __reduce__(self) -> tuple[type[AddrSpaceError], tuple[str, AddrRange | None]]:
        return (type(self), (str(self), self.range))
