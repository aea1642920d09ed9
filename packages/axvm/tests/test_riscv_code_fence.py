"""The riscv virt machine installs the SBI-aware translation flush on a backend with an
``EcallHook``: the CPU model knows no firmware ABI, the machine does."""

from __future__ import annotations

import struct

import pytest

from axaddrspace import GuestPhysAddr
from axvcpu import Halt
from axvcpu.backends.soft import SoftRiscvBackend
from axvcpu.riscv_sbi import SBI_EXT_HSM, SBI_EXT_RFENCE, SbiCodeFence
from axvm import AxVM, BackendCapabilities, ScriptedBackend, parse_config
from axvm.machine import BootPlan

RISCV = """
[base]
id = 7
name = "fence"
vm_type = 1
cpu_num = 1
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x8000_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]
"""
ENTRY = 0x8000_0000
# ecall; 1: wfi; j 1b  (mtvec points at the wfi, so the M-mode handler parks the hart)
ECALL_THEN_PARK = struct.pack("<3I", 0x0000_0073, 0x1050_0073, 0xFFDF_F06F)
SBI_EXT_TIME = 0x5449_4D45  # set_timer: the most frequent SBI call, no code change


def test_the_soft_backend_offers_the_ecall_hook_and_the_scripted_one_does_not() -> None:
    soft = SoftRiscvBackend(1)
    try:
        assert BackendCapabilities.of(soft).ecall_hook is soft
    finally:
        soft.close()
    assert BackendCapabilities.of(ScriptedBackend()).ecall_hook is None


def test_a_riscv_vm_on_the_soft_backend_gets_the_sbi_code_fence() -> None:
    backend = SoftRiscvBackend(1)
    vm = AxVM(parse_config(RISCV), backend)
    try:
        assert backend.ecall_observer is None  # installed when the machine prepares the boot
        vm.mark_loaded()
        vm.boot(BootPlan(ENTRY))
        assert isinstance(backend.ecall_observer, SbiCodeFence)
    finally:
        vm.stop()


@pytest.mark.parametrize(
    ("a7", "announces"),
    [(SBI_EXT_RFENCE, True), (SBI_EXT_HSM, False), (SBI_EXT_TIME, False)],
)
def test_an_sbi_call_the_guest_makes_reaches_the_installed_fence(a7: int, announces: bool) -> None:
    """End to end: an S-mode ecall in a booted VM bumps the code generation, which every hart
    sees, only for a remote fence.i (RFENCE function 0); a hart start (HSM function 0) drops the
    started hart's code alone (below)."""
    backend = SoftRiscvBackend(1)
    vm = AxVM(parse_config(RISCV), backend)
    try:
        vm.addrspace.memory.write(GuestPhysAddr(ENTRY), ECALL_THEN_PARK)
        vm.mark_loaded()
        vm.boot(BootPlan(ENTRY))
        vcpu = vm.vcpus[0]
        for name, value in (("mtvec", ENTRY + 4), ("a7", a7), ("a6", 0), ("priv", 1)):
            vcpu.set_register(name, value)
        assert vm.run_vcpu(0) == Halt()
        assert vcpu.get_register("mcause") == 9  # an ecall from S, entered by hand
        assert backend.code_generation == int(announces)
    finally:
        vm.stop()


def test_a_hart_start_drops_the_code_of_the_started_hart_alone() -> None:
    """HSM hart_start from hart 0 for hart 1 (a0): hart 1 flushes before its next slice, hart 0
    keeps its translations and the code generation stays (a flush of every hart per secondary
    start made the boot hart retranslate its working set once per secondary)."""
    backend = SoftRiscvBackend(2)
    vm = AxVM(parse_config(RISCV.replace("cpu_num = 1", "cpu_num = 2")), backend)
    try:
        vm.addrspace.memory.write(GuestPhysAddr(ENTRY), ECALL_THEN_PARK)
        vm.mark_loaded()
        vm.boot(BootPlan(ENTRY))
        vcpu = vm.vcpus[0]
        for name, value in (("mtvec", ENTRY + 4), ("a7", SBI_EXT_HSM), ("a6", 0), ("a0", 1), ("priv", 1)):
            vcpu.set_register(name, value)
        for _ in range(3):  # the drop ends the running slice early: run on to the wfi
            if vm.run_vcpu(0) == Halt():
                break
        assert vcpu.get_register("mcause") == 9
        assert backend.code_generation == 0
        assert backend.vcpu(0).translation_flushes == 0
        vm.vcpus[1].set_register("pc", ENTRY + 4)
        vm.run_vcpu(1)
        assert backend.vcpu(1).translation_flushes == 1
    finally:
        vm.stop()
