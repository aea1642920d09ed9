"""axvisor: the thin top-level VMM (build VMs from configs, run them) and its command line."""

from .backends import REGISTRY, BackendEntry, kvm_status, select_backend
from .errors import USAGE_EXIT_STATUS, UserError
from .loaders import image_list, load_guest, missing_images
from .vmm import RunningVm, VmOutcome, VmSupervisor, build_vm, run_vms, start_vms, summarise

__all__ = [
    "REGISTRY",
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
