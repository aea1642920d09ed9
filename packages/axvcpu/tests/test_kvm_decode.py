"""Exit decoding on a hand-filled kvm_run page: the cases a tiny guest cannot provoke on demand.

Every value written here is one the kernel reports on the guest's behalf, so the odd ones
(widths of 3, string I/O running off the page, exits a newer kernel adds) must decode to a
defined exit rather than raise.
"""

from __future__ import annotations

import typing

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import FailEntry, IoRead, IoWrite, MmioRead, MmioWrite, Nothing, PendingReadError, SystemDown, Unsupported
from axvcpu.backends.kvm.decode import ExitDecoder

from .kvm_guest import require_ffi

PAGE = 4096
DATA = PAGE  # where KVM puts port I/O data: the page after kvm_run


class Page(typing.NamedTuple):
    decoder: ExitDecoder
    run: typing.Any
    raw: bytearray
    lib: typing.Any


@pytest.fixture
def page() -> Page:
    module = require_ffi()
    raw = bytearray(2 * PAGE)
    run = module.ffi.from_buffer("struct kvm_run *", raw)
    decoder = ExitDecoder(module.ffi, module.lib, run, raw, lambda code: "at RIP 0x1234" + (", code" if code else ""))
    return Page(decoder, run, raw, module.lib)


def io_exit(page: Page, *, out: bool, port: int, size: int, count: int, offset: int = DATA) -> None:
    page.run.exit_reason = page.lib.KVM_EXIT_IO
    page.run.io.direction = page.lib.KVM_EXIT_IO_OUT if out else page.lib.KVM_EXIT_IO_IN
    page.run.io.port, page.run.io.size, page.run.io.count, page.run.io.data_offset = port, size, count, offset


def test_out_reads_the_data_area(page: Page) -> None:
    page.raw[DATA : DATA + 2] = b"\xef\xbe"
    io_exit(page, out=True, port=0x3F8, size=2, count=1)
    assert page.decoder.decode() == IoWrite(0x3F8, AccessWidth.WORD, 0xBEEF)
    assert page.decoder.io_left == 0


def test_in_is_answered_into_the_data_area_cut_to_width(page: Page) -> None:
    io_exit(page, out=False, port=0x71, size=1, count=1)
    assert page.decoder.decode() == IoRead(0x71, AccessWidth.BYTE)
    assert page.raw[DATA] == 0xFF  # all-ones until answered
    page.decoder.complete_read(0x1_42)
    assert page.raw[DATA : DATA + 2] == b"\x42\x00"  # one byte written, nothing beyond it
    with pytest.raises(PendingReadError):
        page.decoder.complete_read(1)


def test_string_in_answers_each_element_into_its_own_slot(page: Page) -> None:
    io_exit(page, out=False, port=0x60, size=2, count=3)
    for i, value in enumerate((0x1111, 0x2222, 0x3333)):
        exit_reason = page.decoder.decode() if i == 0 else page.decoder.next_io()
        assert exit_reason == IoRead(0x60, AccessWidth.WORD)
        page.decoder.complete_read(value)
        assert page.decoder.io_left == 2 - i
    assert page.raw[DATA : DATA + 6] == bytes.fromhex("1111 2222 3333")


@pytest.mark.parametrize(("size", "count", "offset"), [
    (3, 1, DATA),  # no such port width
    (1, 0, DATA),  # nothing to transfer
    (4, 1025, DATA),  # string I/O running past the mapping
    (1, 1, 2 * PAGE),  # data outside the mapping
])
def test_unusable_port_io_is_unsupported_not_an_exception(page: Page, size: int, count: int, offset: int) -> None:
    io_exit(page, out=True, port=0x3F8, size=size, count=count, offset=offset)
    exit_reason = page.decoder.decode()
    assert isinstance(exit_reason, Unsupported) and exit_reason.code == page.lib.KVM_EXIT_IO
    assert "port 0x3f8" in exit_reason.detail
    assert page.decoder.io_left == 0


def test_mmio_write_read_and_bad_length(page: Page) -> None:
    run = page.run
    run.exit_reason = page.lib.KVM_EXIT_MMIO
    run.mmio.phys_addr, run.mmio.len, run.mmio.is_write = 0xFEE0_0000, 8, 1
    run.mmio.data = list(range(1, 9))
    assert page.decoder.decode() == MmioWrite(GuestPhysAddr(0xFEE0_0000), AccessWidth.QWORD, 0x0807_0605_0403_0201)
    run.mmio.len, run.mmio.is_write = 2, 0
    assert page.decoder.decode() == MmioRead(GuestPhysAddr(0xFEE0_0000), AccessWidth.WORD)
    page.decoder.complete_read(0xABCD)
    assert list(run.mmio.data)[:3] == [0xCD, 0xAB, 3]
    run.mmio.len = 3
    exit_reason = page.decoder.decode()
    assert isinstance(exit_reason, Unsupported) and "length 3" in exit_reason.detail


