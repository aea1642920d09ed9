"""The x86_64 4-level page walk over page tables a test writes into guest memory (SDM vol. 3A
4.5): 4 KiB, 2 MiB and 1 GiB pages, permissions gathered over the levels, faults named; and the
riscv64 walk in Sv57 (five levels, a 256 TiB leaf), the mode Debian's kernel runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from axaddrspace import GuestMemory, GuestMemoryRegion
from axvcpu import ScriptedVCpu, VCpu
from axvisor.guest_inspect import register_names, translate
from axvisor.manager import BadRequest

P, RW, US, PS = 1, 2, 4, 0x80
XD = 1 << 63
PML4, PDPT, PD, PT = 0x1000, 0x2000, 0x3000, 0x4000
CR0_PG, CR4_PAE, CR4_LA57, EFER_LMA, EFER_NXE = 1 << 31, 1 << 5, 1 << 12, 1 << 10, 1 << 11


@pytest.fixture
def memory() -> Iterator[GuestMemory]:
    ram = GuestMemory([GuestMemoryRegion.anonymous(0, 0x10_0000)])
    entry = ram.write_u64
    entry(PML4 + 8 * 0, PDPT | P | RW | US)
    entry(PDPT + 8 * 0, PD | P | RW | US)
    entry(PD + 8 * 0, PT | P | RW)  # supervisor-only below here
    entry(PT + 8 * 5, 0x9000 | P | XD)  # VA 0x5000: 4 KiB, read-only, not executable
    entry(PD + 8 * 1, 0x40_0000 | P | RW | US | PS)  # VA 0x20_0000: a 2 MiB page at 0x40_0000
    entry(PDPT + 8 * 1, 0x8000_0000 | P | PS)  # VA 0x4000_0000: a 1 GiB page at 2 GiB
    yield ram
    ram.close()


def vcpu(cr0: int = CR0_PG, cr4: int = CR4_PAE, efer: int = EFER_LMA | EFER_NXE) -> VCpu:
    arch = ScriptedVCpu([])
    for name, value in (("cr0", cr0), ("cr3", PML4), ("cr4", cr4), ("efer", efer)):
        arch.set_register(name, value)
    return VCpu(0, arch)


def test_pages_of_each_size_and_permissions_over_the_levels(memory: GuestMemory) -> None:
    small = translate(vcpu(), memory, "x86_64", 0x5123)
    assert (small.gpa, small.page_size, small.mode) == (0x9123, 4096, "x86-4level")
    assert [addr for addr, _ in small.levels] == [PML4, PDPT, PD, PT + 8 * 5]
    assert (small.writable, small.user, small.executable) == (False, False, False)
    big = translate(vcpu(), memory, "x86_64", 0x2F_FFFF)
    assert (big.gpa, big.page_size, big.writable, big.user, big.executable) == (0x4F_FFFF, 2 << 20, True, True, True)
    huge = translate(vcpu(), memory, "x86_64", 0x4000_0010)
    assert (huge.gpa, huge.page_size, len(huge.levels)) == (0x8000_0010, 1 << 30, 2)
    # XD counts only with EFER.NXE
    assert translate(vcpu(efer=EFER_LMA), memory, "x86_64", 0x5000).executable


def test_faults_are_named_not_raised(memory: GuestMemory) -> None:
    missing = translate(vcpu(), memory, "x86_64", 0x6000)
    assert missing.gpa is None and missing.fault is not None and "PT entry" in missing.fault
    assert "not present" in missing.fault
    assert "not canonical" in (translate(vcpu(), memory, "x86_64", 0x0000_8000_0000_0000).fault or "")
    memory.write_u64(PDPT + 8 * 3, 0x7000_0000 | P)  # VA 0xC000_0000: its PD lies outside guest RAM
    outside = translate(vcpu(), memory, "x86_64", 0xC000_0000)
    assert outside.gpa is None and "outside guest RAM" in (outside.fault or "")


def test_paging_modes(memory: GuestMemory) -> None:
    bare = translate(vcpu(cr0=0), memory, "x86_64", 0x1234)
    assert (bare.gpa, bare.mode) == (0x1234, "bare")
    with pytest.raises(BadRequest, match="5-level"):
        translate(vcpu(cr4=CR4_PAE | CR4_LA57), memory, "x86_64", 0)
    with pytest.raises(BadRequest, match="32-bit paging"):
        translate(vcpu(efer=0), memory, "x86_64", 0)
    with pytest.raises(BadRequest) as bad:
        translate(vcpu(), memory, "x86_64", 1 << 64)
    assert bad.value.field == "gva"


def test_register_names_per_architecture() -> None:
    assert {"rip", "rsp", "cr3", "efer"} <= set(register_names("x86_64"))
    assert {"pc", "priv", "sp", "satp", "mcause"} <= set(register_names("riscv64"))
    with pytest.raises(BadRequest):
        register_names("aarch64")


# -- riscv64: Sv57, the mode Debian's kernel runs (satp 0xa003...) -------------------------------------

SV57_ROOT, SV57_L3, SV57_L2, SV57_L1, SV57_L0 = 0x5000, 0x6000, 0x7000, 0x8000, 0x9000
RV_V, RV_R, RV_W, RV_X, RV_U = 1, 2, 4, 8, 16
SV57_VA = 0xFF12_3456_789A_B000  # VPN[4..0] = 0x112, 0x34, 0x159, 0x1E2, 0xAB


def riscv_vcpu(satp: int) -> VCpu:
    arch = ScriptedVCpu([])
    arch.set_register("satp", satp)
    return VCpu(0, arch)


def sv57_tables(memory: GuestMemory) -> int:
    """A 4 KiB page at SV57_VA through all five levels and a 256 TiB petapage; satp for them."""
    entry = memory.write_u64
    vpn = [(SV57_VA >> (12 + 9 * level)) & 0x1FF for level in range(5)]
    entry(SV57_ROOT + 8 * vpn[4], (SV57_L3 >> 12) << 10 | RV_V)
    entry(SV57_L3 + 8 * vpn[3], (SV57_L2 >> 12) << 10 | RV_V)
    entry(SV57_L2 + 8 * vpn[2], (SV57_L1 >> 12) << 10 | RV_V)
    entry(SV57_L1 + 8 * vpn[1], (SV57_L0 >> 12) << 10 | RV_V)
    entry(SV57_L0 + 8 * vpn[0], (0xC000 >> 12) << 10 | RV_V | RV_R | RV_W | RV_U)
    entry(SV57_ROOT + 8 * 1, ((1 << 48) >> 12) << 10 | RV_V | RV_R | RV_X)  # VA 1 << 48: a petapage
    return 10 << 60 | SV57_ROOT >> 12


def test_riscv_sv57_walks_five_levels(memory: GuestMemory) -> None:
    satp = sv57_tables(memory)
    small = translate(riscv_vcpu(satp), memory, "riscv64", SV57_VA + 0x10)
    assert (small.gpa, small.page_size, small.mode, len(small.levels)) == (0xC010, 4096, "sv57", 5)
    assert small.levels[0][0] == SV57_ROOT + 8 * 0x112
    assert (small.writable, small.user, small.executable) == (True, True, False)
    peta = translate(riscv_vcpu(satp), memory, "riscv64", (1 << 48) + 0x1234_5678)
    assert (peta.gpa, peta.page_size, len(peta.levels), peta.executable) == ((1 << 48) + 0x1234_5678, 1 << 48, 1, True)


def test_riscv_sv57_faults_are_named(memory: GuestMemory) -> None:
    satp = sv57_tables(memory)
    wild = translate(riscv_vcpu(satp), memory, "riscv64", 1 << 57)
    assert wild.gpa is None and "not sign-extended from bit 56" in (wild.fault or "")
    memory.write_u64(SV57_ROOT + 8 * 2, ((1 << 48) + 0x1000 >> 12) << 10 | RV_V | RV_R)  # misaligned petapage
    odd = translate(riscv_vcpu(satp), memory, "riscv64", 2 << 48)
    assert odd.gpa is None and "level 4 leaf" in (odd.fault or "") and "misaligned" in (odd.fault or "")
    empty = translate(riscv_vcpu(satp), memory, "riscv64", SV57_VA + 0x1000)
    assert empty.gpa is None and "level 0 entry" in (empty.fault or "") and "not valid" in (empty.fault or "")


def test_riscv_satp_mode_the_walker_does_not_know_is_named(memory: GuestMemory) -> None:
    with pytest.raises(BadRequest, match=r"satp mode 11 .*\(bare, sv39, sv48, sv57\)"):
        translate(riscv_vcpu(11 << 60), memory, "riscv64", 0)
