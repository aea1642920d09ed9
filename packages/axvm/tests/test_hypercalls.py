"""AxVisor's hypercalls served by the VM, and inter-VM channels between two VMs (scripted
vCPUs: the calls are exactly what a guest's ecall/hvc/vmcall reports)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from axdevice import RecordingIrqLine
from axvcpu import Hypercall, SystemDown
from axvm import AxVM, ScriptedBackend, parse_config
from axvm.hypercalls import EID_HVC, HvError, HyperCallCode, HypercallError
from axvm.ivc import DEFAULT_HUB, MAX_CHANNEL_SIZE

RAM = 0x8000_0000
WINDOW = 0x9000_0000
U64 = (1 << 64) - 1


def config(vm_id: int, ivc: bool = True) -> str:
    window = f'["ivc", {WINDOW:#x}, 0x10_0000, 0, 0xA, []],' if ivc else ""
    return f"""
[base]
id = {vm_id}
name = "vm{vm_id}"
vm_type = 1
cpu_num = 1
arch = "riscv64"

[kernel]
entry_point = {RAM:#x}
kernel_path = "fw.bin"
kernel_load_addr = {RAM:#x}
memory_regions = [[{RAM:#x}, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [{window}]
"""


def run(vm_id: int, calls: list[Hypercall], ivc: bool = True, setup=None) -> tuple[AxVM, list[int]]:
    """A VM whose vCPU makes ``calls``; returns it (not stopped) and a0 after each call."""
    results: list[int] = []
    backend = ScriptedBackend({0: calls})
    vm = AxVM(parse_config(config(vm_id, ivc)), backend)
    vm.mark_loaded()
    vm.boot()
    if setup is not None:
        setup(vm)
    vcpu = backend.vcpus[0]
    table_handle = vm.hypercalls.handle

    def handle(v, vcpu_id, call):  # record each call's a0 as the guest would see it
        table_handle(v, vcpu_id, call)
        results.append(vcpu.registers.get("a0", 0))

    vm.hypercalls.handle = handle  # type: ignore[method-assign]
    assert vm.run_vcpu(0) == SystemDown(exit_code=0)
    return vm, results


def err(code: HvError) -> int:
    return int(code) & U64


def test_eid_is_hvc_in_ascii() -> None:
    assert EID_HVC.to_bytes(3, "big") == b"HVC"


def test_debug_is_served_and_unknown_codes_are_not_supported() -> None:
    vm, results = run(501, [Hypercall(HyperCallCode.HyperVisorDebug, (1, 2, 3)), Hypercall(77, ())], ivc=False)
    try:
        assert results == [0, err(HvError.NOT_SUPPORTED)]
        assert vm.hypercalls.debug_calls == [(1, 2, 3)]
        assert vm.hypercalls.counts == {2: 1, 77: 1}
    finally:
        vm.stop()


def test_a_python_handler_answers_and_a_failing_one_answers_failed() -> None:
    def setup(vm: AxVM) -> None:
        vm.hypercalls.register(0x40, lambda context: context.call.args[0] * 2)
        vm.hypercalls.register(0x41, lambda context: 1 // 0)
        vm.hypercalls.register(0x42, lambda context: "no")  # type: ignore[arg-type,return-value]

    vm, results = run(502, [Hypercall(0x40, (21,)), Hypercall(0x41, ()), Hypercall(0x42, ())], ivc=False, setup=setup)
    try:
        assert results == [0, err(HvError.FAILED), err(HvError.FAILED)]
    finally:
        vm.stop()


def test_a_handlers_value_reaches_a1() -> None:
    def setup(vm: AxVM) -> None:
        vm.hypercalls.register(0x40, lambda context: context.call.args[0] * 2)

    vm, results = run(510, [Hypercall(0x40, (21,))], ivc=False, setup=setup)
    try:
        assert results == [0]
        assert vm.vcpus[0].get_register("a1") == 42
    finally:
        vm.stop()


def test_a_channel_one_vm_publishes_another_maps_the_same_pages() -> None:
    size_ptr, base_ptr, key = RAM + 0x1000, RAM + 0x1008, 0xC0FFEE

    def ask_size(vm: AxVM) -> None:
        vm.addrspace.memory.write_u64(size_ptr, 5000)
        assert vm.ivc is not None
        vm.ivc.irq = RecordingIrqLine()

    publisher, results = run(503, [Hypercall(3, (key, base_ptr, size_ptr))], setup=ask_size)
    subscriber = None
    try:
        assert results == [0]
        memory = publisher.addrspace.memory
        base, size = memory.read_u64(base_ptr), memory.read_u64(size_ptr)
        assert (base, size) == (WINDOW, 0x2000)  # rounded up to pages, first place in the window
        memory.write(base + 0x10, b"hello from 503")

        subscriber, results = run(504, [Hypercall(4, (503, key, base_ptr, size_ptr))])
        assert results == [0]
        theirs = subscriber.addrspace.memory
        sub_base = theirs.read_u64(base_ptr)
        assert theirs.read_u64(size_ptr) == 0x2000
        assert theirs.read(sub_base + 0x10, 14) == b"hello from 503"
        theirs.write(sub_base + 0x100, b"reply")
        assert memory.read(base + 0x100, 5) == b"reply"
        assert publisher.ivc is not None and publisher.ivc.irq.pulses == 1  # type: ignore[union-attr]
    finally:
        publisher.stop()
        if subscriber is not None:
            subscriber.stop()
    assert (503, key) not in DEFAULT_HUB.channels  # the last VM out released it


@pytest.mark.parametrize(
    ("call", "size", "expected"),
    [
        (Hypercall(3, (1, RAM + 0x1008, RAM + 0x1000)), 0, HvError.INVALID_PARAM),
        (Hypercall(3, (1, RAM + 0x1008, RAM + 0x1000)), MAX_CHANNEL_SIZE + 1, HvError.INVALID_PARAM),
        (Hypercall(3, (1, RAM + 0x1008, 0x10)), 0x1000, HvError.INVALID_ADDRESS),
        (Hypercall(3, (1, RAM + 0x1009, RAM + 0x1000)), 0x1000, HvError.INVALID_ADDRESS),
        (Hypercall(4, (9999, 1, RAM + 0x1008, RAM + 0x1000)), 0x1000, HvError.INVALID_PARAM),
        (Hypercall(5, (12345,)), 0x1000, HvError.INVALID_PARAM),
        (Hypercall(6, (505, 1)), 0x1000, HvError.INVALID_PARAM),
    ],
)
def test_bad_arguments_get_their_error(call: Hypercall, size: int, expected: HvError) -> None:
    vm, results = run(505, [call], setup=lambda vm: vm.addrspace.memory.write_u64(RAM + 0x1000, size))
    try:
        assert results == [err(expected)]
    finally:
        vm.stop()


def test_publishing_a_key_twice_and_without_a_window() -> None:
    def setup(vm: AxVM) -> None:
        vm.addrspace.memory.write_u64(RAM + 0x1000, 0x1000)

    call = Hypercall(3, (7, RAM + 0x1008, RAM + 0x1000))
    vm, results = run(506, [call, call], setup=setup)
    try:
        assert results == [0, err(HvError.ALREADY_AVAILABLE)]
    finally:
        vm.stop()
    bare, results = run(507, [call], ivc=False, setup=setup)
    try:
        assert results == [err(HvError.NOT_SUPPORTED)]
    finally:
        bare.stop()


def test_a_window_over_ram_is_a_config_error_naming_the_entry() -> None:
    text = config(508).replace(f"{WINDOW:#x}, 0x10_0000", f"{RAM:#x}, 0x1000")
    with pytest.raises(Exception, match=r"emu_devices\[0\].*overlaps guest RAM"):
        AxVM(parse_config(text), ScriptedBackend({}))


@given(st.integers(0, 16), st.lists(st.integers(0, U64), max_size=6))
def test_any_call_is_answered_never_raised(code: int, args: list[int]) -> None:
    vm, results = run(509, [Hypercall(code, tuple(args))])
    try:
        assert len(results) == 1
    finally:
        vm.stop()


def test_hypercall_error_carries_the_guest_code() -> None:
    assert HypercallError(HvError.DENIED, "x").error is HvError.DENIED
