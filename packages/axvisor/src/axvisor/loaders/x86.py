"""Entering an x86_64 kernel image: raw binary, ELF (plain, PVH or vmlinux) or bzImage.

Each adds its pieces to an ImagePlan and returns the BootPlan the x86 machine turns into vCPU
state. The zero page or start_info and the command line of Linux and PVH kernels are the
machine's to write, at boot, into its boot area (which the plan reserves, with the MP table, so
no image lands on it); the plan says where (``params``) and carries the kernel's setup header.
"""

from __future__ import annotations

from axaddrspace import GuestMemory
from axvm import AxVMCrateConfig
from axvm.machine import BootPlan
from axvm.machines.x86 import layout, minimal_setup_header
from axvm.machines.x86.machine import params_address

from ..errors import UserError
from .bzimage import BzImageError, is_bzimage, parse_bzimage
from .elf import ElfFormatError, ElfImage, is_elf, parse_elf
from .plan import ImagePlan

KERNEL = "the kernel"
KEY = "kernel.kernel_path"


def load_x86_kernel(config: AxVMCrateConfig, memory: GuestMemory, kernel: bytes,
                    host_decompress: bool = True) -> BootPlan:
    """Plan the kernel alone, check the plan and copy it into ``memory``."""
    plan = ImagePlan(config)
    plan.boot = plan_x86_kernel(config, plan, kernel, host_decompress)
    return plan.apply(memory)


def plan_x86_kernel(config: AxVMCrateConfig, plan: ImagePlan, kernel: bytes, host_decompress: bool = True) -> BootPlan:
    """Add the kernel's pieces to ``plan``; how to enter it."""
    try:
        if is_bzimage(kernel):
            return _load_bzimage(config, plan, kernel, host_decompress)
        if is_elf(kernel):
            return _load_elf(config, plan, parse_elf(kernel))
    except (BzImageError, ElfFormatError) as error:
        raise UserError(f"{config.origin}: {KEY}: {config.kernel.kernel_path.name}: {error}") from None
    _check_raw_vcpus(config)
    plan.add(KERNEL, config.kernel.kernel_load_addr, kernel, KEY, "kernel.kernel_load_addr")
    return BootPlan(config.kernel.entry_point, "raw", cmdline=_cmdline(config))


def _check_raw_vcpus(config: AxVMCrateConfig) -> None:
    """A raw image gets one boot stack per vCPU in the boot area, which holds MAX_BOOT_VCPUS."""
    cpus = config.base.cpu_num
    if cpus > layout.MAX_BOOT_VCPUS:
        raise UserError(f"{config.origin}: base.cpu_num: {cpus} vCPUs, but an x86 image started raw (not a "
                        f"Linux or PVH kernel) gets at most {layout.MAX_BOOT_VCPUS}, one boot stack each in the "
                        f"boot area; expected cpu_num <= {layout.MAX_BOOT_VCPUS}")


def _cmdline(config: AxVMCrateConfig) -> bytes:
    return config.kernel.cmdline_bytes


def _check_cmdline(config: AxVMCrateConfig) -> None:
    """Linux and PVH kernels get the whole command line or refuse to load (raw images get it cut)."""
    cmdline = _cmdline(config)
    if len(cmdline) >= layout.CMDLINE_MAX:
        raise UserError(f"{config.origin}: kernel.cmdline: {len(cmdline)} bytes; expected fewer than "
                        f"{layout.CMDLINE_MAX}")


def _linux_plan(config: AxVMCrateConfig, header: bytes, entry: int) -> BootPlan:
    _check_cmdline(config)
    return BootPlan(entry, "linux", params=params_address(config), cmdline=_cmdline(config), setup_header=header)


def _load_segments(plan: ImagePlan, image: ElfImage) -> None:
    ram = sum(region.size for region in plan.config.kernel.memory_regions)
    for addr, data, memsz in image.segments:  # placed by the ELF's own addresses
        if memsz > ram:  # p_memsz comes from the file (up to 2^64): refuse it before padding allocates it
            raise ElfFormatError(f"an ELF segment of {memsz:#x} bytes at {addr:#x} is larger than all guest RAM "
                                 f"({ram:#x} bytes)")
        plan.add(f"{KERNEL} (ELF segment)", addr, data.ljust(memsz, b"\0"), KEY)


def _load_elf(config: AxVMCrateConfig, plan: ImagePlan, image: ElfImage) -> BootPlan:
    _load_segments(plan, image)
    if image.is_linux:
        return _linux_plan(config, minimal_setup_header(), image.entry)
    if image.pvh_entry is not None:
        _check_cmdline(config)
        return BootPlan(image.pvh_entry, "pvh", params=params_address(config), cmdline=_cmdline(config))
    _check_raw_vcpus(config)
    return BootPlan(image.entry, "raw", cmdline=_cmdline(config))


def _load_bzimage(config: AxVMCrateConfig, plan: ImagePlan, data: bytes, host_decompress: bool) -> BootPlan:
    image = parse_bzimage(data)
    if not image.supports_64bit_entry:
        raise BzImageError("the kernel does not support the 64-bit boot protocol (XLF_KERNEL_64 clear)")
    if host_decompress:
        vmlinux = parse_elf(image.decompress_payload())
        _load_segments(plan, vmlinux)
        return _linux_plan(config, image.setup_header, vmlinux.entry)
    load_addr = config.kernel.kernel_load_addr
    plan.add(KERNEL, load_addr, image.protected_mode_kernel, KEY, "kernel.kernel_load_addr")
    return _linux_plan(config, image.setup_header, load_addr + 0x200)
