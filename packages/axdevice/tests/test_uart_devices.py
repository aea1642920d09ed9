from axaddrspace import AccessWidth, AddrRange, PortRange
from axdevice import (
    EmuDeviceType,
    MmioBus,
    PortBus,
    RecordingIrqLine,
    Uart16550,
    Uart16550Mmio,
    Uart16550Port,
)

B, D = AccessWidth.BYTE, AccessWidth.DWORD


def test_port_adapter_routes_registers() -> None:
    out: list[bytes] = []
    uart = Uart16550(RecordingIrqLine(), out.append)
    device = Uart16550Port(uart)
    assert device.emu_type is EmuDeviceType.Console
    assert device.address_range == PortRange(0x3F8, 0x3FF)
    bus = PortBus()
    bus.add(device)
    bus.write(0x3F8, B, ord("A"))
    bus.write(0x3FF, B, 0x42)
    assert out == [b"A"]
    assert bus.read(0x3FF, B) == 0x42
    assert bus.read(0x3FD, B) == 0x60
    assert bus.read(0x3F8 + 8, B) == 0xFF  # next port is not the UART's
    assert bus.unhandled_reads == 1


def test_port_adapter_other_base() -> None:
    uart = Uart16550(RecordingIrqLine())
    device = Uart16550Port(uart, base_port=0x2F8)
    bus = PortBus()
    bus.add(device)
    bus.add(Uart16550Port(Uart16550(RecordingIrqLine())))
    bus.write(0x2FB, B, 0x1B)
    assert uart.read(3) == 0x1B
    assert bus.read(0x3FB, B) == 0x03


def test_mmio_adapter_reg_shift_zero_riscv_virt() -> None:
    out: list[bytes] = []
    uart = Uart16550(RecordingIrqLine(), out.append)
    device = Uart16550Mmio(uart, 0x1000_0000, reg_shift=0, length=0x100)
    assert device.address_range == AddrRange(0x1000_0000, 0x1000_0100)
    assert device.emu_type is EmuDeviceType.Console
    bus = MmioBus()
    bus.add(device)
    bus.write(0x1000_0000, B, ord("z"))
    bus.write(0x1000_0007, B, 0x99)
    assert out == [b"z"]
    assert bus.read(0x1000_0007, B) == 0x99
    assert bus.read(0x1000_0005, B) == 0x60
    assert bus.read(0x1000_0080, B) == 0  # inside the window, past the registers
    assert bus.unhandled_reads == 0


def test_mmio_adapter_reg_shift_two() -> None:
    out: list[bytes] = []
    uart = Uart16550(RecordingIrqLine(), out.append)
    device = Uart16550Mmio(uart, 0x9000_0000, reg_shift=2)
    assert device.address_range.size == 32
    bus = MmioBus()
    bus.add(device)
    bus.write(0x9000_0000 + 7 * 4, D, 0xAB)  # SCR
    assert uart.read(7) == 0xAB
    assert bus.read(0x9000_0000 + 7 * 4, D) == 0xAB
    assert bus.read(0x9000_0000 + 5 * 4, D) == 0x60  # LSR
    assert bus.read(0x9000_0000 + 5 * 4 + 1, B) == 0  # upper byte of a register
    bus.write(0x9000_0000 + 1, B, ord("q"))  # upper byte: dropped, not transmitted
    bus.write(0x9000_0000, D, ord("p"))
    assert out == [b"p"]
    assert bus.read(0x9000_0000 + 32, D) == 0xFFFF_FFFF
