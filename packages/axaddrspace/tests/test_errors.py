"""Error messages name the culprit, and errors survive pickling (multiprocessing)."""

from __future__ import annotations

import pickle

from axaddrspace import AddrRange, AddrSpaceError, GuestMemoryError


def test_guest_memory_error_names_the_address_in_hex():
    err = GuestMemoryError(0x9000_0000, 4)
    assert str(err) == "guest physical address 0x9000_0000 (4 bytes) is not backed by guest RAM"
    assert (err.addr, err.size) == (0x9000_0000, 4)


def test_errors_pickle_with_their_attributes():
    err = pickle.loads(pickle.dumps(GuestMemoryError(0x1000, 8, "is read-only guest memory")))
    assert (err.addr, err.size, err.reason) == (0x1000, 8, "is read-only guest memory")
    rng = AddrRange(0x1000, 0x2000)
    err2 = pickle.loads(pickle.dumps(AddrSpaceError(f"range {rng!r} overlaps", rng)))
    assert err2.range == rng and "0x1000" in str(err2)


def test_the_two_errors_are_distinct():
    assert not issubclass(GuestMemoryError, AddrSpaceError)
    assert not issubclass(AddrSpaceError, GuestMemoryError)
