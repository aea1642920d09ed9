"""The soft backend's fault decisions as pure functions: instruction bits, register values,
privilege, satp/mstatus and a plain guest memory in; the trap, the emulated instruction or the
MMIO access out. No engine runs here, and the modules load without unicorn (checked in a
process of their own)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest

from axaddrspace import AccessWidth, GuestMemory, GuestMemoryRegion
from axvcpu.backends.soft.riscv_decode import AccessKind, decode_mem
from axvcpu.backends.soft.riscv_fault import (
    MipRead,
    MmioAccess,
    TimeRead,
    Trap,
    bad_access,
    data_fault,
    ecall_trap,
    fetch_fault,
    illegal_instruction,
    loaded_value,
    mip_read,
    mmio_access,
    reads_mip,
)
from axvcpu.backends.soft.riscv_mmu import Access, read_virtual
from axvcpu.riscv_sbi import SbiCodeFence

U64 = (1 << 64) - 1
CSR_TIME, CSR_MIP = 0xC01, 0x344
A0, A1, A6, A7, T0 = 10, 11, 16, 17, 5
ILLEGAL, LOAD_ACCESS, STORE_ACCESS = 2, 5, 7
INSN_ACCESS, INSN_PAGE_FAULT, LOAD_PAGE_FAULT, STORE_PAGE_FAULT = 1, 12, 13, 15


# -- encoders (unprivileged spec, "RV32/64G Instruction Set Listings") ------------------------


def csr(funct3: int, rd: int, rs1: int, number: int) -> int:
    return number << 20 | rs1 << 15 | funct3 << 12 | rd << 7 | 0x73


def load(funct3: int, rd: int, rs1: int, imm: int) -> int:
    return (imm & 0xFFF) << 20 | rs1 << 15 | funct3 << 12 | rd << 7 | 0x03


def store(funct3: int, rs2: int, rs1: int, imm: int) -> int:
    imm &= 0xFFF
    return (imm >> 5) << 25 | rs2 << 20 | rs1 << 15 | funct3 << 12 | (imm & 0x1F) << 7 | 0x23


def amo(funct5: int, funct3: int, rd: int, rs1: int, rs2: int) -> int:
    return funct5 << 27 | rs2 << 20 | rs1 << 15 | funct3 << 12 | rd << 7 | 0x2F


RDTIME_A0 = csr(2, A0, 0, CSR_TIME)  # csrrs a0, time, x0
LD_A1_T0 = load(3, A1, T0, 0)  # ld a1, 0(t0)
LB_A0_T0_8 = load(0, A0, T0, 8)  # lb a0, 8(t0)
SW_A1_T0_M4 = store(2, A1, T0, -4)  # sw a1, -4(t0)
AMOADD_W = amo(0b00000, 2, A0, T0, A1)  # amoadd.w a0, a1, (t0)
FLW_F3_T0 = 3 << 7 | 2 << 12 | T0 << 15 | 0x07  # flw f3, 0(t0)


def regs(**values: int) -> dict[int, int]:
    names = {"a0": A0, "a1": A1, "a6": A6, "a7": A7, "t0": T0}
    return {names[name]: value for name, value in values.items()}


def reader(values: dict[int, int], seen: list[int] | None = None) -> Callable[[int], int]:
    """A GprReader over ``values`` (x0 reads 0), noting in ``seen`` each register read."""

    def gpr(n: int) -> int:
        if seen is not None:
            seen.append(n)
        return values.get(n, 0) if n else 0

    return gpr


# -- a guest memory with Sv39 page tables -------------------------------------------------------

RAM = 0x8000_0000
ROOT, L1, L0 = RAM, RAM + 0x1000, RAM + 0x2000
PAGE_A, PAGE_B = RAM + 0x3000, RAM + 0x5000  # not adjacent: a crossing read joins two pages
SV39 = 8 << 60 | ROOT >> 12
V, R, W, X, A, D = 1, 2, 4, 8, 0x40, 0x80


@pytest.fixture
def memory() -> Iterator[GuestMemory]:
    """va 0x4000_0000 -> PAGE_A, 0x4000_1000 -> PAGE_B, 0x4000_2000 unmapped."""
    mem = GuestMemory([GuestMemoryRegion.anonymous(RAM, 0x8000)])
    mem.write_u64(ROOT + 8 * 1, (L1 >> 12) << 10 | V)
    mem.write_u64(L1, (L0 >> 12) << 10 | V)
    mem.write_u64(L0, (PAGE_A >> 12) << 10 | V | R | W | A | D)
    mem.write_u64(L0 + 8, (PAGE_B >> 12) << 10 | V | R | W | A | D)
    yield mem
    mem.close()


# -- illegal instructions: rdtime is emulated, everything else traps with its bits -------------


@pytest.mark.parametrize(
    ("insn", "expected"),
    [
        (RDTIME_A0, TimeRead(A0)),
        (csr(2, 0, 0, CSR_TIME), TimeRead(0)),  # csrr x0, time: read, result dropped
        (csr(6, A1, 0, CSR_TIME), TimeRead(A1)),  # csrrsi a1, time, 0
        (csr(3, A0, 0, CSR_TIME), TimeRead(A0)),  # csrrc a0, time, x0
        (csr(1, A0, A1, CSR_TIME), Trap(ILLEGAL, csr(1, A0, A1, CSR_TIME))),  # csrrw: writes a read-only CSR
        (csr(2, A0, A1, CSR_TIME), Trap(ILLEGAL, csr(2, A0, A1, CSR_TIME))),  # csrrs with rs1 != x0 writes
        (csr(6, A0, 1, CSR_TIME), Trap(ILLEGAL, csr(6, A0, 1, CSR_TIME))),  # csrrsi with 1 writes
        (csr(2, A0, 0, 0xC00), Trap(ILLEGAL, csr(2, A0, 0, 0xC00))),  # rdcycle is not emulated
        (0xFFFF_FFFF, Trap(ILLEGAL, 0xFFFF_FFFF)),
        (0x0000, Trap(ILLEGAL, 0)),  # the defined illegal compressed instruction
        (None, Trap(ILLEGAL, 0)),  # bits that could not be fetched
    ],
)
def test_an_illegal_instruction_is_an_rdtime_to_emulate_or_a_trap(insn: int | None, expected: object) -> None:
    assert illegal_instruction(insn) == expected


@pytest.mark.parametrize(("priv", "cause"), [(0, 8), (1, 9), (3, 11)])
def test_ecall_cause_comes_from_the_privilege_not_from_unicorn(priv: int, cause: int) -> None:
    assert ecall_trap(priv) == Trap(cause, 0)


# -- load/store/AMO faults: tval is the effective address, or the page that faulted -------------


def test_a_page_fault_within_one_page_reports_the_effective_address(memory: GuestMemory) -> None:
    trap = data_fault(
        LOAD_PAGE_FAULT, LB_A0_T0_8, reader(regs(t0=0x4000_2000)), priv=1, satp=SV39, mstatus=0, memory=memory
    )
    assert trap == Trap(LOAD_PAGE_FAULT, 0x4000_2008)


def test_a_page_crossing_access_reports_the_second_page_when_the_first_translates(memory: GuestMemory) -> None:
    # ld at 0x4000_1ffc: 4 bytes in PAGE_B's page, 4 in the unmapped 0x4000_2000
    trap = data_fault(
        LOAD_PAGE_FAULT, LD_A1_T0, reader(regs(t0=0x4000_1FFC)), priv=1, satp=SV39, mstatus=0, memory=memory
    )
    assert trap == Trap(LOAD_PAGE_FAULT, 0x4000_2000)


def test_a_page_crossing_access_reports_its_start_when_the_first_page_faults(memory: GuestMemory) -> None:
    trap = data_fault(
        STORE_PAGE_FAULT,
        store(3, A1, T0, 0),  # sd a1, 0(t0)
        reader(regs(t0=0x4000_2FFC)),
        priv=1,
        satp=SV39,
        mstatus=0,
        memory=memory,
    )
    assert trap == Trap(STORE_PAGE_FAULT, 0x4000_2FFC)


def test_an_amo_that_faults_on_its_read_is_a_store_fault(memory: GuestMemory) -> None:
    trap = data_fault(
        LOAD_PAGE_FAULT, AMOADD_W, reader(regs(t0=0x4000_2010)), priv=1, satp=SV39, mstatus=0, memory=memory
    )
    assert trap == Trap(STORE_PAGE_FAULT, 0x4000_2010)
    lr_w = amo(0b00010, 2, A0, T0, 0)  # LR is a load: its fault stays a load fault
    assert data_fault(
        LOAD_PAGE_FAULT, lr_w, reader(regs(t0=0x4000_2010)), priv=1, satp=SV39, mstatus=0, memory=memory
    ) == Trap(LOAD_PAGE_FAULT, 0x4000_2010)


def test_the_effective_address_wraps_at_64_bits(memory: GuestMemory) -> None:
    trap = data_fault(STORE_ACCESS, SW_A1_T0_M4, reader(regs(t0=0)), priv=1, satp=SV39, mstatus=0, memory=memory)
    assert trap == Trap(STORE_ACCESS, U64 - 3)


@pytest.mark.parametrize("insn", [None, 0x0000_0013, 0xFFFF_FFFF])  # unfetchable, addi (no access), garbage
def test_a_data_fault_at_bits_that_are_no_memory_access_has_tval_0(memory: GuestMemory, insn: int | None) -> None:
    trap = data_fault(LOAD_PAGE_FAULT, insn, reader({}), priv=1, satp=SV39, mstatus=0, memory=memory)
    assert trap == Trap(LOAD_PAGE_FAULT, 0)


@pytest.mark.parametrize("cause", [INSN_ACCESS, INSN_PAGE_FAULT])
def test_a_fetch_fault_reports_the_half_of_the_instruction_that_faulted(cause: int) -> None:
    asked: list[tuple[int, int]] = []

    def fetchable(answer: bool) -> Callable[[int, int], bool]:
        def probe(va: int, size: int) -> bool:
            asked.append((va, size))
            return answer

        return probe

    assert fetch_fault(cause, 0x4000_0FFE, fetchable(True)) == Trap(cause, 0x4000_1000)  # only the 2nd half
    assert fetch_fault(cause, 0x4000_0FFE, fetchable(False)) == Trap(cause, 0x4000_0FFE)
    assert asked == [(0x4000_0FFE, 2), (0x4000_0FFE, 2)]
    assert fetch_fault(cause, 0x4000_0FFC, fetchable(True)) == Trap(cause, 0x4000_0FFC)  # no page end
    assert fetch_fault(cause, U64 - 1, fetchable(True)) == Trap(cause, 0)  # wraps, no 2^64
    assert len(asked) == 3


# -- accesses that stopped the engine: access faults, or MMIO for the VMM ----------------------


def bad(access: Access, insn: int | None, *, unmapped: bool = True, mmio_exits: bool = True, **kw: int) -> object:
    values = {"addr": 0x1000_0000, "size": 4, "value": 0, "pc": 0x8000_0100} | kw
    return bad_access(
        access, unmapped=unmapped, insn=insn, gpr=reader(regs(t0=0x1000_0000, a1=7)), mmio_exits=mmio_exits, **values
    )


def test_a_fetch_from_nowhere_is_an_instruction_access_fault_at_the_pc() -> None:
    assert bad(Access.FETCH, None) == Trap(INSN_ACCESS, 0x8000_0100)


def test_an_unmapped_load_is_an_mmio_read_with_what_completing_it_needs() -> None:
    access = bad(Access.LOAD, LB_A0_T0_8, addr=0x1000_0008, size=1)
    assert isinstance(access, MmioAccess)
    assert (access.addr, access.width, access.value) == (0x1000_0008, AccessWidth.BYTE, None)
    assert (access.insn.reg, access.insn.signed, access.insn.fp, access.insn.length) == (A0, True, False, 4)


def test_an_unmapped_store_is_an_mmio_write_of_its_value_masked_to_its_width() -> None:
    access = bad(Access.STORE, SW_A1_T0_M4, addr=0x0FFF_FFFC, value=0x1_2345_6789)
    decoded = decode_mem(SW_A1_T0_M4)
    assert decoded is not None
    assert access == MmioAccess(0x0FFF_FFFC, AccessWidth.DWORD, decoded, 0x2345_6789)


@pytest.mark.parametrize(
    ("access", "insn", "kwargs", "expected"),
    [
        (Access.LOAD, LB_A0_T0_8, {"mmio_exits": False}, Trap(LOAD_ACCESS, 0x1000_0008)),
        (Access.STORE, SW_A1_T0_M4, {"mmio_exits": False}, Trap(STORE_ACCESS, 0x0FFF_FFFC)),
        (Access.LOAD, AMOADD_W, {}, Trap(STORE_ACCESS, 0x1000_0000)),  # an AMO never goes to a device
        (Access.STORE, SW_A1_T0_M4, {"unmapped": False}, Trap(STORE_ACCESS, 0x0FFF_FFFC)),  # read-only RAM
        (Access.LOAD, None, {"addr": 0x1234}, Trap(LOAD_ACCESS, 0x1234)),  # bits unknown: the address seen
        (Access.STORE, 0x0000_0013, {"addr": 0x1234}, Trap(STORE_ACCESS, 0x1234)),
        (Access.LOAD, LD_A1_T0, {"size": 16}, Trap(LOAD_ACCESS, 0x1000_0000)),  # no such access width
    ],
)
def test_what_is_not_a_plain_mmio_access_is_an_access_fault(
    access: Access, insn: int | None, kwargs: dict[str, int], expected: Trap
) -> None:
    assert bad(access, insn, **kwargs) == expected


def test_mmio_access_refuses_amos_unknown_bits_and_odd_sizes() -> None:
    assert mmio_access(decode_mem(AMOADD_W), 0x1000_0000, 4, 0) is None
    assert mmio_access(None, 0x1000_0000, 4, 0) is None
    assert mmio_access(decode_mem(LD_A1_T0), 0x1000_0000, 3, 0) is None


@pytest.mark.parametrize(
    ("insn", "width", "value", "expected"),
    [
        (LB_A0_T0_8, 1, 0x180, U64 - 0x7F),  # lb: sign-extended, only the low byte counts
        (load(4, A0, T0, 0), 1, 0x180, 0x80),  # lbu
        (load(2, A0, T0, 0), 4, 0x8000_0000, 0xFFFF_FFFF_8000_0000),  # lw
        (load(6, A0, T0, 0), 4, 0x1_8000_0000, 0x8000_0000),  # lwu
        (LD_A1_T0, 8, U64, U64),
        (FLW_F3_T0, 4, 0x3F80_0000, 0xFFFF_FFFF_3F80_0000),  # flw: NaN-boxed
        (3 << 7 | 3 << 12 | T0 << 15 | 0x07, 8, 0x3FF0_0000_0000_0000, 0x3FF0_0000_0000_0000),  # fld
    ],
)
def test_a_completed_mmio_load_leaves_what_the_instruction_would(
    insn: int, width: int, value: int, expected: int
) -> None:
    decoded = decode_mem(insn)
    assert decoded is not None and decoded.kind is AccessKind.LOAD
    assert loaded_value(decoded, width, value) == expected


# -- mip read with the M-level bits -------------------------------------------------------------


def test_a_mip_read_sees_the_m_bits_and_its_write_part_applies_to_the_native_bits() -> None:
    native, m_pending = 0x22, 0x88  # SSIP|STIP in unicorn; MSIP|MTIP pending in Python
    csrr = reads_mip(csr(2, A0, 0, CSR_MIP))
    assert csrr is not None
    assert mip_read(csrr, native, m_pending, reader({})) == MipRead(A0, 0xAA, None)
    csrrc = reads_mip(csr(3, A0, A1, CSR_MIP))  # csrrc a0, mip, a1
    assert csrrc is not None
    assert mip_read(csrrc, native, m_pending, reader(regs(a1=0x2))) == MipRead(A0, 0xAA, 0x20)
    csrrsi = reads_mip(csr(6, A1, 0x4, CSR_MIP))  # csrrsi a1, mip, 4 (an immediate, not x4)
    assert csrrsi is not None
    assert mip_read(csrrsi, native, m_pending, reader({4: 0xFFFF})) == MipRead(A1, 0xAA, 0x26)


@pytest.mark.parametrize(
    "insn",
    [csr(1, 0, A1, CSR_MIP), csr(2, A0, 0, 0x304), 0x0000_0013, None],  # csrw mip (no read), mie, addi, unknown
)
def test_only_a_read_of_mip_into_a_register_is_done_by_hand(insn: int | None) -> None:
    assert reads_mip(insn) is None


# -- the SBI-aware flush policy -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("priv", "a7", "a6", "announces"),
    [
        (1, 0x5246_4E43, 0, True),  # RFENCE remote_fence_i
        (1, 0x0048_534D, 0, True),  # HSM hart_start
        (1, 0x05, 0, True),  # legacy remote_fence_i
        (1, 0x05, 9, True),  # legacy calls have no function ID
        (1, 0x5246_4E43, 1, False),  # remote_sfence_vma
        (1, 0x0048_534D, 1, False),  # hart_stop
        (1, 0x5449_4D45, 0, False),  # TIME set_timer
        (0, 0x5246_4E43, 0, False),  # from U mode: a system call to the supervisor, not SBI
        (3, 0x5246_4E43, 0, False),  # from M mode: nowhere to go
    ],
)
def test_the_sbi_code_fence_knows_which_calls_announce_new_code(priv: int, a7: int, a6: int, announces: bool) -> None:
    assert SbiCodeFence().on_ecall(0, priv, reader(regs(a7=a7, a6=a6))) is announces


def test_with_a_per_hart_drop_a_hart_start_drops_only_the_started_harts_code() -> None:
    dropped: list[int] = []
    fence = SbiCodeFence(dropped.append)
    assert fence.on_ecall(0, 1, reader(regs(a7=0x0048_534D, a6=0, a0=3))) is False
    assert dropped == [3]
    assert fence.on_ecall(0, 1, reader(regs(a7=0x5246_4E43, a6=0))) is True  # remote fence.i: every hart
    assert fence.on_ecall(0, 1, reader(regs(a7=0x0048_534D, a6=1, a0=2))) is False  # hart_stop
    assert dropped == [3]


def test_the_sbi_code_fence_reads_only_the_registers_it_needs() -> None:
    """It runs on every ecall of a boot (set_timer most of all): a7 alone for those."""
    seen: list[int] = []
    SbiCodeFence().on_ecall(0, 1, reader(regs(a7=0x5449_4D45), seen))
    assert seen == [A7]
    seen.clear()
    SbiCodeFence().on_ecall(0, 0, reader(regs(a7=0x5246_4E43), seen))
    assert seen == []


# -- virtual reads for decoding -----------------------------------------------------------------


def test_a_virtual_read_joins_the_pages_it_crosses_and_fails_where_one_does_not_translate(
    memory: GuestMemory,
) -> None:
    memory.write(PAGE_A + 0xFFE, b"\x11\x22")
    memory.write(PAGE_B, b"\x33\x44")
    assert read_virtual(memory, 0x4000_0FFE, 4, Access.LOAD, priv=1, satp=SV39, mstatus=0) == b"\x11\x22\x33\x44"
    assert read_virtual(memory, 0x4000_1FFE, 4, Access.LOAD, priv=1, satp=SV39, mstatus=0) is None
    assert read_virtual(memory, 0x4000_0000, 4, Access.FETCH, priv=1, satp=SV39, mstatus=0) is None  # not X
    assert read_virtual(memory, PAGE_A + 0xFFE, 2, Access.LOAD, priv=1, satp=0, mstatus=0) == b"\x11\x22"  # Bare


# -- no engine needed ---------------------------------------------------------------------------

PURE_WITHOUT_UNICORN = textwrap.dedent(
    """
    import pathlib, sys, types
    import axvcpu.backends
    # The soft package's __init__ exports the engine-backed backend; the pure modules must not need it.
    package = types.ModuleType("axvcpu.backends.soft")
    package.__path__ = [str(pathlib.Path(axvcpu.backends.__file__).parent / "soft")]
    sys.modules["axvcpu.backends.soft"] = package
    from axaddrspace import GuestMemory, GuestMemoryRegion
    from axvcpu.backends.soft import riscv_fault
    from axvcpu.riscv_sbi import SbiCodeFence

    memory = GuestMemory([GuestMemoryRegion.anonymous(0x8000_0000, 0x1000)])
    trap = riscv_fault.data_fault(13, 0x0002_B583, lambda n: 0x8000_0ffc if n == 5 else 0,  # ld a1, 0(t0)
                                  priv=1, satp=0, mstatus=0, memory=memory)
    assert trap == riscv_fault.Trap(13, 0x8000_1000), trap  # crosses a page: the second one faulted
    assert riscv_fault.illegal_instruction(0xC0102573) == riscv_fault.TimeRead(10)  # rdtime a0
    assert SbiCodeFence().on_ecall(0, 1, lambda n: 5 if n == 17 else 0)
    assert "unicorn" not in sys.modules, sorted(m for m in sys.modules if "unicorn" in m)
    print("decoded")
    """
)


def test_the_fault_decoders_and_the_sbi_policy_load_without_unicorn() -> None:
    result = subprocess.run([sys.executable, "-c", PURE_WITHOUT_UNICORN], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "decoded"
