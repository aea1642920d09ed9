"""Guest addresses, access widths, mapping flags, guest memory and the guest address space."""

from .addr import (
    ADDRESS_BITS,
    ADDRESS_LIMIT,
    AddressOverflowError,
    GuestPhysAddr,
    GuestVirtAddr,
    HostPhysAddr,
    HostVirtAddr,
)
from .addrspace import AddrSpace, Backend, MemoryArea
from .errors import AddrSpaceError, GuestMemoryError
from .flags import MappingFlags
from .memory import PAGE_SIZE, GuestMemory, GuestMemoryRegion
from .range import AddrRange, GuestPhysAddrRange, InclusiveRange, PortRange, SysRegRange
from .stage2 import InMemoryStage2, Stage2Mapper, Stage2Mapping
from .width import AccessWidth, sign_extend

__all__ = [
    "ADDRESS_BITS",
    "ADDRESS_LIMIT",
    "PAGE_SIZE",
    "AccessWidth",
    "AddrRange",
    "AddrSpace",
    "AddrSpaceError",
    "AddressOverflowError",
    "Backend",
    "GuestMemory",
    "GuestMemoryError",
    "GuestMemoryRegion",
    "GuestPhysAddr",
    "GuestPhysAddrRange",
    "GuestVirtAddr",
    "HostPhysAddr",
    "HostVirtAddr",
    "InMemoryStage2",
    "InclusiveRange",
    "MappingFlags",
    "MemoryArea",
    "PortRange",
    "Stage2Mapper",
    "Stage2Mapping",
    "SysRegRange",
    "sign_extend",
]
