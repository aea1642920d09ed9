"""``axvisor generate``: write a VM config from flags, as axvmconfig's generate does."""

from __future__ import annotations

import argparse
from pathlib import Path

from axvm import (
    Arch,
    AxVMCrateConfig,
    BackendKind,
    ConfigError,
    config_from_dict,
    config_to_dict,
)

from .errors import UserError

DEFAULT_RAM = {Arch.X86_64: (0x0, 0x800_0000), Arch.RISCV64: (0x8000_0000, 0x800_0000),
               Arch.AARCH64: (0x4000_0000, 0x800_0000), Arch.LOONGARCH64: (0x0, 0x800_0000)}


def parse_int(text: str) -> int:
    """Integers as axvmconfig accepts them: decimal, 0x hex, 0b binary, underscores allowed."""
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (decimal, 0x.. or 0b..), got {text!r}") from None


def parse_region(text: str) -> list[int]:
    """GPA:SIZE[:FLAGS[:MAP_TYPE]] for --memory."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise argparse.ArgumentTypeError(f"expected GPA:SIZE[:FLAGS[:MAP_TYPE]], got {text!r}")
    values = [parse_int(part) for part in parts]
    return values + [0x7, 0][len(values) - 2:]


def parse_device(text: str) -> list:
    """NAME,BASE,LENGTH,IRQ,EMU_TYPE[,CFG...] for --emu-device."""
    parts = text.split(",")
    if len(parts) < 5 or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected NAME,BASE,LENGTH,IRQ,EMU_TYPE[,CFG...], got {text!r}")
    return [parts[0], *(parse_int(part) for part in parts[1:5]), [parse_int(part) for part in parts[5:]]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--arch", required=True, choices=[arch.value for arch in Arch])
    parser.add_argument("-i", "--id", type=parse_int, default=0)
    parser.add_argument("-n", "--name", default="GuestVM")
    parser.add_argument("-t", "--vm-type", type=parse_int, default=1, help="0 host VM, 1 RTOS, 2 Linux")
    parser.add_argument("-c", "--cpu-num", type=parse_int, default=1)
    parser.add_argument("-e", "--entry-point", type=parse_int, help="default: the kernel load address")
    parser.add_argument("-k", "--kernel-path", required=True)
    parser.add_argument("-l", "--kernel-load-addr", type=parse_int, required=True)
    parser.add_argument("--image-location", default="fs", choices=["fs", "memory"])
    parser.add_argument("--cmdline")
    parser.add_argument("--backend", default="auto", choices=[kind.value for kind in BackendKind])
    parser.add_argument("-m", "--memory", type=parse_region, action="append", metavar="GPA:SIZE[:FLAGS[:MAP]]",
                        help="a memory region (repeatable); default 128 MiB at the architecture's RAM base")
    for image in ("bios", "dtb", "ramdisk"):
        parser.add_argument(f"--{image}-path")
        parser.add_argument(f"--{image}-load-addr", type=parse_int)
    parser.add_argument("--disk-path", help="the disk image of the first virtio-blk device")
    parser.add_argument("--emu-device", type=parse_device, action="append", metavar="NAME,BASE,LEN,IRQ,TYPE[,CFG]",
                        help="an emulated device (repeatable), as in [devices] emu_devices")
    parser.add_argument("-O", "--output", type=Path, help="file or folder to write (default: stdout)")


def generate(args: argparse.Namespace) -> str:
    """Build the config from ``args``, validate it like a loaded one, and return its TOML."""
    arch = Arch(args.arch)
    regions = args.memory or [[*DEFAULT_RAM[arch], 0x7, 0]]
    output: Path | None = args.output
    if output is not None and output.is_dir():
        output = output / f"{args.name}-{arch.value}.toml"
    folder = (output.parent if output is not None else Path.cwd()).resolve()
    document = {
        "base": {"id": args.id, "name": args.name, "vm_type": args.vm_type, "cpu_num": args.cpu_num,
                 "arch": arch.value, "backend": args.backend},
        "kernel": {"entry_point": args.kernel_load_addr if args.entry_point is None else args.entry_point,
                   "kernel_path": args.kernel_path, "kernel_load_addr": args.kernel_load_addr,
                   "image_location": args.image_location, "memory_regions": regions},
        "devices": {"emu_devices": args.emu_device or [], "passthrough_devices": []},
    }
    kernel = document["kernel"]
    if args.cmdline is not None:
        kernel["cmdline"] = args.cmdline
    for key in ("bios_path", "bios_load_addr", "dtb_path", "dtb_load_addr", "ramdisk_path", "ramdisk_load_addr",
                "disk_path"):
        if getattr(args, key) is not None:
            kernel[key] = getattr(args, key)
    try:
        config: AxVMCrateConfig = config_from_dict(document, folder / "generated.toml")
    except ConfigError as error:
        raise UserError(str(error).replace(str(folder / "generated.toml") + ": ", "generate: ")) from None
    import tomli_w  # only `generate` writes TOML: `run` does not import it

    text = tomli_w.dumps(config_to_dict(config, relative_to=folder), multiline_strings=False)
    if output is not None:
        try:
            output.write_text(text)
        except OSError as error:
            raise UserError(f"{output}: cannot write the config: {error.strerror}") from None
    return text
