"""A soft riscv64 hart's saved state (riscv_state): every register round-trips into a fresh
engine, a counting program snapshotted mid-run goes on counting from where it was, and bad
saved states are refused naming the field."""

from __future__ import annotations

import json

import pytest

from axvcpu import Halt, Nothing
from axvcpu.backends.soft.riscv_state import SAVED_CSRS, HartStateError

from .riscv_asm import requires_riscv_toolchain
from .soft_machine import DATA, RAM_BASE, SoftMachine

pytestmark = requires_riscv_toolchain

COUNTER = """
    li t3, 0x6000
    csrs mstatus, t3
    li t0, DATA
    li t1, 0
    li t2, 200000
loop:
    addi t1, t1, 1
    sd t1, 0(t0)
    fcvt.d.l ft0, t1
    bne t1, t2, loop
    wfi
"""


def _machine_with_program() -> SoftMachine:
    return SoftMachine(COUNTER, slice_instructions=1000)


def _copy_ram(source: SoftMachine, target: SoftMachine) -> None:
    target.ram.view[:] = source.ram.view


def test_every_register_round_trips_into_a_fresh_engine() -> None:
    a = _machine_with_program()
    b = _machine_with_program()
    try:
        values = {"stvec": 0x8000_1000, "sscratch": 0x1234_5678_9ABC_DEF0, "sepc": 0x8000_2000, "scause": 9,
                  "stval": 0xDEAD, "mscratch": 0x55, "mtvec": 0x8000_0100, "medeleg": 0xB109, "mideleg": 0x222,
                  "mie": 0xAAA, "mcounteren": 7, "scounteren": 5, "mepc": 0x8000_0040, "mcause": 3,
                  "mtval": 0x77, "fcsr": 0x41}  # fmt: skip
        a.vcpu.set_register("mstatus", 0x6000)  # FS dirty, M mode: the F registers and fcsr are live
        for name, value in values.items():
            a.vcpu.set_register(name, value)
        for n in range(1, 32):
            a.vcpu.set_register(f"x{n}", 0x1000 * n + 1)
            a.vcpu.set_register(f"f{n}", 0x4000_0000_0000_0000 | n)
        a.vcpu.set_register("pc", RAM_BASE + 0x20)
        a.vcpu.set_register("priv", 1)
        saved = json.loads(json.dumps(a.vcpu.save_state()))  # what a snapshot file holds
        assert saved["priv"] == 1 and set(saved["csr"]) == set(SAVED_CSRS)
        b.vcpu.load_state(saved)
        again = b.vcpu.save_state()
        assert again == saved
        for name, value in values.items():
            assert b.vcpu.get_register(name) == value, name
        assert b.vcpu.get_register("priv") == 1
        assert b.vcpu.get_register("pc") == RAM_BASE + 0x20
        assert b.vcpu.get_register("f31") == 0x4000_0000_0000_001F
    finally:
        a.close()
        b.close()


def test_a_counting_program_snapshotted_mid_run_goes_on_in_a_new_engine() -> None:
    a = _machine_with_program()
    b = _machine_with_program()
    try:
        for _ in range(50):
            assert isinstance(a.vcpu.run(), Nothing)
        counted = a.u64(DATA)
        assert 0 < counted < 200_000
        saved = a.vcpu.save_state()
        _copy_ram(a, b)
        b.vcpu.load_state(saved)
        assert b.vcpu.get_register("t1") == counted
        exits = b.run_until_halt(max_runs=2000)
        assert isinstance(exits[-1], Halt)
        assert b.u64(DATA) == 200_000
        assert b.vcpu.get_register("t1") == 200_000
        assert b.vcpu.get_register("f0") == 0x4108_6A00_0000_0000  # 200000.0 as a double
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.update(priv=2), "priv"),
        (lambda s: s["x"].pop(), "x must list 32"),
        (lambda s: s["csr"].pop("satp"), "csr must name"),
        (lambda s: s["csr"].update(mhartid=3), "mhartid"),
        (lambda s: s.update(pc=-1), "pc"),
        (lambda s: s.update(version=99), "version 99"),
        (lambda s: s.update(halted="yes"), "halted"),
    ],
)
def test_a_bad_saved_state_is_refused_naming_the_field(change, field) -> None:  # type: ignore[no-untyped-def]
    machine = _machine_with_program()
    try:
        saved = machine.vcpu.save_state()
        change(saved)
        pc_before = machine.vcpu.get_register("pc")
        with pytest.raises(HartStateError, match=field):
            machine.vcpu.load_state(saved)
        assert machine.vcpu.get_register("pc") == pc_before  # checked before anything is written
    finally:
        machine.close()
