"""On the soft backend's C engine the riscv virt machine has each hart's writes to its own
mtimecmp taken in the engine (``MtimecmpWrites``); the CLINT still reads back what the guest
wrote once the hart is out of its slice."""

from __future__ import annotations

import struct

from axaddrspace import GuestPhysAddr
from axvcpu import Halt
from axvcpu.backends.soft import SoftRiscvBackend
from axvm import AxVM, parse_config
from axvm.machine import BootPlan
from axvm.machines.riscv.machine import RiscvVirtMachine

from .host_tools import needs
from .test_riscv_code_fence import ENTRY, RISCV

VALUE = 0x1234_5000
PROGRAM = struct.pack(
    "<5I",
    0x0200_42B7,  # lui t0, 0x2004      t0 = the CLINT's mtimecmp of hart 0
    0x1234_5337,  # lui t1, 0x12345     t1 = VALUE
    0x0062_B023,  # sd t1, 0(t0)
    0x1050_0073,  # 1: wfi
    0xFFDF_F06F,  # j 1b
)


@needs("gcc", why="the soft CPU's C engine is compiled at first use")
def test_the_clint_reads_back_an_mtimecmp_the_engine_took() -> None:
    backend = SoftRiscvBackend(1, engine="c")
    vm = AxVM(parse_config(RISCV), backend)
    try:
        vm.addrspace.memory.write(GuestPhysAddr(ENTRY), PROGRAM)
        vm.mark_loaded()
        vm.boot(BootPlan(ENTRY))
        assert vm.run_vcpu(0) == Halt()
        machine = vm.machine
        assert isinstance(machine, RiscvVirtMachine) and machine.clint is not None
        assert machine.clint.mtimecmp(0) == VALUE
        assert backend.vcpu(0).mtimecmp_writes > 0  # taken in C, replayed to the device
    finally:
        vm.stop()
