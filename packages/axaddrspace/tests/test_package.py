"""The package surface other packages build on."""

from __future__ import annotations

import axaddrspace


def test_all_names_resolve_and_are_unique():
    assert len(set(axaddrspace.__all__)) == len(axaddrspace.__all__)
    for name in axaddrspace.__all__:
        assert getattr(axaddrspace, name) is not None


def test_the_documented_api_is_exported():
    expected = {
        "GuestPhysAddr", "GuestVirtAddr", "HostVirtAddr", "HostPhysAddr", "AddressOverflowError",
        "AccessWidth", "MappingFlags", "AddrRange", "InclusiveRange", "GuestPhysAddrRange",
        "PortRange", "SysRegRange", "GuestMemoryError", "AddrSpaceError", "GuestMemoryRegion",
        "GuestMemory", "Stage2Mapper", "Stage2Mapping", "InMemoryStage2", "AddrSpace", "MemoryArea",
    }  # fmt: skip
    assert expected <= set(axaddrspace.__all__)
