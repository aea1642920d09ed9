"""Random kvm_run pages into the KVM exit decoder.

The kernel fills kvm_run on the guest's behalf: port numbers, widths, string-I/O counts and the
offset of their data, MMIO lengths, exit reasons a newer kernel may add. Whatever the page
holds, ``decode`` must give a defined exit (an exit dataclass or ``Unsupported``), read only
where the page says the data is, inside the mapping, and answer reads only into those bytes.
"""

from __future__ import annotations

import mmap
import random
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axvcpu import FailEntry, Halt, IoRead, IoWrite, MmioRead, MmioWrite, Nothing, SystemDown, Unsupported
from axvcpu.backends.kvm.decode import ExitDecoder, constant_names

from .kvm_guest import require_ffi

PAGE = 4096
MAPPING = 3 * PAGE  # KVM_GET_VCPU_MMAP_SIZE on x86: kvm_run, the PIO data page, the coalesced MMIO ring
DEFINED = (FailEntry, Halt, IoRead, IoWrite, MmioRead, MmioWrite, Nothing, SystemDown, Unsupported)


@pytest.fixture(scope="module")
def kvm() -> ModuleType:
    return require_ffi()


def biased(common: list[int], bits: int) -> st.SearchStrategy[int]:
    return st.one_of(*[st.sampled_from(common)] * 3, st.integers(0, (1 << bits) - 1))


exit_fields = st.fixed_dictionaries(
    {
        "known": st.booleans(),
        "any_reason": st.integers(0, (1 << 32) - 1),
        "io_size": biased([1, 2, 4, 0, 3, 8], 8),
        "io_count": biased([1, 1, 2, 7, 0, 1024, 3073, 0xFFFF_FFFF], 32),
        "io_offset": biased([PAGE, PAGE, 0, MAPPING - 4, MAPPING - 1, MAPPING, 1 << 63], 64),
        "io_out": st.booleans(),
        "mmio_len": biased([1, 2, 4, 8, 0, 3, 16], 32),
    }
)


@settings(max_examples=200)
@given(
    seed=st.integers(0, 2**32 - 1),
    exits=st.lists(exit_fields, min_size=1, max_size=3),
    answers=st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=4),
)
def test_random_kvm_run_pages_decode_to_defined_exits(
    kvm: ModuleType, seed: int, exits: list[dict], answers: list[int]
) -> None:
    ffi, lib = kvm.ffi, kvm.lib
    rng = random.Random(seed)
    raw = mmap.mmap(-1, MAPPING)  # like the real mapping: a write past it raises instead of growing it
    run = ffi.from_buffer("struct kvm_run *", raw)
    decoder = ExitDecoder(ffi, lib, run, raw, lambda code: "at RIP 0x1234")
    known = sorted(constant_names(lib, "KVM_EXIT_"))
    mmio_data = ffi.offsetof("struct kvm_run", "mmio") + ffi.offsetof("axv_exit_mmio", "data")
    for fields in exits:
        raw[:] = rng.randbytes(MAPPING)
        run.exit_reason = rng.choice(known) if fields["known"] else fields["any_reason"]
        run.io.size, run.io.count, run.io.data_offset = fields["io_size"], fields["io_count"], fields["io_offset"]
        run.io.direction = lib.KVM_EXIT_IO_OUT if fields["io_out"] else lib.KVM_EXIT_IO_IN
        run.mmio.len = fields["mmio_len"]
        before = bytes(raw)
        reason = int(run.exit_reason)
        io = (reason == lib.KVM_EXIT_IO, int(run.io.size), int(run.io.count), int(run.io.data_offset))
        # The bytes a decode may read or answer into: the PIO data the page points at, mmio.data.
        allowed = [(mmio_data, mmio_data + 8)]
        if io[0] and io[3] + io[1] * io[2] <= MAPPING:
            allowed.append((io[3], io[3] + io[1] * io[2]))
        exit_reason = decoder.decode()
        element = 0
        while True:
            assert isinstance(exit_reason, DEFINED), exit_reason
            if isinstance(exit_reason, IoRead | IoWrite):
                slot = io[3] + element * io[1]
                assert io[0] and int(exit_reason.width) == io[1] and slot + io[1] <= MAPPING
                if isinstance(exit_reason, IoWrite):
                    assert exit_reason.data == int.from_bytes(before[slot : slot + io[1]], "little")
                element += 1
            if isinstance(exit_reason, MmioWrite):
                width = int(exit_reason.width)
                assert exit_reason.data == int.from_bytes(before[mmio_data : mmio_data + width], "little")
            if isinstance(exit_reason, IoRead | MmioRead):
                decoder.complete_read(answers[element % len(answers)])
            if isinstance(exit_reason, Unsupported):
                assert exit_reason.code == reason and isinstance(exit_reason.detail, str)
            if isinstance(exit_reason, FailEntry):
                assert isinstance(exit_reason.detail, str)
            if not decoder.io_left:
                break
            exit_reason = decoder.next_io()
        assert element == 0 or element == io[2]
        after = bytearray(raw)
        for start, end in allowed:
            after[start:end] = before[start:end]
        assert after == before, "the decoder wrote outside the data the page points at"
    ffi.release(run)
    raw.close()
