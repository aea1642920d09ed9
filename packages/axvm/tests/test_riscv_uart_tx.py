"""The riscv virt machine lets the soft backend's C engine serve the console UART's polled
transmit (``PolledUartTx``), for the UART actually on the bus: the machine's own or one the
config places at the same address. Typed input still reaches a polling guest, and output
reaches the console."""

from __future__ import annotations

import struct
import threading

import pytest

from axaddrspace import GuestPhysAddr
from axvcpu import Halt
from axvcpu.backends.soft import SoftRiscvBackend
from axvm import AxVM, parse_config
from axvm.machine import BootPlan

from .host_tools import needs
from .test_device_manager import RISCV

ENTRY = 0x8000_0000
ECHO_ONE_KEY = struct.pack(
    "<10I",
    0x1000_0437,  # lui s0, 0x10000        the UART
    0x0054_4283,  # 1: lbu t0, 5(s0)       LSR
    0x0012_F293,  # andi t0, t0, 1         DR
    0xFE02_8CE3,  # beqz t0, 1b
    0x0004_4583,  # lbu a1, 0(s0)          RBR
    0x00B4_0023,  # sb a1, 0(s0)           THR: echo it
    0x00A0_0313,  # li t1, 10
    0x0064_0023,  # sb t1, 0(s0)           and a newline
    0x1050_0073,  # 2: wfi
    0xFFDF_F06F,  # j 2b
)
CONFIG_UART = '["uart0", 0x1000_0000, 0x100, 10, 0x2, []]'


def type_a_key(vm: AxVM) -> None:
    with vm.device_lock:
        assert vm.consoles[0].push_input(b"k") == 1


@needs("gcc", why="the soft CPU's C engine is compiled at first use")
@pytest.mark.parametrize("devices", ["", CONFIG_UART], ids=["the machine's UART", "the config's UART"])
def test_a_polling_guest_gets_typed_input_and_its_echo_reaches_the_console(devices: str) -> None:
    output: list[bytes] = []
    backend = SoftRiscvBackend(1, engine="c")
    vm = AxVM(parse_config(RISCV.format(devices=devices)), backend, output.append)
    try:
        vm.addrspace.memory.write(GuestPhysAddr(ENTRY), ECHO_ONE_KEY)
        vm.mark_loaded()
        vm.boot(BootPlan(ENTRY))
        typist = threading.Timer(0.2, type_a_key, (vm,))  # while the guest polls LSR in C
        typist.start()
        try:
            assert vm.run_vcpu(0) == Halt()  # run_vcpu returns at the wfi after the echo
        finally:
            typist.cancel()
        assert b"".join(output) == b"k\n"
        assert backend.vcpu(0).uart_accesses > 0  # the polling was served in C
    finally:
        vm.stop()
