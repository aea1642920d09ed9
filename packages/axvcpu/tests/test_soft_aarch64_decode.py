"""The soft aarch64 vCPU's pure parts, without an engine: load/store decoding (address, size,
direction, syndrome fields), ESR and vector arithmetic, and the stage 1 walk's fault codes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from axaddrspace import GuestMemory, GuestMemoryRegion, GuestPhysAddr
from axvcpu.backends.soft.aarch64_decode import MemAccess, decode_access, loaded_value
from axvcpu.backends.soft.aarch64_exceptions import (
    VECTOR_IRQ,
    VECTOR_SYNC,
    data_abort_esr,
    entry_pstate,
    immediate_esr,
    switches_stack,
    vector_offset,
)
from axvcpu.backends.soft.aarch64_mmu import Walk, fault_status

from .aarch64_asm import encode, requires_aarch64_toolchain

PC = 0x4000_1000
REGS = {1: 0x1000, 2: 0x40, 3: 0xFFFF_FFFF_FFFF_FFF8, 4: 0x1_0000_0004}
SP = 0x8000


def decode(line: str) -> MemAccess | None:
    return decode_access(encode(line), PC, lambda n: REGS.get(n, 0), SP)


@requires_aarch64_toolchain
@pytest.mark.parametrize(
    ("line", "addr", "size", "write", "isv"),
    [
        ("ldr x0, [x1, #16]", 0x1010, 8, False, True),
        ("ldrb w0, [x1, #4095]", 0x1FFF, 1, False, True),
        ("strh w5, [sp, #2]", SP + 2, 2, True, True),
        ("ldur w0, [x1, #-4]", 0xFFC, 4, False, True),
        ("ldr x0, [x1], #8", 0x1000, 8, False, False),  # post-index: writeback, no syndrome
        ("ldr x0, [x1, #8]!", 0x1008, 8, False, False),
        ("ldtr x0, [x1, #8]", 0x1008, 8, False, True),
        ("ldr w0, [x1, x2]", 0x1040, 4, False, True),
        ("ldr x0, [x1, x2, lsl #3]", 0x1200, 8, False, True),
        ("ldr x0, [x1, w3, sxtw]", 0x1000 - 8, 8, False, True),
        ("ldr x0, [x1, w4, uxtw]", 0x1004, 8, False, True),
        ("ldr w0, .+8", PC + 8, 4, False, True),
        ("ldp x0, x5, [x1, #-16]", 0xFF0, 16, False, False),
        ("stp w0, w5, [x1], #8", 0x1000, 8, True, False),
        ("ldp q0, q1, [x1, #32]", 0x1020, 32, False, False),
        ("ldr q0, [x1, #16]", 0x1010, 16, False, False),
        ("str d0, [x1, x2]", 0x1040, 8, True, False),
        ("ldxr x0, [x1]", 0x1000, 8, False, False),
        ("stlr w0, [x1]", 0x1000, 4, True, True),
        ("ldaxp x0, x5, [x1]", 0x1000, 16, False, False),
        ("ld1 {v0.16b, v1.16b}, [x1]", 0x1000, 32, False, False),
        ("st4 {v0.4s, v1.4s, v2.4s, v3.4s}, [x1], #64", 0x1000, 64, True, False),
        ("ld1 {v0.d}[1], [x1]", 0x1000, 8, False, False),
        ("ld3r {v0.4h, v1.4h, v2.4h}, [x1]", 0x1000, 6, False, False),
        ("dc zva, x4", 0x1_0000_0000, 64, True, False),
        ("dc civac, x1", 0x1000, 1, True, False),
    ],
)
def test_decode_gives_address_size_direction_and_whether_the_syndrome_describes_it(
    line: str, addr: int, size: int, write: bool, isv: bool
) -> None:
    access = decode(line)
    assert access is not None
    assert (access.addr, access.size, access.write, access.isv) == (addr, size, write, isv)


@requires_aarch64_toolchain
@pytest.mark.parametrize("line", ["prfm pldl1keep, [x1]", "add x0, x1, x2", "wfi", "svc #0"])
def test_what_accesses_no_data_is_not_decoded(line: str) -> None:
    assert decode(line) is None


@requires_aarch64_toolchain
@pytest.mark.parametrize(
    ("line", "rt", "signed", "sf", "acqrel", "value", "loaded"),
    [
        ("ldrsb x7, [x1]", 7, True, True, False, 0x80, 0xFFFF_FFFF_FFFF_FF80),
        ("ldrsh w7, [x1]", 7, True, False, False, 0x8000, 0xFFFF_8000),
        ("ldrsw x7, [x1]", 7, True, True, False, 0x8000_0000, 0xFFFF_FFFF_8000_0000),
        ("ldrh w7, [x1]", 7, False, False, False, 0x1_8000, 0x8000),
        ("ldar x30, [x1]", 30, False, True, True, 5, 5),
    ],
)
def test_decode_gives_the_register_and_its_extension(
    line: str, rt: int, signed: bool, sf: bool, acqrel: bool, value: int, loaded: int
) -> None:
    access = decode(line)
    assert access is not None
    assert (access.rt, access.signed, access.sf, access.acqrel) == (rt, signed, sf, acqrel)
    assert loaded_value(access, value) == loaded


def test_data_abort_syndrome_fields() -> None:
    access = MemAccess(0x1000, 2, write=True, rt=7, signed=True, sf=True, acqrel=True, isv=True)
    esr = data_abort_esr(access, 0x10, from_el0=False, with_syndrome=True)
    assert esr >> 26 == 0x25 and esr >> 25 & 1  # data abort, current EL; IL
    assert esr >> 24 & 1 and esr >> 22 & 3 == 1 and esr >> 21 & 1 and esr >> 16 & 31 == 7  # ISV SAS SSE SRT
    assert esr >> 15 & 1 and esr >> 14 & 1 and esr >> 6 & 1 and esr & 0x3F == 0x10  # SF AR WnR DFSC
    bare = data_abort_esr(access, 0x07, from_el0=True, with_syndrome=False)
    assert bare == (0x24 << 26 | 1 << 25 | 1 << 6 | 0x07)  # from EL0; no instruction syndrome


@requires_aarch64_toolchain
def test_dc_zva_faults_as_a_write_not_as_cache_maintenance() -> None:
    """ISS.CM is for cache maintenance only; DC ZVA is a store (Linux's is_write_abort needs
    WnR set and CM clear, else a memset's DC ZVA on a fresh page faults forever)."""
    zva, civac = decode("dc zva, x4"), decode("dc civac, x1")
    assert zva is not None and civac is not None
    esr = data_abort_esr(zva, 0x07, from_el0=True, with_syndrome=True)
    assert esr >> 6 & 1 and not esr >> 8 & 1  # WnR, not CM
    assert data_abort_esr(civac, 0x07, from_el0=True, with_syndrome=True) >> 8 & 1  # CM


def test_immediates_vectors_and_entry_state() -> None:
    assert immediate_esr(0x15, 0xD4000001 | 0x42 << 5) == 0x15 << 26 | 1 << 25 | 0x42  # svc #0x42
    assert vector_offset(0x3C5, VECTOR_SYNC) == 0x200  # EL1h
    assert vector_offset(0x3C4, VECTOR_IRQ) == 0x080  # EL1t
    assert vector_offset(0x000, VECTOR_IRQ) == 0x480  # EL0, AArch64
    assert vector_offset(0x010, VECTOR_SYNC) == 0x600  # AArch32 EL0
    assert entry_pstate() == 0x3C5
    assert not switches_stack(0x3C5) and switches_stack(0x3C4) and switches_stack(0x000)


# -- the walk -----------------------------------------------------------------------------------

TABLE = 0x4000_0000
TCR_39_4K = 25 | 1 << 23  # T0SZ 25, 4K granule, TTBR1 walks disabled
AF = 1 << 10


@pytest.fixture
def memory() -> Iterator[GuestMemory]:
    mem = GuestMemory([GuestMemoryRegion.anonymous(TABLE, 0x10_0000)])
    put = mem.write_u64
    put(GuestPhysAddr(TABLE + 8 * 1), (TABLE + 0x1000) | 3)  # L1[1] -> L2 (VA 0x4000_0000..)
    put(GuestPhysAddr(TABLE + 0x1000), 0x4000_0000 | AF | 1)  # L2[0]: 2 MiB block, EL1 RW
    put(GuestPhysAddr(TABLE + 0x1000 + 8), (TABLE + 0x2000) | 3)  # L2[1] -> L3 (VA 0x4020_0000..)
    put(GuestPhysAddr(TABLE + 0x2000), 0x4000_0000 | AF | 3 << 6 | 3)  # L3[0]: EL0 and EL1 read-only
    put(GuestPhysAddr(TABLE + 0x2008), 0x4000_1000 | AF | 1 << 6 | 1 << 54 | 3)  # L3[1]: EL0 RW, UXN
    put(GuestPhysAddr(TABLE + 0x2010), 0x4000_2000 | 3)  # L3[2]: access flag clear
    put(GuestPhysAddr(TABLE + 8 * 2), (0x7FF0_0000) | 3)  # L1[2] -> a table outside RAM
    yield mem
    mem.close()


def walk(memory: GuestMemory, tcr: int = TCR_39_4K, sctlr: int = 1) -> Walk:
    return Walk(memory=memory, sctlr=sctlr, tcr=tcr, ttbr0=TABLE, ttbr1=0)


@pytest.mark.parametrize(
    ("va", "size", "write", "fetch", "el0", "expected"),
    [
        (0x4000_0010, 8, True, False, False, None),  # the block is EL1 RW
        (0x4000_0010, 8, False, False, True, (0x0E, 0x4000_0010)),  # EL0 has no access: permission L2
        (0x4020_0000, 4, True, False, True, (0x0F, 0x4020_0000)),  # read-only: permission L3
        (0x4020_0000, 4, False, False, True, None),
        (0x4020_1000, 4, False, True, True, (0x0F, 0x4020_1000)),  # UXN
        (0x4020_1000, 4, False, True, False, (0x0F, 0x4020_1000)),  # EL0-writable: never EL1-executable
        (0x4020_2008, 8, False, False, False, (0x0B, 0x4020_2008)),  # access flag fault L3
        (0x4020_3000, 1, False, False, False, (0x07, 0x4020_3000)),  # invalid L3: translation L3
        (0x4020_1FFC, 8, False, False, True, (0x0B, 0x4020_2000)),  # crosses into the AF-clear page
        (0xC000_0000, 4, False, False, False, (0x05, 0xC000_0000)),  # L1[3] invalid: translation L1
        (0x8000_0000, 4, False, False, False, (0x16, 0x8000_0000)),  # table outside RAM: walk abort L2
        (0x80_0000_0000, 4, False, False, False, (0x04, 0x80_0000_0000)),  # beyond T0SZ: level 0
        (0xFFFF_FF80_0000_0000, 4, False, False, False, (0x04, 0xFFFF_FF80_0000_0000)),  # EPD1
    ],
)
def test_the_walk_names_the_fault_and_its_address(
    memory: GuestMemory, va: int, size: int, write: bool, fetch: bool, el0: bool, expected: tuple[int, int] | None
) -> None:
    assert fault_status(walk(memory), va, size, write=write, fetch=fetch, el0=el0) == expected


def test_with_the_mmu_off_nothing_faults_in_the_walk(memory: GuestMemory) -> None:
    assert fault_status(walk(memory, sctlr=0), 0xC000_0000, 4, write=True, fetch=False, el0=True) is None


def test_fault_hooks_cover_everything_but_ram_and_device_windows() -> None:
    from axvcpu.backends.soft.aarch64 import hook_gaps

    covered = [(0x4000_0000, 0x1000), (0x0900_0000, 0x1000), (0x0900_1000, 0x1000)]
    assert hook_gaps(covered) == [(0, 0x08FF_FFFF), (0x0900_2000, 0x3FFF_FFFF), (0x4000_1000, (1 << 64) - 1)]
    assert hook_gaps([]) == [(0, (1 << 64) - 1)]
