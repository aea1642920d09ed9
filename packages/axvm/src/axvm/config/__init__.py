"""The VM config: axvmconfig's TOML schema, its validation and its serialisation."""

from .dump import config_to_dict
from .errors import ConfigError, ConfigProblem
from .load import config_from_dict, load_config, parse_config
from .schema import (
    GUEST_PHYS_LIMIT,
    AddressSpacePolicy,
    Arch,
    AxVMCrateConfig,
    BackendKind,
    BiosProtocol,
    BootProtocol,
    EmulatedDeviceConfig,
    ImageLocation,
    PassThroughAddressConfig,
    PassThroughDeviceConfig,
    PassThroughPortConfig,
    VMBaseConfig,
    VMDevicesConfig,
    VMInterruptMode,
    VMKernelConfig,
    VmMemConfig,
    VmMemMappingType,
    VMType,
)

__all__ = [
    "GUEST_PHYS_LIMIT",
    "AddressSpacePolicy",
    "Arch",
    "AxVMCrateConfig",
    "BackendKind",
    "BiosProtocol",
    "BootProtocol",
    "ConfigError",
    "ConfigProblem",
    "EmulatedDeviceConfig",
    "ImageLocation",
    "PassThroughAddressConfig",
    "PassThroughDeviceConfig",
    "PassThroughPortConfig",
    "VMBaseConfig",
    "VMDevicesConfig",
    "VMInterruptMode",
    "VMKernelConfig",
    "VMType",
    "VmMemConfig",
    "VmMemMappingType",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_config",
]
