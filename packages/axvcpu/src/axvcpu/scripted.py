"""A backend that replays a script of exits: for tests of everything above the vCPU.

It is a real ``ArchVCpu`` (not a mock): registers are a dict, reads answered with
``complete_read`` are recorded in order, and running past the end of the script reports
``SystemDown`` so a VM driven by it always terminates.
"""

from __future__ import annotations

from collections.abc import Iterable

from axaddrspace import GuestPhysAddr, Stage2Mapper

from .arch import ArchVCpu
from .exits import AxVCpuExitReason, SystemDown


class ScriptedVCpu(ArchVCpu):
    def __init__(self, script: Iterable[AxVCpuExitReason]) -> None:
        self._script = list(script)
        self._next = 0
        self.registers: dict[str, int] = {}
        self.completed_reads: list[int] = []
        self.injected: list[int] = []
        self.entry: GuestPhysAddr | None = None
        self.stage2: Stage2Mapper | None = None
        self.bound = False

    def setup(self, entry: GuestPhysAddr, stage2: Stage2Mapper | None) -> None:
        self.entry = entry
        self.stage2 = stage2
        self.registers["pc"] = int(entry)

    def run(self) -> AxVCpuExitReason:
        if self._next >= len(self._script):
            return SystemDown(exit_code=0)
        exit_reason = self._script[self._next]
        self._next += 1
        return exit_reason

    @property
    def exits_left(self) -> int:
        return len(self._script) - self._next

    def complete_read(self, value: int) -> None:
        self.completed_reads.append(value)

    def get_register(self, name: str) -> int:
        return self.registers.get(name, 0)

    def set_register(self, name: str, value: int) -> None:
        self.registers[name] = value

    def inject_interrupt(self, vector: int) -> None:
        self.injected.append(vector)

    def bind(self) -> None:
        self.bound = True

    def unbind(self) -> None:
        self.bound = False
