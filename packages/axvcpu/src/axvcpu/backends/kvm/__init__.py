"""The KVM execution backend for x86_64 guests (Linux /dev/kvm, bindings built from <linux/kvm.h>).

Importing this package is cheap and works without KVM; the cffi bindings are compiled (once per
host, into ``$AXVISOR_CACHE``) the first time ``Kvm()`` or ``probe()`` needs them.
"""

from .backend import KvmX86Backend
from .cpuid import CpuidEntry
from .errors import KvmError, KvmUnavailable
from .kick import install_kick_signal
from .regs import FpuState
from .system import Kvm, probe
from .vcpu import KvmVCpu
from .vm import KvmIrqLine, KvmVm

__all__ = [
    "CpuidEntry",
    "FpuState",
    "Kvm",
    "KvmError",
    "KvmIrqLine",
    "KvmUnavailable",
    "KvmVCpu",
    "KvmVm",
    "KvmX86Backend",
    "install_kick_signal",
    "probe",
]
