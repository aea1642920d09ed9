"""``axvisor``: run, check and generate VM configs.

Bad input (a config, a path, a flag, a missing /dev/kvm) gets one line per problem on stderr and
exit status 2; a traceback means a bug in axvisor, not in what the user typed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from axvm import AxVM, AxVMCrateConfig, ConfigError, VmBuildError, load_config

from . import generate as generate_cmd
from . import startup_gc
from .backends import REGISTRY, kvm_kind, kvm_status
from .console import ConsoleMux, Terminal
from .errors import USAGE_EXIT_STATUS, UserError
from .operate_cli import OPERATE_COMMANDS, add_operate_parsers, run_operate
from .plan import plan_vm
from .session import report, run_session
from .shutdown import StopRequest
from .vmm import build_vm


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE_EXIT_STATUS, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _version() -> str:
    import importlib.metadata  # 30-60 ms of imports (email, zipfile, csv): only --version and info need it

    try:
        return importlib.metadata.version("axvisor")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class _VersionAction(argparse.Action):
    """argparse's ``version`` action with the version looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        sys.stdout.write(f"axvisor {_version()}\n")  # stdout, as argparse's own version action
        parser.exit()


RUN_DESCRIPTION = """\
Run the VMs described by CONFIG files until the last one ends. The console follows one VM at a
time: Ctrl-A x quits, Ctrl-A n moves to the next VM, Ctrl-A h shows help.

exit status:
  0        every VM powered off with status 0, or Ctrl-A x
  1-255    the first VM that did not end with 0: its power-off status (a guest status
           above 255, e.g. sifive_test FAIL with code 256, exits 255), or 1 when it failed
           (the reason is printed, one line per VM)
  2        a bad config, path or flag (nothing was run)
  128+N    stopped by signal N: 130 SIGINT, 143 SIGTERM, 129 SIGHUP, 131 SIGQUIT
           (every VM is stopped in order and the terminal restored first)"""


COMMANDS = ("run", "check", "generate", "info", *OPERATE_COMMANDS)


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (axvisor's own options
    take no value); None when there is none or it is not one of ours."""
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in COMMANDS else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line. With ``only``, every subcommand is still listed (--help, a misspelt one)
    but only that one gets its arguments: each add_argument makes an argparse formatter, and the
    fifty of the others are start-up time ``axvisor run`` does not need."""

    def wanted(command: str) -> bool:
        return only is None or only == command

    parser = _Parser(prog="axvisor", description="A hypervisor in Python, following AxVisor's layering.")
    parser.add_argument("--version", action=_VersionAction, help="show the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the VMM does")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="run the VMs described by CONFIG files",
                              description=RUN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    if wanted("run"):
        run.add_argument("configs", nargs="*", metavar="CONFIG")
        run.add_argument("--restore", metavar="DIR", help="run the VM saved in DIR by 'vm snapshot' from where it was")
        run.add_argument("--clone", metavar="N", type=int, help="with --restore: run N clones of the saved VM")
        run.add_argument("--force", action="store_true", help="with --restore: accept disks changed since the snapshot")
        run.add_argument("--gdb", metavar="tcp:PORT|unix:PATH",
                         help="serve gdb's remote protocol for the VM (one CONFIG)")
        run.add_argument("--paused", action="store_true",
                         help="with --gdb: no guest instruction runs until gdb continues")
    check = commands.add_parser("check", help="validate CONFIG files and print a summary")
    if wanted("check"):
        check.add_argument("configs", nargs="+", metavar="CONFIG")
    gen = commands.add_parser("generate", help="write a VM config from flags")
    if wanted("generate"):
        generate_cmd.add_arguments(gen)
    commands.add_parser("info", help="describe this host: architecture, KVM, backends")
    add_operate_parsers(commands, only)
    return parser


