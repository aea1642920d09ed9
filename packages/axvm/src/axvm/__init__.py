"""axvm: the VM config schema, VM composition, lifecycle and exit dispatch."""

from .backend import GuestClock, ScriptedBackend, VmBackend
from .capabilities import (
    BackendCapabilities,
    EcallHook,
    HartLines,
    InlineMmio,
    IrqLines,
    MachineClock,
    MissingCapability,
)
from .config import (
    Arch,
    AxVMCrateConfig,
    BackendKind,
    ConfigError,
    ConfigProblem,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_config,
)
from .device_manager import BusKind, DeviceManager, DeviceOwner, PlacementError
from .devices import BUILDERS, BuiltDevice, DeviceContext, build_device
from .dispatch import DeviceBuses, Handled, handle_exit, sign_extend
from .lifecycle import VM_TRANSITIONS, IllegalVMTransition, VMState, check_vm_transition
from .vm import AxVM, VmBuildError

__all__ = [
    "BUILDERS",
    "VM_TRANSITIONS",
    "Arch",
    "AxVM",
    "AxVMCrateConfig",
    "BackendCapabilities",
    "BackendKind",
    "BuiltDevice",
    "BusKind",
    "ConfigError",
    "ConfigProblem",
    "DeviceBuses",
    "DeviceContext",
    "DeviceManager",
    "DeviceOwner",
    "EcallHook",
    "GuestClock",
    "Handled",
    "HartLines",
    "IllegalVMTransition",
    "InlineMmio",
    "IrqLines",
    "MachineClock",
    "MissingCapability",
    "PlacementError",
    "ScriptedBackend",
    "VMState",
    "VmBackend",
    "VmBuildError",
    "build_device",
    "check_vm_transition",
    "config_from_dict",
    "config_to_dict",
    "handle_exit",
    "load_config",
    "parse_config",
    "sign_extend",
]
