"""Just enough of the PC's i8042 keyboard controller to reboot through its reset line.

Linux (``reboot=k``, the x86 default fallback) and most firmware reset a PC by writing command
0xFE ("pulse output port bit 0", wired to the CPU's reset) to port 0x64, after polling the
status register at 0x64 until the input buffer is empty (bit 1 clear). So the status register
always reads 0x04: input and output buffers empty (bits 1 and 0 clear, so Linux's kb_wait() and
i8042_flush() never spin) and the system flag set (bit 2, "self-test passed", as after POST).
The data port at 0x60 reads 0; every other command and data byte is accepted and ignored.

No keyboard or mouse exists: Linux's i8042 probe times out reading the controller config byte
and gives up ("Can't read CTR"), which costs a short delay at boot; ``i8042.nokbd i8042.noaux``
or ``i8042.nopnp`` on the kernel command line avoid it. Ports 0x61..0x63 lie in the range but
are not the controller's (0x61 is port B, served by KVM's in-kernel PIT on x86): they read all
ones and drop writes, as an unclaimed port would.
"""

from __future__ import annotations

from axaddrspace import AccessWidth, InclusiveRange, PortRange

from .control import VmControl
from .device import BaseDeviceOps
from .types import EmuDeviceType

DATA_PORT = 0x60
COMMAND_PORT = 0x64  # writes: commands; reads: status
STATUS_SYSTEM_FLAG = 0x04
CMD_PULSE_RESET = 0xFE


class I8042(BaseDeviceOps):
    """The reset line of the keyboard controller on ports 0x60..0x64."""

    def __init__(self, control: VmControl) -> None:
        self.control = control
        self._range = PortRange(DATA_PORT, COMMAND_PORT)

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.ResetControl

    @property
    def address_range(self) -> InclusiveRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        if addr == COMMAND_PORT:
            return STATUS_SYSTEM_FLAG
        if addr == DATA_PORT:
            return 0
        return width.mask

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        if addr == COMMAND_PORT and value & 0xFF == CMD_PULSE_RESET:
            self.control.reset()
