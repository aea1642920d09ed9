"""Quiet ports: accesses to ports no device answers are served in axv_run's C loop after the first."""

from __future__ import annotations

import pytest

from axaddrspace import AccessWidth
from axvcpu import Halt, IoRead, IoWrite

from .kvm_guest import kvm_guest

COM1 = 0x3F8
POST = 0x80
THREE_OUTS_AND_AN_IN = bytes.fromhex(
    "66 ba 80 00"  # mov dx, 0x80
    "b0 01"  # mov al, 1
    "ee"  # out dx, al           ; the first access to a quiet port still exits
    "ee"  # out dx, al           ; served in C
    "ee"  # out dx, al           ; served in C
    "ec"  # in al, dx            ; served in C: all-ones
    "66 ba f8 03"  # mov dx, 0x3f8
    "ee"  # out dx, al           ; shows what the in read
    "f4"  # hlt
)


def bitmap(*ports: int) -> bytes:
    bits = bytearray(8192)
    for port in ports:
        bits[port // 8] |= 1 << (port % 8)
    return bytes(bits)


def test_after_the_first_access_a_quiet_port_never_exits_and_is_counted() -> None:
    counted: list[tuple[int, int]] = []
    with kvm_guest(THREE_OUTS_AND_AN_IN) as guest:
        guest.backend.set_quiet_ports(bitmap(POST), lambda reads, writes: counted.append((reads, writes)))
        assert guest.vcpu.run() == IoWrite(POST, AccessWidth.BYTE, 1)
        assert counted == []
        assert guest.vcpu.run() == IoWrite(COM1, AccessWidth.BYTE, 0xFF)  # the in was answered all-ones
        assert counted == [(1, 2)]
        assert guest.vcpu.run() == Halt()
        assert counted == [(1, 2)]


def test_without_quiet_ports_every_access_exits() -> None:
    with kvm_guest(THREE_OUTS_AND_AN_IN) as guest:
        for _ in range(3):
            assert guest.vcpu.run() == IoWrite(POST, AccessWidth.BYTE, 1)
        assert guest.vcpu.run() == IoRead(POST, AccessWidth.BYTE)


def test_an_access_reaching_past_the_quiet_ports_exits() -> None:
    """A word at 0x7f covers 0x7f and 0x80: quiet only if both are."""
    code = bytes.fromhex("66 ba 7f 00 66 b8 02 01 66 ef 66 ef f4")  # mov dx, 0x7f; mov ax, 0x102; out dx, ax x2
    with kvm_guest(code) as guest:
        guest.backend.set_quiet_ports(bitmap(POST), lambda reads, writes: None)
        assert guest.vcpu.run() == IoWrite(0x7F, AccessWidth.WORD, 0x102)
        assert guest.vcpu.run() == IoWrite(0x7F, AccessWidth.WORD, 0x102)


def test_the_flag_and_the_bitmap_size_match_the_c_side() -> None:
    from axvcpu.backends.kvm import vcpu

    with kvm_guest(bytes.fromhex("f4")) as guest:
        assert vcpu._QUIET == guest.backend.vm.lib.AXV_EXIT_QUIET
        with pytest.raises(ValueError, match="8192 bytes"):
            guest.backend.set_quiet_ports(b"\xff", lambda reads, writes: None)
