"""PSCI 1.0 as the VMM implements it for arm64 guests: a pure function from a call to a result.

Theory of operation (Arm Power State Coordination Interface, DEN0022D; calling convention
from the SMC Calling Convention, DEN0028):

- The guest calls with HVC or SMC (the conduit the device tree's ``/psci`` names): the function
  ID in w0, arguments in x1-x3 (DEN0022D 5.2.1). SMC32 IDs (0x8400_00xx) take 32-bit arguments,
  so the upper halves of x1-x3 are ignored; SMC64 IDs (0xC400_00xx) exist only for the
  functions that take an address or an MPIDR (5.1, table 5). The answer goes back in x0.
- Functions (5.1.1-5.1.14): PSCI_VERSION (1.0), CPU_SUSPEND (standby only, see below), CPU_OFF,
  CPU_ON, AFFINITY_INFO, MIGRATE_INFO_TYPE (2: no Trusted OS needs migrating), SYSTEM_OFF,
  SYSTEM_RESET and PSCI_FEATURES: the mandatory set of PSCI 1.0 (table 6). Any other ID,
  including SMCCC_VERSION, answers NOT_SUPPORTED (-1), which is also SMCCC's answer to an
  unknown function (DEN0028 5.2), so a guest probing SMCCC 1.1 falls back to 1.0.
- CPUs are named by MPIDR affinity fields (Aff3 in bits 39:32, Aff2-Aff0 in 23:0); any other
  bit set in a target is INVALID_PARAMETERS (5.1.4). The machine passes every vCPU's affinity
  and power state; this module decides and returns what the machine must do (``PsciResult``):
  start a vCPU at an entry point with a context id in x0, stop the caller, suspend it until an
  interrupt, power off or reset. It keeps no state and touches no vCPU.
- CPU_SUSPEND: a power-down request may be served by a shallower state (5.4.2), so every
  valid request is served as standby: the caller waits for an interrupt, then the call
  returns SUCCESS. The power_state parameter uses the original format (PSCI_FEATURES says so).

The answer is the signed return value; ``x0`` gives its 64-bit register image (negative codes
sign-extended, as SMC32 callers read only w0 and SMC64 callers the whole register).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PSCI_VERSION_1_0 = 0x0001_0000  # major 1 in bits 31:16, minor 0

SMC64 = 0x4000_0000  # bit 30 of a function ID: the SMC64/HVC64 calling convention
FUNCTION_ID_MASK = 0xFFFF_FFFF  # the ID travels in w0


class Fn(enum.IntEnum):
    """PSCI function IDs, SMC32 forms (DEN0022D table 5)."""

    PSCI_VERSION = 0x8400_0000
    CPU_SUSPEND = 0x8400_0001
    CPU_OFF = 0x8400_0002
    CPU_ON = 0x8400_0003
    AFFINITY_INFO = 0x8400_0004
    MIGRATE = 0x8400_0005
    MIGRATE_INFO_TYPE = 0x8400_0006
    MIGRATE_INFO_UP_CPU = 0x8400_0007
    SYSTEM_OFF = 0x8400_0008
    SYSTEM_RESET = 0x8400_0009
    PSCI_FEATURES = 0x8400_000A


# The functions with an SMC64 form among those implemented (table 5).
_HAS_SMC64 = frozenset({Fn.CPU_SUSPEND, Fn.CPU_ON, Fn.AFFINITY_INFO})
_IMPLEMENTED = frozenset(
    {
        Fn.PSCI_VERSION,
        Fn.CPU_SUSPEND,
        Fn.CPU_OFF,
        Fn.CPU_ON,
        Fn.AFFINITY_INFO,
        Fn.MIGRATE_INFO_TYPE,
        Fn.SYSTEM_OFF,
        Fn.SYSTEM_RESET,
        Fn.PSCI_FEATURES,
    }
)


class Ret(enum.IntEnum):
    """PSCI return codes (DEN0022D table 8)."""

    SUCCESS = 0
    NOT_SUPPORTED = -1
    INVALID_PARAMETERS = -2
    DENIED = -3
    ALREADY_ON = -4
    ON_PENDING = -5
    INTERNAL_FAILURE = -6
    NOT_PRESENT = -7
    DISABLED = -8
    INVALID_ADDRESS = -9


class AffinityState(enum.IntEnum):
    """A CPU's power state, numbered as AFFINITY_INFO returns it (5.1.5)."""

    ON = 0
    OFF = 1
    ON_PENDING = 2


