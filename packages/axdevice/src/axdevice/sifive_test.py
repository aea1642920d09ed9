"""The SiFive test finisher (QEMU's ``sifive_test``): how riscv virt guests power off and reboot.

OpenSBI's SRST extension and Linux's syscon-poweroff/syscon-reboot write one value to offset 0.
As QEMU, the low 16 bits select the action and the high 16 bits carry a code:

- 0x5555 (PASS): shutdown(0)
- 0x7777 (RESET): reset()
- (code << 16) | 0x3333 (FAIL): shutdown(code), the guest's failure exit code; a FAIL with code 0
  (what OpenSBI writes for a system failure) is shutdown(1): a failure never reads as success,
  where QEMU would exit 0
- anything else: ignored

Only 16- and 32-bit writes act (QEMU's valid access sizes; OpenSBI uses a 16-bit write, which
leaves FAIL with code 0). Reads return 0.
"""

from __future__ import annotations

from axaddrspace import AccessWidth, AddrRange

from .control import VmControl
from .device import BaseDeviceOps
from .types import EmuDeviceType

SIFIVE_TEST_BASE = 0x100000
SIFIVE_TEST_SIZE = 0x1000

FINISHER_FAIL = 0x3333
FINISHER_PASS = 0x5555
FINISHER_RESET = 0x7777
FAIL_WITHOUT_CODE = 1
"""The exit code of a FAIL that carries code 0."""


class SifiveTest(BaseDeviceOps):
    """The finisher register at ``base``; the rest of the window reads 0 and ignores writes."""

    def __init__(
        self, control: VmControl, base: int = SIFIVE_TEST_BASE, length: int = SIFIVE_TEST_SIZE
    ) -> None:
        self.control = control
        self.base = base
        self._range = AddrRange.from_start_size(base, length)

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.PowerControl

    @property
    def address_range(self) -> AddrRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        return 0

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        if addr != self.base or width not in (AccessWidth.WORD, AccessWidth.DWORD):
            return
        status, code = value & 0xFFFF, (value >> 16) & 0xFFFF
        if status == FINISHER_PASS:
            self.control.shutdown(0)
        elif status == FINISHER_RESET:
            self.control.reset()
        elif status == FINISHER_FAIL:
            self.control.shutdown(code or FAIL_WITHOUT_CODE)
