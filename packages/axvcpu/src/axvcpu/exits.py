"""Why a vCPU stopped running guest code: AxVisor's exit reasons as frozen dataclasses.

Backends only decode what the hardware (or emulator) reported into one of these; what to do
about it is decided above them (axvm's exit dispatch). Reads carry no value: the handler
answers them with one explicit call, ``ArchVCpu.complete_read(value)``, before the next run.
``Unsupported`` keeps the raw code of anything a newer kernel may report, so decoding never
fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from axaddrspace import AccessWidth, GuestPhysAddr, MappingFlags


@dataclass(frozen=True, slots=True)
class MmioRead:
    """A guest load from an address no memory backs. ``signed`` asks for sign extension."""

    addr: GuestPhysAddr
    width: AccessWidth
    reg: int = 0
    reg_width: AccessWidth = AccessWidth.QWORD
    signed: bool = False


@dataclass(frozen=True, slots=True)
class MmioWrite:
    addr: GuestPhysAddr
    width: AccessWidth
    data: int


@dataclass(frozen=True, slots=True)
class IoRead:
    """An x86 IN from ``port``; answered with complete_read(value)."""

    port: int
    width: AccessWidth


@dataclass(frozen=True, slots=True)
class IoWrite:
    port: int
    width: AccessWidth
    data: int


@dataclass(frozen=True, slots=True)
class SysRegRead:
    """A trapped system register read (aarch64 MSR encoding, riscv CSR number, x86 MSR)."""

    addr: int
    reg: int = 0


@dataclass(frozen=True, slots=True)
class SysRegWrite:
    addr: int
    value: int


@dataclass(frozen=True, slots=True)
class Hypercall:
    nr: int
    args: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Halt:
    """The guest idles (hlt, wfi) until an interrupt arrives."""


@dataclass(frozen=True, slots=True)
class CpuUp:
    """The guest asks to start another vCPU (PSCI CPU_ON, SBI HSM hart_start, INIT-SIPI)."""

    target_cpu: int
    entry_point: GuestPhysAddr
    arg: int = 0


@dataclass(frozen=True, slots=True)
class CpuDown:
    state: int = 0


@dataclass(frozen=True, slots=True)
class SystemDown:
    """The guest powered the machine off (or asked for a reset when ``reset`` is set)."""

    exit_code: int = 0
    reset: bool = False


@dataclass(frozen=True, slots=True)
class Nothing:
    """The run ended with nothing to handle (a slice expired, a signal interrupted KVM_RUN)."""


@dataclass(frozen=True, slots=True)
class FailEntry:
    """The backend could not enter or keep running the guest; ``detail`` says why."""

    hardware_entry_failure_reason: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ExternalInterrupt:
    vector: int


@dataclass(frozen=True, slots=True)
class NestedPageFault:
    """The guest touched a guest physical address with no stage-2 mapping for that access."""

    addr: GuestPhysAddr
    access_flags: MappingFlags


@dataclass(frozen=True, slots=True)
class SendIpi:
    target_cpu: int
    vector: int
    target_cpu_aux: int = 0
    send_to_all: bool = False
    send_to_self: bool = False


@dataclass(frozen=True, slots=True)
class Unsupported:
    """An exit the backend decoded no further; ``code`` is the backend's raw reason."""

    code: int
    detail: str = ""
    extra: dict[str, int] = field(default_factory=dict, compare=False, hash=False)


AxVCpuExitReason = (
    MmioRead
    | MmioWrite
    | IoRead
    | IoWrite
    | SysRegRead
    | SysRegWrite
    | Hypercall
    | Halt
    | CpuUp
    | CpuDown
    | SystemDown
    | Nothing
    | FailEntry
    | ExternalInterrupt
    | NestedPageFault
    | SendIpi
    | Unsupported
)
"""Every value ``ArchVCpu.run`` may return."""

READ_EXITS = (MmioRead, IoRead, SysRegRead)
"""Exits that leave the vCPU waiting for ``complete_read``."""
