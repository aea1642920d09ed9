"""The device manager: placement and interrupt allocation refused with both devices named, and
one entry point under one lock for every guest access, whether it came as a vCPU exit or inline
from the soft backend."""

from __future__ import annotations

import struct
import threading
from types import TracebackType

import pytest

from axaddrspace import AccessWidth, AddrRange, GuestPhysAddr
from axdevice import ScratchRegisters
from axvcpu import Halt, IoRead, MmioWrite
from axvcpu.backends.soft import SoftRiscvBackend
from axvm import AxVM, BusKind, ConfigError, DeviceManager, DeviceOwner, PlacementError, ScriptedBackend, parse_config
from axvm.machine import BootPlan

RISCV = """
[base]
id = 3
name = "dm"
vm_type = 1
cpu_num = 1
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x8000_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [{devices}]
"""
X86 = """
[base]
id = 4
name = "dm86"
vm_type = 1
cpu_num = 1
arch = "x86_64"

[kernel]
entry_point = 0x10_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x10_0000
memory_regions = [[0x0, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [{devices}]
"""
UART = 0x1000_0000
"""The riscv virt board's UART."""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as error:
        AxVM(parse_config(text), ScriptedBackend())
    return str(error.value).splitlines()


# -- interrupt allocation ------------------------------------------------------------------------


def test_two_config_devices_on_one_irq_are_refused_naming_both() -> None:
    lines = problems(
        RISCV.format(devices='["a", 0x1000_1000, 0x1000, 2, 0xE4, []], ' '["b", 0x1000_2000, 0x1000, 2, 0xE4, []]')
    )
    assert lines == [
        "devices.emu_devices[1].irq_id: 'b': irq 2 is also the interrupt of "
        "devices.emu_devices[0] 'a'; expected an irq_id no other device uses"
    ]


def test_a_config_device_on_the_board_uarts_irq_is_refused_naming_the_board_uart() -> None:
    """The machine's own devices register their interrupts too: PLIC source 10 is the UART's."""
    lines = problems(RISCV.format(devices='["rng", 0x1000_1000, 0x1000, 10, 0xE4, []]'))
    assert lines == [
        "devices.emu_devices[0].irq_id: 'rng': irq 10 is also the interrupt of the "
        "riscv64 machine's Uart16550Mmio at [0x10000000, 0x10000100); expected an irq_id no "
        "other device uses"
    ]


def test_an_x86_device_on_com1s_irq_is_refused() -> None:
    lines = problems(X86.format(devices='["com2", 0x2f8, 8, 4, 0x2, []]'))
    assert len(lines) == 1
    assert lines[0].startswith(
        "devices.emu_devices[0].irq_id: 'com2': irq 4 is also the interrupt of "
        "the x86_64 machine's Uart16550Port at "
    )


def test_a_config_uart_in_the_board_uarts_place_takes_its_irq_too() -> None:
    """The board's UART yields to the config's, so nothing else holds irq 10."""
    vm = AxVM(parse_config(RISCV.format(devices=f'["uart", {UART:#x}, 0x100, 10, 0x2, []]')), ScriptedBackend())
    assert vm.devices.interrupts[10] == ("devices.emu_devices[0] 'uart'",)
    vm.stop()


def scratch(base: int, size: int = 0x100) -> ScratchRegisters:
    return ScratchRegisters(base, size)


def test_an_interrupt_is_shared_only_when_both_devices_allow_it() -> None:
    devices = DeviceManager()
    devices.attach(scratch(0x1000), BusKind.MMIO, DeviceOwner("first", 0), (5,), shared_irqs=True)
    with pytest.raises(PlacementError, match="irq 5 is also the interrupt of first") as error:
        devices.attach(scratch(0x2000), BusKind.MMIO, DeviceOwner("second", 1), (5,))
    assert (error.value.blame.label, error.value.field) == ("second", "irq_id")
    devices.attach(scratch(0x3000), BusKind.MMIO, DeviceOwner("third", 2), (5,), shared_irqs=True)
    assert devices.interrupts == {5: ("first", "third")}


def test_a_refused_device_leaves_nothing_behind() -> None:
    devices = DeviceManager()
    devices.attach(scratch(0x1000), BusKind.MMIO, DeviceOwner("first", 0), (5,))
    refused = scratch(0x2000)
    with pytest.raises(PlacementError):
        devices.attach(refused, BusKind.MMIO, DeviceOwner("second", 1), (6, 5))
    assert devices.buses.mmio.find(0x2000) is None and devices.owner(refused) is None
    assert devices.interrupts == {5: ("first",)}
    devices.attach(scratch(0x2000), BusKind.MMIO, DeviceOwner("again", 1), (6,))  # 6 was not kept either


