"""Address types: kind is preserved, overflow raises, two addresses never add."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axaddrspace import (
    ADDRESS_LIMIT,
    AddressOverflowError,
    GuestPhysAddr,
    GuestVirtAddr,
    HostPhysAddr,
    HostVirtAddr,
    RegionOffset,
)

KINDS = [GuestPhysAddr, GuestVirtAddr, HostVirtAddr, HostPhysAddr]
addresses = st.integers(min_value=0, max_value=ADDRESS_LIMIT - 1)
kinds = st.sampled_from(KINDS)


@settings(max_examples=200)
@given(kinds, addresses, st.integers(min_value=-(1 << 65), max_value=1 << 65))
def test_adding_an_offset_keeps_the_kind_or_raises_on_overflow(kind, value, offset):
    addr = kind(value)
    if 0 <= value + offset < ADDRESS_LIMIT:
        result = addr + offset
        assert type(result) is kind
        assert int(result) == value + offset
        assert type(offset + addr) is kind
    else:
        with pytest.raises(AddressOverflowError):
            addr + offset


@settings(max_examples=200)
@given(kinds, addresses, addresses)
def test_subtracting_two_addresses_of_one_kind_gives_a_plain_offset(kind, a, b):
    diff = kind(a) - kind(b)
    assert type(diff) is int
    assert diff == a - b


@settings(max_examples=100)
@given(kinds, kinds, addresses, addresses)
def test_two_addresses_never_add(kind_a, kind_b, a, b):
    with pytest.raises(TypeError):
        kind_a(a) + kind_b(b)


@given(addresses, addresses)
def test_subtracting_different_kinds_raises(a, b):
    with pytest.raises(TypeError):
        GuestPhysAddr(a) - HostVirtAddr(b)


@pytest.mark.parametrize("value", [-1, ADDRESS_LIMIT, ADDRESS_LIMIT + 5])
def test_construction_outside_64_bits_raises(value):
    with pytest.raises(AddressOverflowError):
        GuestPhysAddr(value)


def test_overflow_error_is_a_value_error():
    assert issubclass(AddressOverflowError, ValueError)


@settings(max_examples=200)
@given(kinds, addresses, addresses)
def test_an_address_plus_a_region_offset_keeps_the_address_kind(kind, value, offset):
    addr, off = kind(value), RegionOffset(offset)
    if value + offset < ADDRESS_LIMIT:
        assert type(addr + off) is kind and type(off + addr) is kind
        assert int(addr + off) == int(off + addr) == value + offset
    else:
        with pytest.raises(AddressOverflowError):
            addr + off
        with pytest.raises(AddressOverflowError):
            off + addr


@settings(max_examples=200)
@given(addresses, st.integers(min_value=-(1 << 65), max_value=1 << 65))
def test_region_offsets_are_checked_and_keep_their_kind(value, delta):
    off = RegionOffset(value)
    if 0 <= value + delta < ADDRESS_LIMIT:
        assert type(off + delta) is RegionOffset and off + delta == value + delta
        assert type(delta + off) is RegionOffset
    else:
        with pytest.raises(AddressOverflowError):
            off + delta
    if 0 <= value - delta < ADDRESS_LIMIT:
        assert type(off - delta) is RegionOffset and off - delta == value - delta
    else:
        with pytest.raises(AddressOverflowError):
            off - delta  # an offset never goes negative
    assert type(off - RegionOffset(0)) is int  # two offsets give a plain difference


@pytest.mark.parametrize("value", [-1, ADDRESS_LIMIT])
def test_region_offset_outside_64_bits_raises(value):
    with pytest.raises(AddressOverflowError, match="RegionOffset"):
        RegionOffset(value)


def test_an_address_never_comes_out_of_an_offset_minus_an_address():
    with pytest.raises(TypeError):
        RegionOffset(0x20) - GuestPhysAddr(0x10)
    assert repr(RegionOffset(0x20)) == "RegionOffset(0x20)"


@settings(max_examples=200)
@given(addresses, st.integers(min_value=0, max_value=20))
def test_alignment_helpers(value, shift):
    align = 1 << shift
    addr = GuestPhysAddr(value)
    down = addr.align_down(align)
    assert type(down) is GuestPhysAddr
    assert down <= addr and down.is_aligned(align) and addr - down < align
    if value + align - 1 < ADDRESS_LIMIT:
        up = addr.align_up(align)
        assert up >= addr and up.is_aligned(align) and up - addr < align


def test_repr_names_the_kind():
    assert repr(GuestPhysAddr(0x8000_0000)) == "GuestPhysAddr(0x80000000)"
    assert str(HostVirtAddr(0x10)) == "HostVirtAddr(0x10)"