MIGRATE_NOT_REQUIRED = 2  # MIGRATE_INFO_TYPE: no Trusted OS, or one that needs no migration

MPIDR_AFFINITY_MASK = 0xFF_00FF_FFFF  # Aff3 (39:32), Aff2, Aff1, Aff0 (23:0)
MAX_AFFINITY_LEVEL = 3

# CPU_SUSPEND power_state, original format (5.4.2.1): StateID 15:0, StateType 16,
# PowerLevel 25:24; the other bits are reserved and must be zero.
POWER_STATE_VALID = 0x0301_FFFF


@dataclass(frozen=True, slots=True)
class PsciCpu:
    """What the machine tells PSCI about one vCPU: its MPIDR and power state."""

    mpidr: int
    state: AffinityState


@dataclass(frozen=True, slots=True)
class CpuOn:
    """Start vCPU ``target`` at ``entry`` with ``context_id`` in x0 (5.1.4, 6.4.3)."""

    target: int
    entry: int
    context_id: int


@dataclass(frozen=True, slots=True)
class CpuOff:
    """Stop the calling vCPU; the call does not return."""


@dataclass(frozen=True, slots=True)
class CpuSuspend:
    """Let the calling vCPU wait for an interrupt (as wfi), then return ``PsciResult.value``."""


@dataclass(frozen=True, slots=True)
class SystemOff:
    """Power the VM off; the call does not return."""


@dataclass(frozen=True, slots=True)
class SystemReset:
    """Reset the VM; the call does not return."""


PsciAction = CpuOn | CpuOff | CpuSuspend | SystemOff | SystemReset | None


@dataclass(frozen=True, slots=True)
class PsciResult:
    """What a call returns (``value``, None if it does not return) and what the machine does."""

    value: int | None
    action: PsciAction = None

    @property
    def x0(self) -> int | None:
        """The value as the 64-bit x0 image; None when the call does not return."""
        return None if self.value is None else self.value & 0xFFFF_FFFF_FFFF_FFFF


PSCI_RANGE_MASK = 0xFFFF_FFE0  # DEN0022D 5.1: PSCI owns function ids 0x8400_0000-0x8400_001F (and SMC64)


def is_psci_call(function_id: int) -> bool:
    """Whether ``function_id`` (w0) lies in PSCI's part of the standard service calls, so a VMM
    that also serves other calls on the same conduit knows which are PSCI's to answer."""
    return (function_id & FUNCTION_ID_MASK & ~SMC64) & PSCI_RANGE_MASK == Fn.PSCI_VERSION


def handle_call(
    function_id: int,
    x1: int,
    x2: int,
    x3: int,
    cpus: Sequence[PsciCpu],
    entry_ok: Callable[[int], bool] | None = None,
) -> PsciResult:
    """Answer the PSCI call ``function_id`` (w0) with arguments x1-x3.

    ``cpus`` lists every vCPU by index; ``entry_ok``, when given, says whether a CPU_ON entry
    point is one the guest may start at (e.g. inside RAM); otherwise INVALID_ADDRESS.
    """
    fid = function_id & FUNCTION_ID_MASK
    wide = bool(fid & SMC64)
    try:
        fn = Fn(fid & ~SMC64)
    except ValueError:
        return _ret(Ret.NOT_SUPPORTED)
    if fn not in _IMPLEMENTED or (wide and fn not in _HAS_SMC64):
        return _ret(Ret.NOT_SUPPORTED)
    if not wide:
        x1, x2, x3 = x1 & 0xFFFF_FFFF, x2 & 0xFFFF_FFFF, x3 & 0xFFFF_FFFF
    return _HANDLERS[fn](x1, x2, x3, cpus, entry_ok)


def _ret(code: int) -> PsciResult:
    return PsciResult(int(code))


def _version(x1: int, x2: int, x3: int, cpus: Sequence[PsciCpu], entry_ok: object) -> PsciResult:
    return PsciResult(PSCI_VERSION_1_0)


