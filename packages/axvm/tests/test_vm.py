from __future__ import annotations

import itertools

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import Halt, IoRead, IoWrite, MmioRead, MmioWrite, SystemDown, VCpuState
from axvm import (
    VM_TRANSITIONS,
    AxVM,
    ConfigError,
    IllegalVMTransition,
    ScriptedBackend,
    VMState,
    check_vm_transition,
    parse_config,
)

X86 = """
[base]
id = 1
name = "x86"
vm_type = 1
cpu_num = 2
arch = "x86_64"
phys_cpu_sets = [1, 6]

[kernel]
entry_point = 0x10_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x10_0000
memory_regions = [[0x0, 0x100_0000, 0x7, 0], [0x1000_0000, 0x10_0000, 0x3, 0]]

[devices]
emu_devices = [
  ["com1", 0x3f8, 8, 4, 0x2, []],
  ["debug-exit", 0xf4, 1, 0, 0x80, []],
  ["i8042", 0x60, 5, 0, 0x81, []],
]
"""

RISCV = """
[base]
id = 2
name = "rv"
vm_type = 1
cpu_num = 1
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "fw.bin"
kernel_load_addr = 0x8000_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [
  ["uart", 0x1000_0000, 0x100, 10, 0x2, []],
  ["test", 0x10_0000, 0x1000, 0, 0x82, []],
  ["gppt", 0x1000_1000, 0x1000, 1, 0x21, []],
]
"""


def make_vm(text: str, scripts: dict, output: list[bytes] | None = None) -> tuple[AxVM, ScriptedBackend]:
    backend = ScriptedBackend(scripts)
    vm = AxVM(parse_config(text), backend, (output.append if output is not None else None))
    vm.mark_loaded()
    vm.boot()
    return vm, backend


def test_vm_maps_every_region_into_stage2_and_creates_vcpus() -> None:
    vm, backend = make_vm(X86, {})
    mapped = [(m.gpa, m.size) for m in backend.stage2.mappings]
    assert mapped == [(0x0, 0x100_0000), (0x1000_0000, 0x10_0000)]
    assert [vcpu.id for vcpu in vm.vcpus] == [0, 1]
    assert vm.vcpus[1].phys_cpu_set == (1, 2)
    assert all(vcpu.state is VCpuState.FREE for vcpu in vm.vcpus)
    assert backend.vcpus[0].entry == 0x10_0000
    vm.stop()
    assert backend.closed and vm.state is VMState.STOPPED


def test_x86_uart_output_and_debug_exit_status() -> None:
    output: list[bytes] = []
    script = [IoWrite(0x3F8, AccessWidth.BYTE, ord("h")), IoWrite(0x3F8, AccessWidth.BYTE, ord("i")),
              IoRead(0x3FD, AccessWidth.BYTE), IoWrite(0xF4, AccessWidth.BYTE, 0x10), Halt()]
    vm, backend = make_vm(X86, {0: script}, output)
    result = vm.run_vcpu(0)
    assert result == SystemDown(exit_code=0x21)
    assert b"".join(output) == b"hi"
    assert backend.vcpus[0].completed_reads[0] & 0x60 == 0x60  # LSR: THRE | TEMT
    assert backend.vcpus[0].exits_left == 1  # stopped right after the debug-exit write
    assert vm.run_vcpu(1) == SystemDown(exit_code=0x21)  # the other vCPU stops too


def test_i8042_reset_requests_a_reset() -> None:
    vm, _ = make_vm(X86, {0: [IoWrite(0x64, AccessWidth.BYTE, 0xFE)]})
    assert vm.run_vcpu(0) == SystemDown(0, reset=True)


def test_halt_is_returned_to_the_caller() -> None:
    vm, _ = make_vm(X86, {0: [Halt(), IoWrite(0xF4, AccessWidth.BYTE, 0)]})
    assert vm.run_vcpu(0) == Halt()
    assert vm.run_vcpu(0) == SystemDown(1)


def test_riscv_mmio_devices_and_unmodelled_device_warning() -> None:
    output: list[bytes] = []
    script = [MmioWrite(GuestPhysAddr(0x1000_0000), AccessWidth.BYTE, ord("A")),
              MmioRead(GuestPhysAddr(0x1000_1000), AccessWidth.DWORD),
              MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, (3 << 16) | 0x3333)]
    vm, backend = make_vm(RISCV, {0: script}, output)
    assert any("emu_devices[2]" in w and "GPPTDistributor" in w for w in vm.warnings)
    assert vm.run_vcpu(0) == SystemDown(exit_code=3)
    assert output == [b"A"]
    assert backend.vcpus[0].completed_reads == [0xFFFF_FFFF]


def test_guest_memory_is_shared_with_the_address_space() -> None:
    vm, _ = make_vm(RISCV, {})
    vm.addrspace.memory.write_u32(GuestPhysAddr(0x8000_1000), 0xC0FFEE)
    assert vm.addrspace.memory.read_u32(GuestPhysAddr(0x8000_1000)) == 0xC0FFEE
    vm.stop()


@pytest.mark.parametrize(
    "devices,needle",
    [
        ('[["a", 0x3f8, 8, 4, 0x2, []], ["b", 0x3fc, 8, 3, 0x2, []]]', "emu_devices[1]"),
        ('[["x", 0x10, 4, 0, 0x7f, []]]', "emu_devices[0]"),
    ],
)
def test_device_config_errors_name_the_entry(devices: str, needle: str) -> None:
    text = X86.split("[devices]")[0] + f"[devices]\nemu_devices = {devices}\n"
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        AxVM(parse_config(text), ScriptedBackend())


def test_mmio_device_over_ram_is_rejected() -> None:
    text = RISCV.replace("0x1000_0000, 0x100, 10", "0x8000_0000, 0x100, 10")
    with pytest.raises(ConfigError, match="overlaps guest RAM"):
        AxVM(parse_config(text), ScriptedBackend())


def test_debug_exit_is_x86_only() -> None:
    text = RISCV.replace('["test", 0x10_0000, 0x1000, 0, 0x82, []]', '["dbg", 0xf4, 1, 0, 0x80, []]')
    with pytest.raises(ConfigError, match="only on x86_64"):
        AxVM(parse_config(text), ScriptedBackend())


def test_lifecycle_is_enforced() -> None:
    vm = AxVM(parse_config(RISCV), ScriptedBackend())
    assert vm.state is VMState.LOADING
    with pytest.raises(IllegalVMTransition, match="LOADING to RUNNING"):
        vm.boot()
    vm.mark_loaded()
    vm.boot()
    vm.suspend()
    vm.resume()
    vm.stop()
    with pytest.raises(IllegalVMTransition):
        vm.resume()


@pytest.mark.parametrize("current,wanted", list(itertools.product(VMState, VMState)))
def test_vm_transition_table(current: VMState, wanted: VMState) -> None:
    if wanted in VM_TRANSITIONS[current]:
        check_vm_transition("t", current, wanted)
    else:
        with pytest.raises(IllegalVMTransition):
            check_vm_transition("t", current, wanted)