def test_system_events(page: Page) -> None:
    lib, run = page.lib, page.run
    run.exit_reason = lib.KVM_EXIT_SYSTEM_EVENT
    run.system_event.type = lib.KVM_SYSTEM_EVENT_SHUTDOWN
    assert page.decoder.decode() == SystemDown(0)
    run.system_event.type = lib.KVM_SYSTEM_EVENT_RESET
    assert page.decoder.decode() == SystemDown(0, reset=True)
    run.system_event.type = lib.KVM_SYSTEM_EVENT_CRASH
    crash = page.decoder.decode()
    assert isinstance(crash, FailEntry) and "KVM_SYSTEM_EVENT_CRASH" in crash.detail and "RIP" in crash.detail
    run.system_event.type = 99
    assert page.decoder.decode() == Unsupported(lib.KVM_EXIT_SYSTEM_EVENT, "KVM_EXIT_SYSTEM_EVENT type 99")


def test_failures_name_the_reason_and_rip(page: Page) -> None:
    lib, run = page.lib, page.run
    run.exit_reason = lib.KVM_EXIT_FAIL_ENTRY
    run.fail_entry.hardware_entry_failure_reason = 0x8000_0021
    failed = page.decoder.decode()
    assert failed == FailEntry(0x8000_0021, failed.detail)
    assert "invalid guest state" in failed.detail and "RIP 0x1234" in failed.detail

    run.exit_reason = lib.KVM_EXIT_INTERNAL_ERROR
    run.emulation_failure.suberror = lib.KVM_INTERNAL_ERROR_EMULATION
    run.emulation_failure.flags = lib.KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES
    run.emulation_failure.insn_size = 3
    run.emulation_failure.insn_bytes = [0x0F, 0xC7, 0x0E] + [0] * 12
    failed = page.decoder.decode()
    assert failed.hardware_entry_failure_reason == lib.KVM_INTERNAL_ERROR_EMULATION
    assert "KVM_INTERNAL_ERROR_EMULATION" in failed.detail and "0f c7 0e" in failed.detail

    run.internal.suberror = lib.KVM_INTERNAL_ERROR_DELIVERY_EV
    run.internal.ndata = 200  # more than the 16 words there are: must not read past them
    failed = page.decoder.decode()
    assert "KVM_INTERNAL_ERROR_DELIVERY_EV" in failed.detail and ", code" in failed.detail

    run.exit_reason = lib.KVM_EXIT_SHUTDOWN
    assert "triple fault" in page.decoder.decode().detail


def test_other_exits_are_unsupported_with_their_name(page: Page) -> None:
    lib, run = page.lib, page.run
    run.exit_reason = lib.KVM_EXIT_DEBUG
    assert page.decoder.decode() == Unsupported(lib.KVM_EXIT_DEBUG, "KVM_EXIT_DEBUG")
    run.exit_reason = 4321  # a reason from a newer kernel
    assert page.decoder.decode() == Unsupported(4321, "KVM exit reason 4321")
    run.exit_reason = lib.KVM_EXIT_INTR
    assert page.decoder.decode() == Nothing()


def test_the_c_decoder_packs_the_hot_exits(page: Page) -> None:
    """axv_decode: a single OUT/IN and an MMIO access come back packed, with no Python field reads."""
    lib = page.lib
    page.raw[DATA : DATA + 4] = b"\x78\x56\x34\xf2"
    io_exit(page, out=True, port=0xCFC, size=4, count=1)
    packed = lib.axv_decode(page.run, len(page.raw), page.decoder.mmio_out)
    assert packed & 7 == lib.AXV_EXIT_PIO_OUT and packed >> 24 == 0xF234_5678  # all 32 bits, positive
    io_exit(page, out=True, port=0x60, size=2, count=3)  # string I/O: left to Python
    assert lib.axv_decode(page.run, len(page.raw), page.decoder.mmio_out) == lib.AXV_EXIT_OTHER
    page.run.exit_reason = lib.KVM_EXIT_HLT
    assert lib.axv_decode(page.run, len(page.raw), page.decoder.mmio_out) == lib.AXV_EXIT_OTHER


def test_an_in_at_another_offset_answers_there_even_when_its_exit_is_reused(page: Page) -> None:
    io_exit(page, out=False, port=0x71, size=2, count=1)
    first = page.decoder.decode()
    page.decoder.complete_read(0x1111)
    io_exit(page, out=False, port=0x71, size=2, count=1, offset=DATA + 64)
    second = page.decoder.decode()
    assert second is first  # the same frozen exit, not a new object
    page.decoder.complete_read(0x2222)
    assert page.raw[DATA : DATA + 2] == b"\x11\x11" and page.raw[DATA + 64 : DATA + 66] == b"\x22\x22"


def test_reused_exits_keep_their_own_values_and_the_cache_is_bounded(page: Page) -> None:
    for value in range(6000):  # more distinct writes than the cache keeps
        page.raw[DATA : DATA + 2] = value.to_bytes(2, "little")
        io_exit(page, out=True, port=0x80, size=2, count=1)
        assert page.decoder.decode() == IoWrite(0x80, AccessWidth.WORD, value)
    run = page.run
    run.exit_reason, run.mmio.phys_addr, run.mmio.len, run.mmio.is_write = page.lib.KVM_EXIT_MMIO, 0x1000, 4, 1
    for value in (5, 6, 5):
        run.mmio.data = list(value.to_bytes(8, "little"))
        assert page.decoder.decode() == MmioWrite(GuestPhysAddr(0x1000), AccessWidth.DWORD, value)
    assert len(page.decoder._cache) <= 4096
