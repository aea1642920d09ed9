"""What a VM needs from an execution backend, and a scripted one for tests.

The interface lives here, in the layer that uses it; backends in axvcpu satisfy it
structurally (they need not import axvm). What only some backends can do (numbered interrupt
lines, hart lines, a machine clock, inline MMIO) is not part of it: those are the capabilities
in ``capabilities.py``, which a machine asks for. An interrupt line is anything with
``set_level``/``pulse`` (axdevice's IrqLine protocol), so backends need not import axdevice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from axaddrspace import InMemoryStage2, Stage2Mapper
from axdevice import RecordingIrqLine
from axvcpu import ArchVCpu, AxVCpuExitReason, ScriptedVCpu


class VmBackend(Protocol):
    """One VM's share of an execution backend (a KVM VM fd, a set of unicorn engines)."""

    name: str

    @property
    def stage2(self) -> Stage2Mapper: ...

    def create_vcpu(self, vcpu_id: int) -> ArchVCpu: ...

    def close(self) -> None: ...


@runtime_checkable
class GuestClock(Protocol):
    """A backend whose guest-visible clock can stand still while the VM is paused, so a resumed
    guest sees no jump (the soft riscv mtime, KVM's kvmclock through KVM_GET/SET_CLOCK)."""

    def pause_clock(self) -> None:
        """Freeze the guest's clock at its current value (all vCPUs are out of the guest)."""

    def resume_clock(self) -> None:
        """Let the guest's clock run on from the value it was frozen at."""


class ScriptedBackend:
    """A backend whose vCPUs replay scripts: lets tests drive a whole VM without a CPU.

    ``scripts`` maps a vCPU id to the exits it will report; stage-2 mappings are recorded in an
    InMemoryStage2 and interrupt lines are RecordingIrqLines, both open to inspection.
    """

    name = "scripted"

    def __init__(self, scripts: dict[int, Iterable[AxVCpuExitReason]] | None = None,
                 vcpu_factory: Callable[[int], ArchVCpu] | None = None) -> None:
        self._scripts = {vcpu_id: list(script) for vcpu_id, script in (scripts or {}).items()}
        self._factory = vcpu_factory
        self._stage2 = InMemoryStage2()
        self.vcpus: dict[int, ArchVCpu] = {}
        self.irq_lines: dict[int, RecordingIrqLine] = {}
        self.closed = False

    @property
    def stage2(self) -> InMemoryStage2:
        return self._stage2

    def create_vcpu(self, vcpu_id: int) -> ArchVCpu:
        if self._factory is not None:
            vcpu = self._factory(vcpu_id)
        else:
            vcpu = ScriptedVCpu(self._scripts.get(vcpu_id, []))
        self.vcpus[vcpu_id] = vcpu
        return vcpu

    def irq_line(self, irq: int) -> RecordingIrqLine:
        return self.irq_lines.setdefault(irq, RecordingIrqLine())

    def close(self) -> None:
        self.closed = True
