"""Entering an x86_64 kernel image: raw binary, ELF (plain, PVH or vmlinux) or bzImage.

Each returns the BootPlan the x86 machine turns into vCPU state; Linux and PVH kernels also get
their zero page or start_info and command line in the machine's boot area.
"""

from __future__ import annotations

from axaddrspace import GuestMemory, GuestPhysAddr
from axvm import AxVMCrateConfig
from axvm.machine import BootPlan
from axvm.machines.x86 import E820Entry, boot_params, e820_map, layout, minimal_setup_header
from axvm.machines.x86.pvh import start_info

from ..errors import UserError
from .bzimage import BzImageError, is_bzimage, parse_bzimage
from .elf import ElfFormatError, ElfImage, is_elf, parse_elf
from .images import write_image


def load_x86_kernel(config: AxVMCrateConfig, memory: GuestMemory, kernel: bytes,
                    host_decompress: bool = True) -> BootPlan:
    key = "kernel.kernel_path"
    try:
        if is_bzimage(kernel):
            return _load_bzimage(config, memory, kernel, host_decompress)
        if is_elf(kernel):
            return _load_elf(config, memory, parse_elf(kernel))
    except (BzImageError, ElfFormatError) as error:
        raise UserError(f"{config.origin}: {key}: {config.kernel.kernel_path.name}: {error}") from None
    write_image(config, memory, key, config.kernel.kernel_load_addr, kernel)
    return BootPlan(config.kernel.entry_point, "raw", cmdline=_cmdline(config))


def _cmdline(config: AxVMCrateConfig) -> bytes:
    return (config.kernel.cmdline or "").encode()


def _boot_base(config: AxVMCrateConfig) -> int:
    return min(region.gpa for region in config.kernel.memory_regions)


def _e820(config: AxVMCrateConfig) -> list[E820Entry]:
    return e820_map([(r.gpa, r.size) for r in config.kernel.memory_regions])


def _write_cmdline(config: AxVMCrateConfig, memory: GuestMemory) -> int:
    cmdline = _cmdline(config)
    if len(cmdline) >= layout.CMDLINE_MAX:
        raise UserError(f"{config.origin}: kernel.cmdline: {len(cmdline)} bytes; expected fewer than "
                        f"{layout.CMDLINE_MAX}")
    gpa = _boot_base(config) + layout.CMDLINE
    memory.write(GuestPhysAddr(gpa), cmdline + b"\0")
    return gpa


def _initrd(config: AxVMCrateConfig) -> tuple[int, int] | None:
    kernel = config.kernel
    if kernel.ramdisk_path is None or kernel.ramdisk_load_addr is None:
        return None
    return kernel.ramdisk_load_addr, kernel.ramdisk_path.stat().st_size


def _linux_plan(config: AxVMCrateConfig, memory: GuestMemory, header: bytes, entry: int) -> BootPlan:
    cmdline_gpa = _write_cmdline(config, memory)
    params = boot_params(header, cmdline_gpa=cmdline_gpa, initrd=_initrd(config), e820=_e820(config))
    params_gpa = _boot_base(config) + layout.BOOT_INFO
    memory.write(GuestPhysAddr(params_gpa), params)
    return BootPlan(entry, "linux", params=params_gpa, cmdline=_cmdline(config))


def _load_segments(config: AxVMCrateConfig, memory: GuestMemory, image: ElfImage) -> None:
    for addr, data, memsz in image.segments:
        write_image(config, memory, "kernel.kernel_path", addr, data.ljust(memsz, b"\0"))


def _load_elf(config: AxVMCrateConfig, memory: GuestMemory, image: ElfImage) -> BootPlan:
    _load_segments(config, memory, image)
    if image.is_linux:
        return _linux_plan(config, memory, minimal_setup_header(), image.entry)
    if image.pvh_entry is not None:
        cmdline_gpa = _write_cmdline(config, memory)
        info_gpa = _boot_base(config) + layout.BOOT_INFO
        memory.write(GuestPhysAddr(info_gpa), start_info(info_gpa, cmdline_gpa, _e820(config)))
        return BootPlan(image.pvh_entry, "pvh", params=info_gpa, cmdline=_cmdline(config))
    return BootPlan(image.entry, "raw", cmdline=_cmdline(config))


def _load_bzimage(config: AxVMCrateConfig, memory: GuestMemory, data: bytes, host_decompress: bool) -> BootPlan:
    image = parse_bzimage(data)
    if not image.supports_64bit_entry:
        raise BzImageError("the kernel does not support the 64-bit boot protocol (XLF_KERNEL_64 clear)")
    if host_decompress:
        vmlinux = parse_elf(image.decompress_payload())
        _load_segments(config, memory, vmlinux)
        return _linux_plan(config, memory, image.setup_header, vmlinux.entry)
    load_addr = config.kernel.kernel_load_addr
    write_image(config, memory, "kernel.kernel_path", load_addr, image.protected_mode_kernel)
    return _linux_plan(config, memory, image.setup_header, load_addr + 0x200)
