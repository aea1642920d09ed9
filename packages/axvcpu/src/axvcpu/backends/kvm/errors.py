"""The two ways the KVM backend fails: KVM cannot be used here at all, or one host call failed."""

from __future__ import annotations

import errno as _errno
import os


class KvmUnavailable(RuntimeError):
    """This host cannot run the KVM backend; the message is one line naming what is missing and the fix."""


class KvmError(OSError):
    """An ioctl on a KVM file descriptor failed; the message names the ioctl and the errno.

    ``call`` is the ioctl's name (``KVM_CREATE_VCPU``); ``errno`` and ``strerror`` are as for
    any OSError, so callers can test ``error.errno == errno.EEXIST``.
    """

    def __init__(self, call: str, err: int, detail: str = "") -> None:
        super().__init__(err, os.strerror(err))
        self.call = call
        self.detail = detail

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno or 0, f"errno {self.errno}")
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.call} failed: {name} ({self.strerror}){tail}"

    def __reduce__(self) -> tuple[type[KvmError], tuple[str, int, str]]:
        # OSError pickles as (errno, strerror); keep our own arguments across processes.
        return (type(self), (self.call, self.errno or 0, self.detail))


def check(result: int, call: str) -> int:
    """Return ``result`` of a C wrapper (which returns -errno on failure) or raise KvmError."""
    if result < 0:
        raise KvmError(call, -result)
    return result
