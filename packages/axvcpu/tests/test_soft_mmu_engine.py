"""The VMM's page walk (``riscv_mmu.translate``) against the engine's own MMU, in Sv39, Sv48
and Sv57: random page tables in guest RAM, a soft hart with satp, privilege and mstatus set,
and for many addresses and each kind of access the same answer from both (or a fault in both).

The engine's answer comes from ``uc_vmem_translate`` (unicorn >= 2.1, used by ``riscv_debug``),
which walks the tables as the hart would without taking the fault. Where the two disagree, the
backend's fault decoding (tval, the instruction at a virtual PC) and ``vm translate`` would
describe a different page than the one the hart used.

Leaves keep bits 63:54 of the PTE clear: the engine (QEMU 5.0's walk) folds them into the PPN,
the VMM's walk masks them; Linux sets none of them on this CPU (no Svpbmt, no Svnapot).
"""

from __future__ import annotations

import ctypes
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from unicorn import UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE
from unicorn.unicorn_py3.unicorn import uclib  # the binding's CDLL: uc_vmem_translate is not wrapped

from axaddrspace import GuestMemory, GuestMemoryRegion, GuestPhysAddr, MappingFlags
from axvcpu.backends.soft import RiscvSoftVCpu, SoftRiscvBackend
from axvcpu.backends.soft.riscv_mmu import Access, translate

from .page_tables import LEVELS, PAGE, RAM, RAM_SIZE, SATP_MODE, PageTables, V, page_size, va_bits

U64 = (1 << 64) - 1
R, W, X, U, A, D = 2, 4, 8, 16, 64, 128
SUM, MXR = 1 << 18, 1 << 19
ACCESSES = {Access.LOAD: UC_PROT_READ, Access.STORE: UC_PROT_WRITE, Access.FETCH: UC_PROT_EXEC}
FLAG_CHOICES = (V | R, V | R | W, V | R | X, V | X, V | R | W | X, V | W, V | W | X, R | W | X)
"""Leaf permissions, with the reserved W and W|X and an invalid entry among them."""

_vmem_translate = uclib.uc_vmem_translate  # unicorn >= 2.1 (the workspace pins 2.1.4): absent is a failure
_vmem_translate.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64))
_vmem_translate.restype = ctypes.c_int


def engine_translate(vcpu: RiscvSoftVCpu, va: int, prot: int) -> int | None:
    """``va`` through the engine's MMU for an access of ``prot`` at the hart's privilege."""
    out = ctypes.c_uint64()
    handle = vcpu._uc._uch  # the hart's own engine: the one its guest runs on
    return out.value if _vmem_translate(handle, va & U64, prot, ctypes.byref(out)) == 0 else None


def canonical(mode: str, rng: random.Random) -> int:
    bits = va_bits(mode)
    va = rng.randrange(1 << (bits - 1))
    return va if rng.random() < 0.5 else (va | ((U64 >> (bits - 1)) << (bits - 1))) & U64


def random_tables(tables: PageTables, mode: str, rng: random.Random) -> list[int]:
    """Leaves of random sizes, targets and permissions (some misaligned or reserved), a few
    pointers to tables outside RAM; the VAs they map."""
    mapped = []
    for _ in range(rng.randrange(4, 16)):
        va = canonical(mode, rng) & ~(PAGE - 1)
        level = rng.randrange(LEVELS[mode])
        size = page_size(level)
        pa = rng.randrange(1 << 44) * size & ((1 << 56) - 1) or size
        if level and rng.random() < 0.2:
            pa += PAGE * rng.randrange(1, 8)  # a misaligned superpage
        flags = rng.choice(FLAG_CHOICES) | rng.choice((0, U)) | rng.choice((0, A, A | D))
        tables.map(mode, va, pa, level, flags)
        mapped.append(va)
    mapped.append(canonical(mode, rng) & ~(PAGE - 1))  # last, so no later leaf replaces its path:
    tables.map(mode, mapped[-1], 1 << 48, 0, V | R | W | X | A | D)  # one page S mode can use
    usable_slot = (mapped[-1] >> (va_bits(mode) - 9)) & 0x1FF
    for slot in {rng.randrange(512) for _ in range(rng.randrange(3))} - {usable_slot}:
        outside = (1 << 40) + PAGE * rng.randrange(64)  # a next-level table outside guest RAM
        tables.write_entry(tables.root(mode) + 8 * slot, outside >> 12 << 10 | V)
        top = slot << (va_bits(mode) - 9)
        mapped.append(top | (U64 << va_bits(mode)) & U64 if slot >= 256 else top)  # an address under it
    return mapped


