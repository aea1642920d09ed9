"""The x86 machine's hypercall doorbell (port 0xE0): how x86 guests on KVM reach AxVisor's
hypercalls, since KVM serves ``vmcall`` in the kernel. Scripted vCPUs: a port write is exactly
what KVM reports for ``out %eax, $0xe0``."""

from __future__ import annotations

from collections.abc import Callable

from axaddrspace import AccessWidth
from axvcpu import IoWrite, SystemDown
from axvm import AxVM, BusKind, ScriptedBackend, parse_config
from axvm.hypercalls import HvError, HyperCallCode
from axvm.machines.x86.machine import HYPERCALL_PORT

U64 = (1 << 64) - 1
CONFIG = """
[base]
id = 70
name = "doorbell86"
vm_type = 1
cpu_num = 1
arch = "x86_64"

[kernel]
entry_point = 0x10_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x10_0000
memory_regions = [[0x0, 0x100_0000, 0x7, 0]]
"""


class QuietBackend(ScriptedBackend):
    """Records the quiet-port bitmap the machine hands a backend like KVM's."""

    bitmap = b""

    def set_quiet_ports(self, bitmap: bytes, sink: Callable[[int, int], object]) -> None:
        self.bitmap = bitmap


def ring(registers: list[dict[str, int]]) -> tuple[AxVM, list[int]]:
    """A VM whose vCPU rings the doorbell once per register set; rax after each ring."""
    backend = QuietBackend({0: [IoWrite(HYPERCALL_PORT, AccessWidth.DWORD, 0) for _ in registers]})
    vm = AxVM(parse_config(CONFIG), backend)
    vm.mark_loaded()
    vm.boot()
    vcpu = backend.vcpus[0]
    results: list[int] = []
    pending = list(registers)
    vcpu.registers.update(pending.pop(0))
    handle = vm.hypercalls.handle

    def observe(v, vcpu_id, call):  # type: ignore[no-untyped-def]
        handle(v, vcpu_id, call)
        results.append(vcpu.registers["rax"])
        if pending:
            vcpu.registers.update(pending.pop(0))

    vm.hypercalls.handle = observe  # type: ignore[method-assign]
    assert vm.run_vcpu(0) == SystemDown(exit_code=0)
    return vm, results


def test_a_doorbell_write_is_a_hypercall_from_axvisors_x86_registers() -> None:
    debug = {"rax": HyperCallCode.HyperVisorDebug, "rdi": 1, "rsi": 2, "rdx": 3, "rcx": 4, "r8": 5}
    vm, results = ring([debug, {"rax": 0x77}])
    try:
        assert results == [0, int(HvError.NOT_SUPPORTED) & U64]
        assert vm.hypercalls.debug_calls == [(1, 2, 3, 4)]
        assert vm.hypercalls.counts == {2: 1, 0x77: 1}
        assert vm.devices.unhandled()[BusKind.PORT].writes == 0  # the port bus never saw the writes
    finally:
        vm.stop()


def test_the_doorbell_port_is_never_answered_by_the_backend_itself() -> None:
    backend = QuietBackend()
    vm = AxVM(parse_config(CONFIG), backend)
    vm.mark_loaded()
    vm.boot()
    try:
        assert backend.bitmap, "the machine handed no quiet-port bitmap"
        assert not backend.bitmap[HYPERCALL_PORT // 8] >> (HYPERCALL_PORT % 8) & 1
        assert backend.bitmap[0x80 // 8] >> (0x80 % 8) & 1  # other ports without devices stay quiet
    finally:
        vm.stop()
