"""Choosing an execution backend for a VM config.

A backend registers a factory here together with the guest architectures it runs and a probe
that says whether this host can use it (``None``) or why not. ``auto`` takes the first usable
one in order of preference (hardware first).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from axvm import Arch, AxVMCrateConfig, BackendKind, VmBackend

from .errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VcpuLimit:
    """The most vCPUs a backend runs in one VM, where that bound comes from and how to raise it."""

    count: int
    source: str
    raise_by: str


@dataclass(frozen=True)
class BackendEntry:
    kind: BackendKind
    arches: frozenset[Arch]
    probe: Callable[[], str | None]
    factory: Callable[[AxVMCrateConfig], VmBackend]
    max_vcpus: Callable[[], VcpuLimit | None] = lambda: None
    """Asked only once ``probe`` said the backend is usable; None when it states no bound."""


REGISTRY: list[BackendEntry] = []
"""Backends in order of preference; each backend module appends itself when imported."""


def kvm_status() -> str:
    """A one-line account of /dev/kvm on this host, for ``axvisor info`` and error messages."""
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm is missing (load the kvm module, or enable virtualization for this machine)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not readable and writable by this user (add the user to group 'kvm')"
    return "/dev/kvm is present and accessible"


def select_backend(config: AxVMCrateConfig) -> BackendEntry:
    """The backend that will run ``config``, or a UserError saying why none can."""
    arch, wanted = config.base.arch, config.base.backend
    candidates = [entry for entry in REGISTRY if wanted in (BackendKind.AUTO, entry.kind)]
    reasons = []
    for entry in candidates:
        if arch not in entry.arches:
            reasons.append(f"{entry.kind.value} does not run {arch.value} guests")
            continue
        problem = entry.probe()
        if problem is None:
            return entry
        reasons.append(f"{entry.kind.value}: {problem}")
    if not candidates:
        known = ", ".join(entry.kind.value for entry in REGISTRY) or "none yet"
        reasons.append(f"no {wanted.value} execution backend is implemented (available: {known})")
    raise UserError(f"{config.origin}: base.backend: cannot run a {arch.value} guest on this "
                    f"{os.uname().machine} host: {'; '.join(reasons)}; nothing was run")


def _kvm_probe() -> str | None:
    from axvcpu.backends.kvm import probe

    return probe()


def _kvm_max_vcpus() -> VcpuLimit | None:
    from axvcpu.backends.kvm import Kvm

    with Kvm() as kvm:
        count = kvm.check_extension(kvm.lib.KVM_CAP_MAX_VCPUS)
    if count <= 0:  # a kernel too old to say: KVM_CREATE_VCPU will tell
        return None
    return VcpuLimit(count, "KVM_CAP_MAX_VCPUS of this host's kernel",
                     "the bound is the host kernel's KVM_MAX_VCPUS, raised only by another kernel")


SOFT_MAX_VCPUS = 32
"""The soft backend's stated bound: each hart is a unicorn engine with its own translation cache
(about 100 MiB resident once warm) and harts take turns on one host CPU, so beyond a few dozen a
guest's timers and watchdogs starve. AXVISOR_MAX_VCPUS raises it (to the config's own 256)."""
MAX_VCPUS_ENV = "AXVISOR_MAX_VCPUS"


def _soft_max_vcpus() -> VcpuLimit:
    value = os.environ.get(MAX_VCPUS_ENV)
    if value is None:
        return VcpuLimit(SOFT_MAX_VCPUS, "the soft backend's stated limit", f"set {MAX_VCPUS_ENV}=N to allow more")
    if not value.strip().isdigit() or int(value) < 1:
        raise UserError(f"{MAX_VCPUS_ENV}={value!r}: expected a positive number of vCPUs (e.g. {MAX_VCPUS_ENV}=64)")
    return VcpuLimit(int(value), f"{MAX_VCPUS_ENV}={int(value)}", f"set {MAX_VCPUS_ENV} higher")


def _kvm_factory(config: AxVMCrateConfig) -> VmBackend:
    from axvcpu.backends.kvm import KvmX86Backend

    backend = KvmX86Backend()
    log.info("VM %s: KVM is %s", config.base.name, backend.kind)
    return backend


def kvm_kind() -> str | None:
    """Hardware (vmx/svm) or PVM (software nested), when KVM is usable here; else None."""
    if Arch.host() is not Arch.X86_64 or _kvm_probe() is not None:
        return None
    from axvcpu.backends.kvm import Kvm

    with Kvm() as kvm:
        return kvm.kind


if Arch.host() is Arch.X86_64:
    REGISTRY.append(BackendEntry(BackendKind.KVM, frozenset({Arch.X86_64}), _kvm_probe, _kvm_factory, _kvm_max_vcpus))



def _soft_probe() -> str | None:
    try:
        import unicorn  # noqa: F401
    except ImportError as error:
        return f"the unicorn engine is not installed ({error}); run ./axvisor.sh setup"
    return None


def _soft_factory(config: AxVMCrateConfig) -> VmBackend:
    if config.base.arch is Arch.AARCH64:
        from axvcpu.backends.soft.aarch64_backend import SoftAarch64Backend

        return SoftAarch64Backend(config.base.cpu_num)
    from axvcpu.backends.soft import SoftRiscvBackend

    return SoftRiscvBackend(config.base.cpu_num)


REGISTRY.append(BackendEntry(BackendKind.SOFT, frozenset({Arch.RISCV64, Arch.AARCH64}), _soft_probe, _soft_factory,
                             _soft_max_vcpus))
