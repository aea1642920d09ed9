"""``axvisor``: run, check and generate VM configs.

Bad input (a config, a path, a flag, a missing /dev/kvm) gets one line per problem on stderr and
exit status 2; a traceback means a bug in axvisor, not in what the user typed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import platform
import sys
import threading
from collections.abc import Callable, Sequence

from axvm import AxVM, AxVMCrateConfig, ConfigError, VmBuildError, load_config

from . import generate as generate_cmd
from .backends import REGISTRY, kvm_kind, kvm_status, select_backend
from .console import ConsoleMux, pump_stdin, raw_terminal, vm_console_target
from .errors import USAGE_EXIT_STATUS, UserError
from .plan import plan_vm
from .vmm import VmOutcome, VmSupervisor, build_vm, start_vms, summarise


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE_EXIT_STATUS, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _version() -> str:
    try:
        return importlib.metadata.version("axvisor")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="axvisor", description="A hypervisor in Python, following AxVisor's layering.")
    parser.add_argument("--version", action="version", version=f"axvisor {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the VMM does")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="run the VMs described by CONFIG files")
    run.add_argument("configs", nargs="+", metavar="CONFIG")
    check = commands.add_parser("check", help="validate CONFIG files and print a summary")
    check.add_argument("configs", nargs="+", metavar="CONFIG")
    gen = commands.add_parser("generate", help="write a VM config from flags")
    generate_cmd.add_arguments(gen)
    commands.add_parser("info", help="describe this host: architecture, KVM, backends")
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
        try:  # what run does before it starts a vCPU, with images not yet fetched left out
            plan = plan_vm(config, missing_images_ok=True)
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
              f"backend {plan.backend.kind.value}")
    return USAGE_EXIT_STATUS if failed else 0


def cmd_info() -> int:
    print(f"axvisor {_version()} on {platform.machine()} (Python {platform.python_version()})")
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
    for config in configs:
        plan_vm(config)  # every VM can run (images, devices, host bounds) before any starts
    with ConsoleMux([config.base.name for config in configs]) as mux:
        label = {id(config): name for config, name in zip(configs, mux.names, strict=True)}

        def build(config: AxVMCrateConfig) -> AxVM:
            """Also rebuilds a VM after a guest reset (the supervisor hands back the same config)."""
            entry = select_backend(config)
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
        outcomes = run_with_console(vms, mux, build)
    for outcome in outcomes:
        if outcome.exit_code:
            print(f"axvisor: VM {outcome.name!r}: {outcome.reason}", file=sys.stderr)
    return summarise(outcomes)


def run_with_console(vms: list[AxVM], mux: ConsoleMux, build: Callable[[AxVMCrateConfig], AxVM]) -> list[VmOutcome]:
    """Run the VMs; the terminal follows one VM at a time (Ctrl-A n), the others go to log files."""
    supervisors = start_vms(vms, rebuild=build)
    for name, supervisor in zip(mux.names, supervisors, strict=True):

        def current_vm(s: VmSupervisor = supervisor) -> AxVM:  # bound now: the loop moves on
            return s.vm

        mux.set_target(name, vm_console_target(current_vm))
        if len(supervisors) > 1:  # say on the terminal (and in its log) when a VM ends
            threading.Thread(target=lambda n=name, s=supervisor: mux.mark_ended(n, s.join().reason),
                             daemon=True, name=f"{name}-end").start()

    def quit_all() -> None:
        for supervisor in supervisors:
            supervisor.vm.shutdown(0)

    try:
        fd: int | None = sys.stdin.fileno()
    except (OSError, ValueError):  # no usable stdin (closed, or replaced by a test harness)
        fd = None
    if fd is None:
        mux.announce()
        return [supervisor.join() for supervisor in supervisors]
    console = mux.console_input(quit_all)
    stop = threading.Event()
    with raw_terminal(fd):
        mux.announce()
        threading.Thread(target=pump_stdin, args=(console, stop, fd), daemon=True, name="console").start()
        try:
            return [supervisor.join() for supervisor in supervisors]
        finally:
            stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="axvisor: %(levelname)s: %(message)s")
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