def _features(x1: int, x2: int, x3: int, cpus: Sequence[PsciCpu], entry_ok: object) -> PsciResult:
    """PSCI_FEATURES (5.1.14): 0 for an implemented function (for CPU_SUSPEND, 0 also says
    original power_state format, no OS-initiated mode), NOT_SUPPORTED otherwise."""
    queried = x1 & FUNCTION_ID_MASK
    try:
        fn = Fn(queried & ~SMC64)
    except ValueError:
        return _ret(Ret.NOT_SUPPORTED)
    if fn not in _IMPLEMENTED or (queried & SMC64 and fn not in _HAS_SMC64):
        return _ret(Ret.NOT_SUPPORTED)
    return _ret(Ret.SUCCESS)


def _cpu_suspend(x1: int, x2: int, x3: int, cpus: Sequence[PsciCpu], entry_ok: object) -> PsciResult:
    if x1 & ~POWER_STATE_VALID:
        return _ret(Ret.INVALID_PARAMETERS)
    return PsciResult(int(Ret.SUCCESS), CpuSuspend())


def _cpu_off(x1: int, x2: int, x3: int, cpus: Sequence[PsciCpu], entry_ok: object) -> PsciResult:
    return PsciResult(None, CpuOff())


def _find(target: int, cpus: Sequence[PsciCpu]) -> int | None:
    for index, cpu in enumerate(cpus):
        if cpu.mpidr & MPIDR_AFFINITY_MASK == target:
            return index
    return None


def _cpu_on(x1: int, x2: int, x3: int, cpus: Sequence[PsciCpu], entry_ok: Callable[[int], bool] | None) -> PsciResult:
    """CPU_ON (5.1.4): target_cpu, entry_point_address, context_id."""
    if x1 & ~MPIDR_AFFINITY_MASK:
        return _ret(Ret.INVALID_PARAMETERS)
    index = _find(x1, cpus)
    if index is None:
        return _ret(Ret.INVALID_PARAMETERS)
    state = cpus[index].state
    if state == AffinityState.ON:
        return _ret(Ret.ALREADY_ON)
    if state == AffinityState.ON_PENDING:
        return _ret(Ret.ON_PENDING)
    if entry_ok is not None and not entry_ok(x2):
        return _ret(Ret.INVALID_ADDRESS)
    return PsciResult(int(Ret.SUCCESS), CpuOn(index, x2, x3))


def _affinity_info(x1: int, x2: int, x3: int, cpus: Sequence[PsciCpu], entry_ok: object) -> PsciResult:
    """AFFINITY_INFO (5.1.5): the state of the node at ``x2`` affinity levels above a CPU.

    Fields below the level are ignored; a node is ON if any CPU in it is, else ON_PENDING if
    one is starting, else OFF.
    """
    if x2 > MAX_AFFINITY_LEVEL or x1 & ~MPIDR_AFFINITY_MASK:
        return _ret(Ret.INVALID_PARAMETERS)
    ignored = (1 << (8 * x2)) - 1  # Aff0 .. Aff(level-1); Aff3 sits above bit 31, never ignored
    states = [cpu.state for cpu in cpus if (cpu.mpidr & MPIDR_AFFINITY_MASK) & ~ignored == x1 & ~ignored]
    if not states:
        return _ret(Ret.INVALID_PARAMETERS)
    for state in (AffinityState.ON, AffinityState.ON_PENDING):
        if state in states:
            return PsciResult(int(state))
    return PsciResult(int(AffinityState.OFF))


def _migrate_info_type(x1: int, x2: int, x3: int, cpus: Sequence[PsciCpu], entry_ok: object) -> PsciResult:
    return PsciResult(MIGRATE_NOT_REQUIRED)


def _system_off(x1: int, x2: int, x3: int, cpus: Sequence[PsciCpu], entry_ok: object) -> PsciResult:
    return PsciResult(None, SystemOff())


def _system_reset(x1: int, x2: int, x3: int, cpus: Sequence[PsciCpu], entry_ok: object) -> PsciResult:
    return PsciResult(None, SystemReset())


_HANDLERS: dict[Fn, Callable[..., PsciResult]] = {
    Fn.PSCI_VERSION: _version,
    Fn.CPU_SUSPEND: _cpu_suspend,
    Fn.CPU_OFF: _cpu_off,
    Fn.CPU_ON: _cpu_on,
    Fn.AFFINITY_INFO: _affinity_info,
    Fn.MIGRATE_INFO_TYPE: _migrate_info_type,
    Fn.SYSTEM_OFF: _system_off,
    Fn.SYSTEM_RESET: _system_reset,
    Fn.PSCI_FEATURES: _features,
}
