"""``axvisor run --restore DIR [--clone N] [--force] [CONFIG]``: run VMs from a snapshot.

The VM saved by ``vm snapshot`` carries on in this process as if nothing happened; with
``--clone N``, N VMs run from the one snapshot side by side, each with its own VM id (so its
own MAC addresses), name and a private copy of the disk (or, when the saved VM had its disk
read-only, that disk shared), their RAM mapped copy-on-write from the same snapshot file. A
CONFIG given with ``--restore`` must be the snapshot's own config (one line names the first
key that differs). The run is ``axvisor run``'s: one console
multiplexer, one shutdown path; a guest reset cold-boots the VM from its config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from axvm import AxVM, AxVMCrateConfig, ConfigError, VmBackend, VmBuildError, load_config

from .backends import select_backend
from .console import ConsoleMux, Terminal
from .errors import UserError
from .session import report, run_session
from .shutdown import StopRequest
from .vmm import VmmHost, build_vm


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore (or clone) and run until the last VM ends; exit status as ``axvisor run``."""
    # Snapshots only here: cli.py imports this module for every run (its flags), and the snapshot
    # modules bring importlib.metadata, hashlib and the device serializer with them.
    from axvm.snapshot import SnapshotError

    from .snapshots import clone_configs, open_snapshot

    given = None
    if len(args.configs) > 1:
        raise UserError("axvisor run --restore: give at most one CONFIG (the snapshot's own, to check it)")
    if args.configs:
        try:
            given = load_config(args.configs[0])
        except ConfigError as error:
            raise UserError(str(error)) from None
    try:
        snapshot = open_snapshot(args.restore, force=args.force, config=given)
        if args.clone is not None:
            configs = clone_configs(snapshot, args.clone, Path(args.restore) / "clone-disks")
        else:
            configs = [snapshot.config]
    except SnapshotError as error:
        raise UserError(str(error)) from None
    terminal = Terminal.of_stdin()
    with StopRequest() as stop, stop.catching_signals(), ConsoleMux([c.base.name for c in configs]) as mux:
        label = {id(config): name for config, name in zip(configs, mux.names, strict=True)}

        def backend_for(config: AxVMCrateConfig) -> VmBackend:
            entry = select_backend(config)
            try:
                return entry.factory(config)
            except (OSError, RuntimeError) as error:
                what = f"VM {config.base.name!r}: starting the {entry.kind.value} backend"
                raise VmBuildError(f"{what}: {error}") from None

        def rebuild(config: AxVMCrateConfig) -> AxVM:
            """After a guest reset: a cold boot from the config."""
            return build_vm(config, backend_for(config), mux.sink_for(label[id(config)]))

        vms: list[AxVM] = []
        try:
            for config in configs:
                sink = mux.sink_for(label[id(config)])
                try:
                    vms.append(snapshot.build(backend_for(config), sink, VmmHost(), config=config))
                except SnapshotError as error:
                    raise UserError(str(error)) from None
        except BaseException:
            for vm in vms:
                vm.stop()
            raise
        outcomes = run_session(vms, mux, rebuild, stop, terminal)
        return report(outcomes, stop, mux.mid_line)
