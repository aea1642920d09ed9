"""PSCI 1.0 as a pure function: each call's answer and the action the machine must take."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axvm.machines.arm.psci import (
    AffinityState,
    CpuOff,
    CpuOn,
    CpuSuspend,
    Fn,
    PsciCpu,
    PsciResult,
    Ret,
    SystemOff,
    SystemReset,
    handle_call,
)

ON, OFF, PENDING = AffinityState.ON, AffinityState.OFF, AffinityState.ON_PENDING
SMC64 = 0x4000_0000
U64 = (1 << 64) - 1


def cpus(*states: AffinityState) -> list[PsciCpu]:
    """vCPUs as QEMU's virt board numbers them: Aff0 = index in clusters of 8, Aff1 = cluster;
    MPIDR bit 31 (RES1) set as the register reads."""
    return [PsciCpu(1 << 31 | (n // 8) << 8 | n % 8, state) for n, state in enumerate(states)]


def call(fid: int, x1: int = 0, x2: int = 0, x3: int = 0, machine: list[PsciCpu] | None = None) -> PsciResult:
    return handle_call(fid, x1, x2, x3, machine if machine is not None else cpus(ON, OFF))


def test_version_is_1_0() -> None:
    result = call(Fn.PSCI_VERSION)
    assert result == PsciResult(0x0001_0000) and result.x0 == 0x10000


def test_smc32_ids_ignore_the_upper_half_of_w0() -> None:
    assert call(0xDEAD_BEEF_0000_0000 | Fn.PSCI_VERSION).value == 0x10000


def test_cpu_on_starts_an_off_cpu_with_entry_and_context() -> None:
    result = call(Fn.CPU_ON | SMC64, 1, 0x4008_0000, 0x1234_5678_9ABC)
    assert result == PsciResult(0, CpuOn(target=1, entry=0x4008_0000, context_id=0x1234_5678_9ABC))


def test_cpu_on_smc32_truncates_its_arguments() -> None:
    result = call(Fn.CPU_ON, 0xFFFF_FFFF_0000_0001, 0xAAAA_0000_4008_0000, 0x1_0000_0002)
    assert result.action == CpuOn(1, 0x4008_0000, 2)


def test_cpu_on_finds_a_cpu_in_the_second_cluster() -> None:
    machine = cpus(*([ON] * 9 + [OFF]))
    assert call(Fn.CPU_ON | SMC64, 0x101, 0x8000, 0, machine).action == CpuOn(9, 0x8000, 0)


@pytest.mark.parametrize(
    ("target", "state", "expected"),
    [
        (0, ON, Ret.ALREADY_ON),
        (1, PENDING, Ret.ON_PENDING),
        (7, OFF, Ret.INVALID_PARAMETERS),  # no such CPU
        (1 << 31 | 1, OFF, Ret.INVALID_PARAMETERS),  # a non-affinity bit set
    ],
)
def test_cpu_on_errors(target: int, state: AffinityState, expected: Ret) -> None:
    result = call(Fn.CPU_ON | SMC64, target, 0x4000_0000, 0, cpus(ON, state))
    assert result == PsciResult(int(expected)) and result.action is None
    assert result.x0 == int(expected) & U64  # negative codes sign-extended in x0


def test_cpu_on_refuses_an_entry_point_the_machine_rejects() -> None:
    result = handle_call(Fn.CPU_ON | SMC64, 1, 0x10, 0, cpus(ON, OFF), entry_ok=lambda addr: addr >= 0x4000_0000)
    assert result == PsciResult(int(Ret.INVALID_ADDRESS))
    accepted = handle_call(Fn.CPU_ON | SMC64, 1, 0x4000_0000, 0, cpus(ON, OFF), entry_ok=lambda addr: True)
    assert accepted.action == CpuOn(1, 0x4000_0000, 0)


def test_calls_that_do_not_return() -> None:
    for fid, action in ((Fn.CPU_OFF, CpuOff()), (Fn.SYSTEM_OFF, SystemOff()), (Fn.SYSTEM_RESET, SystemReset())):
        result = call(fid)
        assert result == PsciResult(None, action) and result.x0 is None


def test_affinity_info_at_level_0_and_above() -> None:
    machine = cpus(ON, OFF, PENDING, OFF, OFF, OFF, OFF, OFF, OFF, OFF)
    assert call(Fn.AFFINITY_INFO, 0, 0, 0, machine).value == ON
    assert call(Fn.AFFINITY_INFO | SMC64, 1, 0, 0, machine).value == OFF
    assert call(Fn.AFFINITY_INFO, 2, 0, 0, machine).value == PENDING
    assert call(Fn.AFFINITY_INFO, 0x103, 0, 0, machine).value == Ret.INVALID_PARAMETERS  # no CPU 0x103
    assert call(Fn.AFFINITY_INFO, 0x105, 1, 0, machine).value == OFF  # cluster 1: all off
    assert call(Fn.AFFINITY_INFO, 0x7, 1, 0, machine).value == ON  # cluster 0 has CPU 0 on
    assert call(Fn.AFFINITY_INFO, 0x7, 1, 0, cpus(OFF, PENDING)).value == PENDING
    assert call(Fn.AFFINITY_INFO, 0, 4, 0, machine).value == Ret.INVALID_PARAMETERS


def test_migrate_info_type_says_no_migration_needed() -> None:
    assert call(Fn.MIGRATE_INFO_TYPE).value == 2


def test_cpu_suspend_waits_for_an_interrupt_and_checks_power_state() -> None:
    assert call(Fn.CPU_SUSPEND, 0x0001_0000, 0x4000_0000) == PsciResult(0, CpuSuspend())
    assert call(Fn.CPU_SUSPEND | SMC64, 0) == PsciResult(0, CpuSuspend())
    assert call(Fn.CPU_SUSPEND, 1 << 30).value == Ret.INVALID_PARAMETERS  # a reserved bit


@pytest.mark.parametrize(
    ("queried", "expected"),
    [
        (Fn.PSCI_VERSION, 0),
        (Fn.CPU_ON, 0),
        (Fn.CPU_ON | SMC64, 0),
        (Fn.CPU_SUSPEND, 0),  # original power_state format, no OS-initiated mode
        (Fn.SYSTEM_RESET, 0),
        (Fn.PSCI_FEATURES, 0),
        (Fn.SYSTEM_OFF | SMC64, Ret.NOT_SUPPORTED),  # SYSTEM_OFF has no SMC64 form
        (Fn.MIGRATE, Ret.NOT_SUPPORTED),
        (0x8000_0000, Ret.NOT_SUPPORTED),  # SMCCC_VERSION: the guest assumes SMCCC 1.0
        (0x8400_0012, Ret.NOT_SUPPORTED),  # SYSTEM_RESET2 is PSCI 1.1
    ],
)
def test_features(queried: int, expected: int) -> None:
    assert call(Fn.PSCI_FEATURES, queried).value == expected


@pytest.mark.parametrize(
    "fid",
    [0x8000_0000, Fn.MIGRATE, Fn.MIGRATE_INFO_UP_CPU, 0x8400_000B, 0x8400_0012, 0xC400_0000, 0xC400_0008, 0x8500_0000],
)
def test_unknown_and_unimplemented_ids_are_not_supported(fid: int) -> None:
    result = call(fid)
    assert result == PsciResult(int(Ret.NOT_SUPPORTED)) and result.x0 == U64


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=U64),
    st.integers(min_value=0, max_value=U64),
    st.integers(min_value=0, max_value=U64),
    st.integers(min_value=0, max_value=U64),
    st.lists(st.sampled_from(list(AffinityState)), min_size=1, max_size=10),
)
def test_any_call_gets_a_defined_answer(fid: int, x1: int, x2: int, x3: int, states: list[AffinityState]) -> None:
    for function_id in (fid, 0x8400_0000 | fid & 0x4000_001F):  # anything, and near-PSCI ids
        result = handle_call(function_id, x1, x2, x3, cpus(*states))
        assert result.value is None or -9 <= result.value <= 0x10000
        assert result.x0 is None or 0 <= result.x0 <= U64
        if isinstance(result.action, CpuOn):
            assert states[result.action.target] == OFF
        if result.value is None:
            assert isinstance(result.action, CpuOff | SystemOff | SystemReset)
