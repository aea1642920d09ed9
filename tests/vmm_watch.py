"""Keeps what every VMM process a test starts prints, for the device-error check in conftest.

A device that raises on a guest access is answered by its bus as if no device were there, so the
guest goes on and the test may pass; only the VMM's log shows the bug: the bus logs the first
failure of each device, and the VMM reports every failing device when the VM ends. The autouse
fixture in conftest.py fails the test if any output handed to ``watch``/``watch_result`` holds
either line.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pexpect

from axvisor.vmm import DEVICE_ERRORS

BUS_FAILURE = "; answering as unhandled"
"""Part of the line axdevice's bus logs when a device raises (with the traceback)."""

OUTPUTS: list[Callable[[], str]] = []
"""The output of each process watched during the current test (cleared by the fixture)."""


class _Tee:
    """A pexpect log file keeping the text read from the child (bytes or str children)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, data: str | bytes) -> None:
        self.parts.append(data.decode(errors="replace") if isinstance(data, bytes) else data)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.parts)


def watch(child: pexpect.spawn) -> pexpect.spawn:
    """Keep all that ``child`` prints (its stdout and stderr share the terminal pexpect reads)."""
    tee = _Tee()
    child.logfile_read = tee
    OUTPUTS.append(tee.text)
    return child


def watch_result(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Keep a finished VMM process's captured stdout and stderr."""
    OUTPUTS.append(lambda: (result.stdout or "") + (result.stderr or ""))
    return result


def device_error_lines() -> list[str]:
    """The lines of the watched outputs that report a device raising on a guest access."""
    lines = [line for output in OUTPUTS for line in output().splitlines()]
    return [line for line in lines if DEVICE_ERRORS in line or BUS_FAILURE in line]
