"""axvisor: the thin top-level VMM (build VMs from configs, run them) and its command line."""

from typing import TYPE_CHECKING

from .backends import REGISTRY, BackendEntry, kvm_status, select_backend
from .errors import USAGE_EXIT_STATUS, UserError
from .loaders import image_list, load_guest, missing_images
from .vmm import RunningVm, VmOutcome, VmSupervisor, build_vm, run_vms, start_vms, summarise

if TYPE_CHECKING:
    from .scripting import VM

__all__ = [
    "REGISTRY",
    "VM",
    "USAGE_EXIT_STATUS",
    "BackendEntry",
    "RunningVm",
    "UserError",
    "VmOutcome",
    "VmSupervisor",
    "build_vm",
    "image_list",
    "kvm_status",
    "load_guest",
    "missing_images",
    "run_vms",
    "start_vms",
    "select_backend",
    "summarise",
]


def __getattr__(name: str) -> object:
    """``axvisor.VM`` (scripting) is imported on first use: ``axvisor run`` never needs it."""
    if name == "VM":
        from .scripting import VM

        return VM
    raise AttributeError(f"module 'axvisor' has no attribute {name!r}")
