"""How a device stops or resets the VM it belongs to.

Devices such as isa-debug-exit, the i8042 reset line and the SiFive test finisher are handed a
VmControl; axvm implements it over the VM lifecycle, so the device never reaches upward.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class VmControl(Protocol):
    """The VM-level effects a device may request."""

    def shutdown(self, exit_code: int) -> None:
        """Power the VM off; ``exit_code`` is what the VMM reports for it."""

    def reset(self) -> None:
        """Reboot the VM."""


class RecordingVmControl:
    """A VmControl that records requests, for tests."""

    def __init__(self) -> None:
        self.shutdowns: list[int] = []
        self.resets = 0

    def shutdown(self, exit_code: int) -> None:
        self.shutdowns.append(exit_code)

    def reset(self) -> None:
        self.resets += 1
