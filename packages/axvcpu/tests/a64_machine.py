"""A tiny aarch64 machine on SoftAarch64Backend for the soft backend's tests.

RAM at 0x4000_0000 (QEMU virt's), the test program at its start, an optional fake MMIO
device standing in for the bus, and helpers to run a vCPU until it halts in wfi.
"""

from __future__ import annotations

from axaddrspace import GuestMemory, GuestMemoryRegion, GuestPhysAddr, MappingFlags
from axvcpu import AxVCpuExitReason, Halt, Nothing
from axvcpu.backends.soft import Aarch64SoftVCpu, SoftAarch64Backend

from .aarch64_asm import RAM_BASE, assemble
from .soft_machine import FakeMmio

RAM_SIZE = 0x40_0000
DEVICE = 0x0900_0000  # where QEMU virt has its PL011
DATA = RAM_BASE + 0x10_0000
STACK = RAM_BASE + 0x20_0000
U64 = (1 << 64) - 1

PRELUDE = f"""
.equ DEVICE, {DEVICE:#x}
.equ DATA, {DATA:#x}
"""


class A64Machine:
    def __init__(
        self,
        source: str,
        *,
        cpus: int = 1,
        mmio: FakeMmio | None = None,
        mmio_ranges: list[tuple[int, int]] | None = None,
        **backend_options: object,
    ) -> None:
        self.backend = SoftAarch64Backend(cpus, **backend_options)  # type: ignore[arg-type]
        self.ram = GuestMemoryRegion.anonymous(RAM_BASE, RAM_SIZE)
        self.memory = GuestMemory([self.ram])
        self.backend.stage2.attach_memory(self.memory)
        flags = MappingFlags.READ | MappingFlags.WRITE | MappingFlags.EXECUTE
        self.backend.stage2.map(self.ram, flags)
        self.program = assemble(PRELUDE + source)
        self.ram.view[: len(self.program.code)] = self.program.code
        self.mmio = mmio
        if mmio is not None:
            self.backend.set_mmio_handler(mmio_ranges or [(DEVICE, 0x1000)], mmio)
        self.vcpus: list[Aarch64SoftVCpu] = []
        for cpu in range(cpus):
            vcpu = self.backend.create_vcpu(cpu)
            vcpu.setup(GuestPhysAddr(RAM_BASE), None)
            vcpu.set_register("x0", cpu)
            vcpu.set_register("sp", STACK - cpu * 0x1000)
            self.vcpus.append(vcpu)

    @property
    def vcpu(self) -> Aarch64SoftVCpu:
        return self.vcpus[0]

    def run_until_halt(self, cpu: int = 0, max_runs: int = 200) -> list[AxVCpuExitReason]:
        """Run until Halt; every exit on the way must be Nothing."""
        exits: list[AxVCpuExitReason] = []
        for _ in range(max_runs):
            exit_reason = self.vcpus[cpu].run()
            exits.append(exit_reason)
            if isinstance(exit_reason, Halt):
                return exits
            assert isinstance(exit_reason, Nothing), exits
        raise AssertionError(f"vCPU {cpu} did not halt in {max_runs} runs: {exits[-5:]}")

    def sym(self, label: str) -> int:
        return self.program[label]

    def reg(self, name: str, cpu: int = 0) -> int:
        return self.vcpus[cpu].get_register(name)

    def u64(self, gpa: int) -> int:
        off = gpa - RAM_BASE
        return int.from_bytes(self.ram.view[off : off + 8], "little")

    def put_u64(self, gpa: int, value: int) -> None:
        off = gpa - RAM_BASE
        self.ram.view[off : off + 8] = (value & U64).to_bytes(8, "little")

    def close(self) -> None:
        self.backend.close()
        self.memory.close()
