"""/dev/kvm itself: the API version, capabilities, the CPUID KVM supports, and what kind of KVM it is.

``probe()`` is the cheap question the VMM asks before choosing a backend: ``None`` when this
host can run KVM guests, otherwise one line saying why not and how to fix it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from ._ffi import load
from .cpuid import CpuidEntry
from .errors import KvmError, KvmUnavailable, check

DEVICE = "/dev/kvm"
EXPECTED_API_VERSION = 12
"""The only KVM API version there has ever been since Linux 2.6.22; anything else is not KVM."""

_CPUID_START_ENTRIES = 128
_CPUID_MAX_ENTRIES = 4096
"""Bound on the buffer grown on E2BIG: real CPUs report well under 200 leaves."""


def _open_device() -> int:
    """Open /dev/kvm, or KvmUnavailable naming the device and what to do about it."""
    try:
        return os.open(DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KvmUnavailable(f"{DEVICE} does not exist: load the kvm module (modprobe kvm_intel or "
                             f"kvm_amd) or enable virtualization for this machine") from None
    except PermissionError:
        raise KvmUnavailable(f"{DEVICE}: permission denied: add the user to group kvm "
                             f"(usermod -aG kvm $USER, then log in again)") from None
    except OSError as error:
        raise KvmUnavailable(f"{DEVICE}: cannot open: {error.strerror}") from None


class Kvm:
    """An open /dev/kvm; ``KvmUnavailable`` if it is missing, not ours to open, or not KVM API 12."""

    def __init__(self) -> None:
        self.fd = _open_device()  # first: a missing /dev/kvm is the more basic problem than a compiler
        self._cpuid: tuple[CpuidEntry, ...] | None = None
        try:
            module: ModuleType = load()
            self.ffi: Any = module.ffi
            self.lib: Any = module.lib
            version = self.api_version
        except BaseException:
            self.close()
            raise
        if version != EXPECTED_API_VERSION:
            self.close()
            raise KvmUnavailable(f"{DEVICE} speaks KVM API version {version}, this backend needs "
                                 f"{EXPECTED_API_VERSION}")

    @property
    def api_version(self) -> int:
        return check(self.lib.axv_ioctl_int(self.fd, self.lib.KVM_GET_API_VERSION, 0), "KVM_GET_API_VERSION")

    def check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION: 0 if ``cap`` (a KVM_CAP_* number) is absent, else its value (often 1)."""
        return check(self.lib.axv_ioctl_int(self.fd, self.lib.KVM_CHECK_EXTENSION, cap), "KVM_CHECK_EXTENSION")

    @property
    def vcpu_mmap_size(self) -> int:
        """Bytes to mmap from a vCPU fd: the kvm_run page plus the PIO data and coalesced-MMIO pages."""
        return check(self.lib.axv_ioctl_int(self.fd, self.lib.KVM_GET_VCPU_MMAP_SIZE, 0), "KVM_GET_VCPU_MMAP_SIZE")

    def supported_cpuid(self) -> tuple[CpuidEntry, ...]:
        """KVM_GET_SUPPORTED_CPUID: every leaf this host's KVM can present to a guest (cached)."""
        if self._cpuid is None:
            self._cpuid = self._read_supported_cpuid()
        return self._cpuid

    def _read_supported_cpuid(self) -> tuple[CpuidEntry, ...]:
        ffi, lib = self.ffi, self.lib
        entries = _CPUID_START_ENTRIES
        while True:
            # A kvm_cpuid2 header followed by ``entries`` kvm_cpuid_entry2 (its flexible array).
            buf = ffi.new("char[]", ffi.sizeof("struct kvm_cpuid2") + entries * ffi.sizeof("struct kvm_cpuid_entry2"))
            cpuid = ffi.cast("struct kvm_cpuid2 *", buf)
            cpuid.nent = entries
            result = lib.axv_ioctl_ptr(self.fd, lib.KVM_GET_SUPPORTED_CPUID, cpuid)
            if result == -errno.E2BIG and entries < _CPUID_MAX_ENTRIES:
                entries *= 2
                continue
            check(result, "KVM_GET_SUPPORTED_CPUID")
            return tuple(CpuidEntry.from_c(cpuid.entries[i]) for i in range(cpuid.nent))

    @property
    def kind(self) -> str:
        """Which KVM this is: "hardware (vmx)", "hardware (svm)", "pvm (software nested virtualization)", "unknown"."""
        return kvm_kind()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Kvm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kvm_kind(sys_module: Path = Path("/sys/module"), cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Tell PVM (the kvm_pvm module) from VMX or SVM hardware KVM, by loaded module or CPU flag."""
    if (sys_module / "kvm_pvm").exists():
        return "pvm (software nested virtualization)"
    flags: set[str] = set()
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.partition(":")[2].split())
                break
    except OSError:
        pass
    if (sys_module / "kvm_intel").exists() or "vmx" in flags:
        return "hardware (vmx)"
    if (sys_module / "kvm_amd").exists() or "svm" in flags:
        return "hardware (svm)"
    return "unknown"


def probe() -> str | None:
    """None if this host can run KVM guests, else one line saying why not."""
    try:
        with Kvm():
            return None
    except (KvmUnavailable, KvmError) as error:
        return str(error)