def cmd_check(paths: Sequence[str]) -> int:
    failed = False
    for path in paths:
        try:
            config = load_config(path)
        except ConfigError as error:
            print(error, file=sys.stderr)
            failed = True
            continue
        try:  # what run does before it starts a vCPU; images not made yet, no backend here: warnings
            plan = plan_vm(config, missing_images_ok=True, missing_backend_ok=True)
        except UserError as error:
            print(error, file=sys.stderr)
            failed = True
            continue
        for warning in plan.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        base, kernel = config.base, config.kernel
        print(f"{path}: ok: VM {base.id} {base.name!r}, {base.arch.value}, {base.cpu_num} vCPU(s), "
              f"{plan.ram_bytes // (1 << 20)} MiB RAM in {len(kernel.memory_regions)} region(s), "
              f"{len(config.devices.emu_devices)} emulated device(s), entry {kernel.entry_point:#x}, "
              f"backend {plan.backend.kind.value if plan.backend else 'none usable here'}; "
              f"{base.arch.value} {config.arch_from}")
    return USAGE_EXIT_STATUS if failed else 0


def cmd_info() -> int:
    print(f"axvisor {_version()} on {os.uname().machine} (Python {sys.version.split()[0]})")
    print(f"kvm: {kvm_status()}")
    kind = kvm_kind()
    if kind is not None:
        print(f"kvm kind: {kind}")
    if not REGISTRY:
        print("backends: none implemented yet")
    for entry in REGISTRY:
        problem = entry.probe()
        arches = ", ".join(sorted(arch.value for arch in entry.arches))
        print(f"backend {entry.kind.value} ({arches}): {'usable' if problem is None else problem}")
    return 0


def cmd_run(paths: Sequence[str]) -> int:
    configs = []
    for path in paths:
        try:
            configs.append(load_config(path))
        except ConfigError as error:
            raise UserError(str(error)) from None
    for config in configs:
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    # every VM can run (images, devices, host bounds) before any starts; its backend is the plan's
    backends = {id(config): plan_vm(config).backend for config in configs}
    terminal = Terminal.of_stdin()  # saved before anything can change it, restored by run_session
    with StopRequest() as stop, stop.catching_signals(), ConsoleMux([config.base.name for config in configs]) as mux:
        label = {id(config): name for config, name in zip(configs, mux.names, strict=True)}

        def build(config: AxVMCrateConfig) -> AxVM:
            """Also rebuilds a VM after a guest reset (the supervisor hands back the same config)."""
            entry = backends[id(config)]
            assert entry is not None  # plan_vm without missing_backend_ok found one or raised
            try:
                backend = entry.factory(config)
            except (OSError, RuntimeError) as error:  # e.g. KVM_CREATE_VM refused by the host
                what = f"VM {config.base.name!r}: starting the {entry.kind.value} backend"
                raise VmBuildError(f"{what}: {error}") from None
            return build_vm(config, backend, mux.sink_for(label[id(config)]))

        vms: list[AxVM] = []
        try:
            for config in configs:
                vms.append(build(config))
        except BaseException:
            for vm in vms:
                vm.stop()
            raise
        startup_gc.resume()  # the VMs are built: what start-up made stays, the guests' objects come and go
        outcomes = run_session(vms, mux, build, stop, terminal)  # the one shutdown path, however it ends
        return report(outcomes, stop, mux.mid_line)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(_command_in(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="axvisor: %(levelname)s: %(message)s")
    if args.command != "run" or args.restore is not None or args.gdb is not None or args.paused:
        startup_gc.resume()  # only a plain run keeps collection off until its VMs are built
    try:
        if args.command == "check":
            return cmd_check(args.configs)
        if args.command == "generate":
            text = generate_cmd.generate(args)
            if args.output is None:
                sys.stdout.write(text)
            return 0
        if args.command == "info":
            return cmd_info()
        if args.command in OPERATE_COMMANDS:
            return run_operate(args)
        if args.restore is not None:
            from .restore_cli import cmd_restore  # only when asked for: run's start-up stays lean

            return cmd_restore(args)
        if not args.configs:
            build_parser().error("run: the following arguments are required: CONFIG (or --restore DIR)")
        if args.gdb is not None or args.paused:
            from .gdb.run import run_with_gdb  # only when asked for: run's start-up stays lean

            return run_with_gdb(args.configs, args.gdb, args.paused)
        return cmd_run(args.configs)
    except (UserError, ConfigError) as error:
        print(error, file=sys.stderr)
        return USAGE_EXIT_STATUS
    except VmBuildError as error:  # the host refused something (memory, a KVM call): name it, no traceback
        print(f"axvisor: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
