"""Guest addresses, access widths, mapping flags, guest memory and the guest address space."""

from .access import GuestMemoryAccess, GuestMemoryReader
from .addr import (
    ADDRESS_BITS,
    ADDRESS_LIMIT,
    AddressOverflowError,
    GuestPhysAddr,
    GuestVirtAddr,
    HostPhysAddr,
    HostVirtAddr,
    RegionOffset,
)
from .addrspace import AddrSpace, Backend, MemoryArea
from .errors import AddrSpaceError, GuestMemoryError
from .flags import MappingFlags
from .memory import PAGE_SIZE, GuestMemory, GuestMemoryRegion
from .range import AddrRange, GuestPhysAddrRange, InclusiveRange, PortRange, SysRegRange
from .stage2 import AttachedMemory, InMemoryStage2, Stage2Mapper, Stage2Mapping, region_to_map
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
    "AttachedMemory",
    "Backend",
    "GuestMemory",
    "GuestMemoryAccess",
    "GuestMemoryError",
    "GuestMemoryReader",
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
    "RegionOffset",
    "Stage2Mapper",
    "Stage2Mapping",
    "SysRegRange",
    "region_to_map",
    "sign_extend",
]