def test_a_machine_device_clashing_with_a_config_entry_blames_the_entry() -> None:
    devices = DeviceManager()
    devices.attach(scratch(0x1000), BusKind.MMIO, DeviceOwner("devices.emu_devices[0] 'x'", 0), (7,))
    with pytest.raises(PlacementError) as error:
        devices.attach(scratch(0x2000), BusKind.MMIO, DeviceOwner("the board's timer"), (7,))
    assert error.value.blame.entry == 0 and "the board's timer" in str(error.value)


# -- placement -----------------------------------------------------------------------------------


def test_overlapping_devices_are_refused_naming_both() -> None:
    lines = problems(
        RISCV.format(devices='["a", 0x1000_1000, 0x1000, 1, 0xE4, []], ' '["b", 0x1000_1800, 0x1000, 2, 0xE4, []]')
    )
    assert len(lines) == 1
    assert lines[0].startswith("devices.emu_devices[1]: 'b': mmio bus: ")
    assert lines[0].endswith(", placed by devices.emu_devices[0] 'a'; expected another base_gpa")


def test_an_mmio_device_over_ram_is_refused_naming_the_ram() -> None:
    devices = DeviceManager([AddrRange.from_start_size(0x8000_0000, 0x1000)])
    with pytest.raises(PlacementError, match=r"overlaps guest RAM \[0x80000000, 0x80001000\)"):
        devices.attach(scratch(0x8000_0800), BusKind.MMIO, DeviceOwner("d", 0))
    assert devices.buses.mmio.devices == ()


# -- one entry point, one lock ---------------------------------------------------------------------


class WatchedLock:
    """A lock that says when a second thread waits for it, and whether it is held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.contended = threading.Event()

    def __enter__(self) -> WatchedLock:
        if not self._lock.acquire(blocking=False):
            self.contended.set()
            self._lock.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


def test_an_exit_reaches_the_devices_under_the_device_managers_lock() -> None:
    held: list[bool] = []
    vm = AxVM(
        parse_config(RISCV.format(devices="")),
        ScriptedBackend(
            {0: [MmioWrite(GuestPhysAddr(UART), AccessWidth.BYTE, ord("A")), IoRead(0x60, AccessWidth.BYTE), Halt()]}
        ),
        lambda data: held.append(vm.device_lock.locked()),
    )
    vm.mark_loaded()
    vm.boot()
    assert vm.run_vcpu(0) == Halt()
    assert held == [True]
    assert vm.devices.unhandled()[BusKind.PORT].reads == 1  # and its counters are the buses'
    vm.stop()


# lui t0, 0x10000; addi t1, zero, 'A'; sb t1, 0(t0); wfi; j .-4
UART_A_THEN_WFI = struct.pack("<5I", 0x100002B7, 0x04100313, 0x00628023, 0x10500073, 0xFFDFF06F)


def test_the_soft_backends_inline_mmio_waits_for_the_device_managers_lock() -> None:
    """Held by the test thread, the lock stops the guest's inline UART store at the device
    manager; released, the store goes on and the vCPU halts at its wfi."""
    output: list[bytes] = []
    vm = AxVM(parse_config(RISCV.format(devices="")), SoftRiscvBackend(1), output.append)
    lock = WatchedLock()
    vm.devices.lock = lock  # watched; the backend's MMIO handler is the device manager itself
    vm.addrspace.memory.write(GuestPhysAddr(0x8000_0000), UART_A_THEN_WFI)
    vm.mark_loaded()
    vm.boot(BootPlan(0x8000_0000))
    results = []
    runner = threading.Thread(target=lambda: results.append(vm.run_vcpu(0)))
    try:
        with lock:
            runner.start()
            assert lock.contended.wait(60), "the guest's store never reached the device manager"
            assert output == []  # the UART was not touched while the test held the lock
        runner.join(60)
        assert not runner.is_alive()
        assert output == [b"A"] and results == [Halt()]
    finally:
        vm.stop()


def test_the_machines_own_devices_are_not_held_to_the_configs_ram() -> None:
    """RAM from 0 covers the riscv board's CLINT at 0x200_0000: the config is not refused for it
    (the board's devices sit at fixed addresses; only the config's own are checked against RAM)."""
    text = RISCV.format(devices="").replace("[0x8000_0000, 0x100_0000, 0x7, 0]", "[0x0, 0x400_0000, 0x7, 0]")
    vm = AxVM(parse_config(text.replace("0x8000_0000", "0x0")), ScriptedBackend())
    assert vm.buses.mmio.find(0x200_0000) is not None
    vm.stop()
