"""A tiny riscv64 machine on SoftRiscvBackend for the soft backend's tests.

RAM at 0x8000_0000, the test program at its start, a fake MMIO device standing in for the
bus, and helpers to run a hart until it halts in wfi.
"""

from __future__ import annotations

import threading

from axaddrspace import AccessWidth, GuestMemory, GuestMemoryRegion, GuestPhysAddr, MappingFlags
from axvcpu import AxVCpuExitReason, Halt, Nothing
from axvcpu.backends.soft import RiscvSoftVCpu, SoftRiscvBackend

from .riscv_asm import RAM_BASE, assemble

RAM_SIZE = 0x40_0000
UART = 0x1000_0000
DATA = RAM_BASE + 0x10_0000  # scratch data the programs and the tests share
U64 = (1 << 64) - 1

PRELUDE = f"""
.equ UART, {UART:#x}
.equ DATA, {DATA:#x}
.equ MSTATUS_MIE, 0x8
.equ MSTATUS_SIE, 0x2
.equ MPP_MASK, 0x1800
.equ MPP_S, 0x800
"""


class FakeMmio:
    """Stands in for axdevice's MmioBus: records writes and reads, answers reads from a table."""

    def __init__(self, values: dict[int, int] | None = None) -> None:
        self.values = dict(values or {})
        self.reads: list[tuple[int, AccessWidth]] = []
        self.writes: list[tuple[int, AccessWidth, int]] = []
        self.on_write: dict[int, object] = {}
        self.lock = threading.Lock()

    def read(self, addr: int, width: AccessWidth) -> int:
        with self.lock:
            self.reads.append((addr, width))
        return self.values.get(addr, 0)

    def write(self, addr: int, width: AccessWidth, value: int) -> None:
        with self.lock:
            self.writes.append((addr, width, value))
        action = self.on_write.get(addr)
        if action is not None:
            action(value)  # type: ignore[operator]


class SoftMachine:
    def __init__(
        self,
        source: str,
        *,
        harts: int = 1,
        mmio: FakeMmio | None = None,
        mmio_ranges: list[tuple[int, int]] | None = None,
        **backend_options: object,
    ) -> None:
        self.backend = SoftRiscvBackend(harts, **backend_options)  # type: ignore[arg-type]
        self.ram = GuestMemoryRegion.anonymous(RAM_BASE, RAM_SIZE)
        self.memory = GuestMemory([self.ram])  # what the harts' own reads go through, as in a VM
        self.backend.stage2.attach_memory(self.memory)
        flags = MappingFlags.READ | MappingFlags.WRITE | MappingFlags.EXECUTE
        self.backend.stage2.map(self.ram, flags)
        self.program = assemble(PRELUDE + source)
        self.ram.view[: len(self.program.code)] = self.program.code
        self.mmio = mmio
        if mmio is not None:
            self.backend.set_mmio_handler(mmio_ranges or [(UART, 0x100)], mmio)
        self.vcpus: list[RiscvSoftVCpu] = []
        for hart in range(harts):
            vcpu = self.backend.create_vcpu(hart)
            vcpu.setup(GuestPhysAddr(RAM_BASE), None)
            vcpu.set_register("a0", hart)
            self.vcpus.append(vcpu)

    @property
    def vcpu(self) -> RiscvSoftVCpu:
        return self.vcpus[0]

    def run_until_halt(self, hart: int = 0, max_runs: int = 200) -> list[AxVCpuExitReason]:
        """Run until Halt; every exit on the way must be Nothing."""
        exits: list[AxVCpuExitReason] = []
        for _ in range(max_runs):
            exit_reason = self.vcpus[hart].run()
            exits.append(exit_reason)
            if isinstance(exit_reason, Halt):
                return exits
            assert isinstance(exit_reason, Nothing), exits
        raise AssertionError(f"hart {hart} did not halt in {max_runs} runs: {exits[-5:]}")

    def sym(self, label: str) -> int:
        return self.program[label]

    def reg(self, name: str, hart: int = 0) -> int:
        return self.vcpus[hart].get_register(name)

    def u64(self, gpa: int) -> int:
        off = gpa - RAM_BASE
        return int.from_bytes(self.ram.view[off : off + 8], "little")

    def put_u64(self, gpa: int, value: int) -> None:
        off = gpa - RAM_BASE
        self.ram.view[off : off + 8] = (value & U64).to_bytes(8, "little")

    def close(self) -> None:
        self.backend.close()
        self.memory.close()


def build(machines: list[SoftMachine], source: str, **kwargs: object) -> SoftMachine:
    """A SoftMachine added to ``machines`` (the ``machines`` fixture closes them)."""
    machine = SoftMachine(source, **kwargs)  # type: ignore[arg-type]
    machines.append(machine)
    return machine
