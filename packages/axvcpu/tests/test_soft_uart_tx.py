"""The C engine serves a UART's polled transmit (``serve_uart_tx``): LSR reads answer what the
UART allowed, THR bytes reach ``transmit`` in batches (a newline, the end of the slice), and
every other access reaches the MMIO handler after the bytes before it."""

from __future__ import annotations

from axaddrspace import AccessWidth
from axvcpu import Halt

from .riscv_asm import requires_riscv_toolchain
from .soft_machine import UART, FakeMmio, SoftMachine

pytestmark = requires_riscv_toolchain

THRE_TEMT = 0x60
IER = UART + 1


class FakeUart:
    """A PolledUart recording into the log it shares with the machine's MMIO handler."""

    def __init__(self, log: list[object]) -> None:
        self.log = log
        self.lsr = THRE_TEMT

    def polled_tx_lsr(self) -> int:
        return self.lsr

    def transmit(self, data: bytes) -> None:
        self.log.append(bytes(data))


class LoggingMmio(FakeMmio):
    def __init__(self, log: list[object]) -> None:
        super().__init__({UART + 5: THRE_TEMT})
        self.log = log

    def read(self, addr: int, width: AccessWidth) -> int:
        self.log.append(("read", addr))
        return super().read(addr, width)

    def write(self, addr: int, width: AccessWidth, value: int) -> None:
        self.log.append(("write", addr, value))
        super().write(addr, width, value)


def uart_machine(machines: list[SoftMachine], source: str, engine: str = "c") -> tuple[SoftMachine, FakeUart]:
    if engine == "c":
        from .conftest import soft_engine_available

        soft_engine_available()
    log: list[object] = []
    m = SoftMachine(source, mmio=LoggingMmio(log), mmio_ranges=[(UART, 0x100)], engine=engine)
    machines.append(m)
    uart = FakeUart(log)
    m.backend.serve_uart_tx(UART, uart)
    return m, uart


def device_accesses(log: list[object], kind: str) -> int:
    """How many ``kind`` ("read", "write") accesses the MMIO handler logged."""
    return sum(1 for entry in log if isinstance(entry, tuple) and entry[0] == kind)


PUTS = """
    li s0, UART
    la s1, text
next:
    lbu t1, 0(s1)
    beqz t1, done
1:  lbu t0, 5(s0)           # LSR
    andi t0, t0, 0x20       # THRE
    beqz t0, 1b
    sb t1, 0(s0)            # THR
    addi s1, s1, 1
    j next
done:
    {after}
    wfi
text:
    .asciz "hi\\nok"
"""


def test_polled_bytes_reach_the_uart_in_batches(machines: list[SoftMachine]) -> None:
    m, uart = uart_machine(machines, PUTS.format(after="nop"))
    assert m.vcpu.run() == Halt()
    assert uart.log == [b"hi\n", b"ok"]  # at the newline, then at the end of the slice
    assert m.vcpu.uart_accesses == 10  # 5 LSR reads, 5 THR writes


def test_another_register_is_reached_after_the_bytes_before_it(machines: list[SoftMachine]) -> None:
    m, uart = uart_machine(machines, PUTS.format(after="li t0, 2\n sb t0, 1(s0)     # IER"))
    assert m.vcpu.run() == Halt()
    assert uart.log == [b"hi\n", b"ok", ("write", IER, 2)]


def test_the_uart_decides_again_after_each_access_it_serves(machines: list[SoftMachine]) -> None:
    """An IER write that enables THR-empty interrupts sends the next THR write to the device."""
    m, uart = uart_machine(
        machines,
        """
        li s0, UART
        li t0, 0x41
        sb t0, 0(s0)
        li t0, 2
        sb t0, 1(s0)            # IER: the fake UART then withdraws the shortcut
        li t0, 0x42
        sb t0, 0(s0)
        wfi
        """,
    )
    assert m.mmio is not None
    m.mmio.on_write[IER] = lambda value: setattr(uart, "lsr", 0)
    assert m.vcpu.run() == Halt()
    assert uart.log == [b"A", ("write", IER, 2), ("write", UART, 0x42)]


def test_a_uart_that_refuses_gets_every_access(machines: list[SoftMachine]) -> None:
    m, uart = uart_machine(machines, PUTS.format(after="nop"))
    uart.lsr = 0
    assert m.vcpu.run() == Halt()
    assert [entry for entry in uart.log if isinstance(entry, bytes)] == []
    assert device_accesses(uart.log, "write") == 5
    assert m.vcpu.uart_accesses == 0


def test_the_python_engine_sends_every_access_to_the_device(machines: list[SoftMachine]) -> None:
    m, uart = uart_machine(machines, PUTS.format(after="nop"), engine="python")
    m.run_until_halt()
    assert [entry for entry in uart.log if isinstance(entry, bytes)] == []
    assert device_accesses(uart.log, "read") == 5


def test_a_guest_polling_in_c_still_sees_input_the_uart_did_not_offer(machines: list[SoftMachine]) -> None:
    """Every 1024th LSR read goes to the device, so input that arrives while the guest polls in
    C shows within ~1024 polls, not only at the end of the slice."""
    m, _ = uart_machine(
        machines,
        """
        li s0, UART
    1:  lbu t0, 5(s0)
        andi t0, t0, 1          # DR
        beqz t0, 1b
        wfi
        """,
    )
    assert m.mmio is not None
    m.mmio.values[UART + 5] = THRE_TEMT | 1  # the device has input; the fake UART offered LSR without it
    assert m.vcpu.run() == Halt()
    assert m.vcpu.uart_accesses == 1023
    assert m.mmio.reads == [(UART + 5, AccessWidth.BYTE)]
