"""axvcpu: the virtual CPU, its exit reasons, its lifecycle and the backend interface."""

from .arch import ArchVCpu
from .ecall import EcallObserver, GprReader
from .errors import PendingReadError
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
from .lifecycle import IllegalTransition, Lifecycle
from .scripted import ScriptedVCpu
from .state import LEGAL_TRANSITIONS, IllegalVCpuTransition, VCpuState, check_transition
from .vcpu import VCpu

__all__ = [
    "LEGAL_TRANSITIONS",
    "READ_EXITS",
    "ArchVCpu",
    "AxVCpuExitReason",
    "CpuDown",
    "CpuUp",
    "EcallObserver",
    "ExternalInterrupt",
    "FailEntry",
    "GprReader",
    "Halt",
    "Hypercall",
    "IllegalTransition",
    "IllegalVCpuTransition",
    "IoRead",
    "IoWrite",
    "Lifecycle",
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
