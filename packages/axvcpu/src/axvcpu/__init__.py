"""axvcpu: the virtual CPU, its exit reasons, its lifecycle and the backend interface."""

from .arch import ArchVCpu
from .exits import (
    READ_EXITS,
    AxVCpuExitReason,
    CpuDown,
    CpuUp,
    ExternalInterrupt,
    FailEntry,
    Halt,
    Hypercall,
    IoRead,
    IoWrite,
    MmioRead,
    MmioWrite,
    NestedPageFault,
    Nothing,
    SendIpi,
    SysRegRead,
    SysRegWrite,
    SystemDown,
    Unsupported,
)
from .scripted import ScriptedVCpu
from .state import LEGAL_TRANSITIONS, IllegalVCpuTransition, VCpuState, check_transition
from .vcpu import PendingReadError, VCpu

__all__ = [
    "LEGAL_TRANSITIONS",
    "READ_EXITS",
    "ArchVCpu",
    "AxVCpuExitReason",
    "CpuDown",
    "CpuUp",
    "ExternalInterrupt",
    "FailEntry",
    "Halt",
    "Hypercall",
    "IllegalVCpuTransition",
    "IoRead",
    "IoWrite",
    "MmioRead",
    "MmioWrite",
    "NestedPageFault",
    "Nothing",
    "PendingReadError",
    "ScriptedVCpu",
    "SendIpi",
    "SysRegRead",
    "SysRegWrite",
    "SystemDown",
    "Unsupported",
    "VCpu",
    "VCpuState",
    "check_transition",
]
