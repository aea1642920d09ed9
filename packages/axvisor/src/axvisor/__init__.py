"""axvisor: the thin top-level VMM (build VMs from configs, run them) and its command line.

Each name is imported on first use (PEP 562), so ``python -m axvisor``, which imports this package
before ``__main__``, has imported nothing yet when ``__main__`` starts (see ``startup_gc``).
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backends import REGISTRY, BackendEntry, kvm_status, select_backend
    from .errors import USAGE_EXIT_STATUS, UserError
    from .loaders import image_list, load_guest, missing_images
    from .scripting import VM
    from .vmm import RunningVm, VmOutcome, VmSupervisor, build_vm, run_vms, start_vms, summarise

_MODULE_OF = {
    "REGISTRY": "backends",
    "BackendEntry": "backends",
    "kvm_status": "backends",
    "select_backend": "backends",
    "USAGE_EXIT_STATUS": "errors",
    "UserError": "errors",
    "image_list": "loaders",
    "load_guest": "loaders",
    "missing_images": "loaders",
    "VM": "scripting",
    "RunningVm": "vmm",
    "VmOutcome": "vmm",
    "VmSupervisor": "vmm",
    "build_vm": "vmm",
    "run_vms": "vmm",
    "start_vms": "vmm",
    "summarise": "vmm",
}

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
    """The re-exported name from its module, imported now."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'axvisor' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