def addresses(mode: str, mapped: list[int], rng: random.Random) -> list[int]:
    """Inside each mapping, near its edges, elsewhere (canonical or not)."""
    out = []
    for va in mapped:
        out += [va, va + rng.randrange(PAGE), va - 1, va + PAGE, va + rng.randrange(1 << 30)]
    out += [canonical(mode, rng) for _ in range(20)]
    out += [rng.randrange(1 << 64) for _ in range(10)]
    return [va & U64 for va in out]


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(sorted(SATP_MODE)))
def test_the_vmm_walk_and_the_engine_agree(seed: int, mode: str) -> None:
    rng = random.Random(seed)
    backend = SoftRiscvBackend(1)
    region = GuestMemoryRegion.anonymous(RAM, RAM_SIZE)
    memory = GuestMemory([region])
    try:
        backend.stage2.attach_memory(memory)
        backend.stage2.map(region, MappingFlags.READ | MappingFlags.WRITE | MappingFlags.EXECUTE)
        vcpu = backend.create_vcpu(0)
        vcpu.setup(GuestPhysAddr(RAM), None)
        tables = PageTables(memory)
        vas = addresses(mode, random_tables(tables, mode, rng), rng)
        satp = tables.satp(mode)
        vcpu.set_register("satp", satp)
        assert vcpu.get_register("satp") == satp  # the engine took the mode
        checked = translated = 0
        for priv, mstatus in ((1, 0), (1, SUM), (1, MXR), (0, 0), (0, MXR)):
            vcpu.set_register("mstatus", mstatus)  # SUM and MXR changes flush the engine's TLB
            vcpu.set_register("priv", priv)
            for va in vas:
                for access, prot in ACCESSES.items():
                    ours = translate(memory, va, access, priv=priv, satp=satp, mstatus=mstatus)
                    theirs = engine_translate(vcpu, va, prot)
                    assert ours == theirs, (mode, hex(va), access, priv, hex(mstatus))
                    checked += 1
                    translated += ours is not None
        assert checked == 5 * 3 * len(vas) and translated > 0  # not vacuous: the last leaf translates
    finally:
        backend.close()
        memory.close()


def test_the_comparison_sees_translations_in_every_mode() -> None:
    """The random comparison is not vacuous: each mode yields translated and faulting addresses."""
    for mode in sorted(SATP_MODE):
        backend = SoftRiscvBackend(1)
        region = GuestMemoryRegion.anonymous(RAM, RAM_SIZE)
        memory = GuestMemory([region])
        try:
            backend.stage2.attach_memory(memory)
            backend.stage2.map(region, MappingFlags.READ | MappingFlags.WRITE | MappingFlags.EXECUTE)
            vcpu = backend.create_vcpu(0)
            vcpu.setup(GuestPhysAddr(RAM), None)
            tables = PageTables(memory)
            va = (U64 << (va_bits(mode) - 1)) & U64 | 0x1234_5000  # the top half
            tables.map(mode, va, RAM + 0x5000, 0, V | R | W)
            vcpu.set_register("satp", tables.satp(mode))
            vcpu.set_register("priv", 1)
            assert engine_translate(vcpu, va + 8, UC_PROT_READ) == RAM + 0x5008
            assert engine_translate(vcpu, va + 8, UC_PROT_EXEC) is None
            satp = tables.satp(mode)
            assert translate(memory, va + 8, Access.LOAD, priv=1, satp=satp, mstatus=0) == RAM + 0x5008
        finally:
            backend.close()
            memory.close()
