"""Carrying out a parsed ``vm`` command: one module for the shell and ``axvisor ctl``.

The transport is injected: ``VmOps`` is what both ``VmManager`` (the shell, in-process) and
``axvisor.client.Client`` (ctl, over the API) provide, with the same names and results; the
console attachment, a confirmation prompt and the output console are injected too. A command
on several VMs goes on after one fails; each failure is one line, and the status is 1 when any
failed (2 for a command that was not understood).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from axvm import VMState

from ..manager import ManagerError, Translation, VmInfo, VmMetrics
from . import render
from .grammar import Command, GrammarError, help_text

DEFAULT_DUMP_BYTES = 256
OK, FAILED, USAGE = 0, 1, 2


class VmOps(Protocol):
    """The calls the ``vm`` commands need: ``VmManager`` and ``axvisor.client.Client`` both have them."""

    def create(
        self, config: str, *, text: bool = ..., name: str | None = ..., cpus: int | None = ..., mem: int | None = ...
    ) -> VmInfo: ...
    def list(self, all: bool = ...) -> list[VmInfo]: ...
    def get(self, vm_id: int) -> VmInfo: ...
    def start(self, vm_id: int) -> VmInfo: ...
    def stop(self, vm_id: int, force: bool = ..., graceful: bool = ...) -> VmInfo: ...
    def pause(self, vm_id: int) -> VmInfo: ...
    def resume(self, vm_id: int) -> VmInfo: ...
    def snapshot(self, vm_id: int, directory: str, stop: bool = ...) -> VmInfo: ...
    def reset(self, vm_id: int) -> VmInfo: ...
    def delete(self, vm_id: int, force: bool = ..., keep_data: bool = ...) -> None: ...
    def metrics(self, vm_id: int) -> VmMetrics: ...
    def read_memory(self, vm_id: int, gpa: int, size: int) -> bytes: ...
    def registers(self, vm_id: int, vcpu: int) -> dict[str, int]: ...
    def translate(self, vm_id: int, vcpu: int, gva: int) -> Translation: ...
    def gdb_serve(self, vm_id: int, address: str) -> str: ...


class ExitShell(Exception):
    """``exit``: the shell ends (ctl ignores it)."""


@dataclass
class Session:
    """What a front end gives the dispatcher: the VMs, the terminal, and how to attach/confirm."""

    ops: Any  # VmOps: typed loosely so that VmManager's wider signatures fit
    console: Console
    attach: Callable[[int, str], object]
    """Attach the terminal to VM ``id``'s console (banner text second) until detached."""
    confirm: Callable[[str], bool]
    """Ask a yes/no question; False when nobody can answer (ctl without a terminal)."""
    cwd: Path = Path()
    errors: Console | None = None
    """Where error lines go (ctl: stderr); None: ``console``."""

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def error(self, text: str) -> None:
        (self.errors or self.console).print(
            f"error: {text}", markup=False, highlight=False, soft_wrap=True, style="red"
        )


def execute(command: Command, session: Session) -> int:
    """Run one command; its status (0, 1 when a VM operation failed, 2 when misused)."""
    handler = _HANDLERS.get(command.name)
    if handler is None:  # the grammar and this table list the same commands
        session.error(f"{command.name}: not implemented")
        return USAGE
    try:
        return handler(command, session)
    except GrammarError as error:
        session.error(str(error))
        return USAGE
    except ManagerError as error:
        session.error(str(error))
        return FAILED


def _resolve(session: Session, token: str) -> int:
    """A VM id, or a VM name (unique) for convenience."""
    try:
        return int(token, 0)
    except ValueError:
        pass
    matches = [info.id for info in session.ops.list(all=True) if info.name == token]
    if len(matches) == 1:
        return int(matches[0])
    if not matches:
        raise GrammarError(f"no VM with id or name {token!r} (see 'vm list -a')")
    raise GrammarError(f"{len(matches)} VMs are named {token!r}: give an id ({', '.join(map(str, matches))})")


def _each(session: Session, ids: Sequence[str], action: Callable[[int], str]) -> int:
    """``action`` on each VM, going on after a failure; it returns the line to print."""
    status = OK
    for token in ids:
        try:
            session.say(action(_resolve(session, token)))
        except (ManagerError, GrammarError) as error:
            session.error(str(error))
            status = FAILED
    return status


def _label(info: VmInfo) -> str:
    return f"VM {info.id} {info.name!r}"


def _cmd_exit(command: Command, session: Session) -> int:
    raise ExitShell


def _cmd_help(command: Command, session: Session) -> int:
    session.say(help_text(command.args[0] if command.args else None))
    return OK


def _cmd_create(command: Command, session: Session) -> int:
    configs: tuple[str, ...] = command.args[0]
    restore = command.option("restore")
    if restore is not None:
        return _create_restored(command, session, restore, configs)
    if not configs:
        raise GrammarError("vm create: give one or more CONFIG files, or --restore DIR")
    name = command.option("name")
    if name is not None and len(configs) > 1:
        raise GrammarError("vm create: -n NAME names one VM; give one CONFIG with it")
    taken = {info.name: info.id for info in session.ops.list(all=True)} if not command.flag("force") else {}
    status = OK
    for config in configs:
        try:
            if name is not None and name in taken:
                raise GrammarError(f"a VM named {name!r} exists (id {taken[name]}); add -f to create another")
            path = Path(config).expanduser()
            info = session.ops.create(
                str(path if path.is_absolute() else session.cwd / path),
                name=name,
                cpus=command.option("cpu"),
                mem=command.option("memory"),
            )
            session.say(
                f"created {_label(info)}: {info.arch}, {info.cpus} vCPU(s), "
                f"{render.size_text(info.memory_bytes)}, {info.backend} ({render.state_name(info.state)})"
            )
        except (ManagerError, GrammarError) as error:
            session.error(f"{config}: {error}")
            status = FAILED
    return status


def _create_restored(command: Command, session: Session, restore: str, configs: tuple[str, ...]) -> int:
    if configs or any(command.option(name) is not None for name in ("name", "cpu", "memory")):
        raise GrammarError("vm create --restore DIR: the VM is the snapshot's; give no CONFIG, -n, -c or -m with it")
    try:
        info = session.ops.create("", restore=str(_absolute(session, restore)), force=command.flag("force"))
    except ManagerError as error:
        session.error(str(error))
        return FAILED
    state = render.state_name(info.state)
    session.say(f"created {_label(info)} from snapshot {restore} ({state}); 'vm start' carries it on")
    return OK


def _absolute(session: Session, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else session.cwd / path


def _cmd_snapshot(command: Command, session: Session) -> int:
    vm_id = _resolve(session, command.args[0])
    directory = _absolute(session, command.args[1])
    info = session.ops.snapshot(vm_id, str(directory), stop=command.flag("stop"))
    session.say(f"saved {_label(info)} to {directory} ({render.state_name(info.state)})")
    return OK


def _cmd_start(command: Command, session: Session) -> int:
    ids: tuple[str, ...] = command.args[0]
    if not ids:
        ready = [str(info.id) for info in session.ops.list(all=True) if info.state is VMState.READY]
        if not ready:
            session.say("no VM is Ready to start (see 'vm list -a')")
            return OK
        ids = tuple(ready)
    if command.flag("console") and len(ids) != 1:
        raise GrammarError("vm start: -c attaches to one VM's console; give one ID")
    status = _each(session, ids, lambda vm_id: f"started {_label(session.ops.start(vm_id))}")
    if status == OK and command.flag("console"):
        return _cmd_console(Command("console", (ids[0],)), session)
    return status


def _cmd_stop(command: Command, session: Session) -> int:
    force, graceful = command.flag("force"), command.flag("graceful")

    def stop(vm_id: int) -> str:
        info = session.ops.stop(vm_id, force=force, graceful=graceful)
        return f"stopped {_label(info)}" + (f": {info.reason}" if info.reason else "")

    return _each(session, command.args[0], stop)


def _cmd_reset(command: Command, session: Session) -> int:
    return _each(session, command.args[0], lambda vm_id: f"reset {_label(session.ops.reset(vm_id))}")


def _cmd_restart(command: Command, session: Session) -> int:
    def restart(vm_id: int) -> str:
        info = session.ops.get(vm_id)
        if info.state not in (VMState.READY, VMState.STOPPED, VMState.FAILED):
            session.ops.stop(vm_id, force=command.flag("force"))
        return f"restarted {_label(session.ops.start(vm_id))}"

    return _each(session, command.args[0], restart)


def _cmd_suspend(command: Command, session: Session) -> int:
    return _each(session, command.args[0], lambda vm_id: f"suspended {_label(session.ops.pause(vm_id))}")


def _cmd_resume(command: Command, session: Session) -> int:
    return _each(session, command.args[0], lambda vm_id: f"resumed {_label(session.ops.resume(vm_id))}")


def _cmd_delete(command: Command, session: Session) -> int:
    vm_id = _resolve(session, command.args[0])
    info = session.ops.get(vm_id)
    force = command.flag("force")
    if not force and not session.confirm(f"delete {_label(info)} ({render.state_name(info.state)})?"):
        session.say("not deleted (add -f to delete without asking)")
        return FAILED
    session.ops.delete(vm_id, force=force, keep_data=command.flag("keep-data"))
    kept = " (console log kept)" if command.flag("keep-data") and info.log_path else ""
    session.say(f"deleted {_label(info)}{kept}")
    return OK


def _cmd_list(command: Command, session: Session) -> int:
    infos = session.ops.list(all=command.flag("all"))
    if command.option("format", "table") == "json":
        session.console.print_json(render.vm_json(infos)) if session.console.is_terminal else session.say(
            render.vm_json(infos)
        )
    elif not infos:
        session.say("no VMs" + ("" if command.flag("all") else " running (vm list -a shows stopped ones)"))
    else:
        session.console.print(render.vm_table(infos))
    return OK


def _cmd_show(command: Command, session: Session) -> int:
    vm_id = _resolve(session, command.args[0])
    info = session.ops.get(vm_id)
    full = command.flag("full")
    session.console.print(render.key_values(render.vm_details(info)))
    if full or command.flag("config"):
        session.say("")
        session.say(_config_text(info))
    if full or command.flag("stats"):
        session.say("")
        session.console.print(render.key_values(render.metrics_rows(session.ops.metrics(vm_id)), title="metrics"))
    return OK


def _config_text(info: VmInfo) -> str:
    if info.config_path is None:
        return "config: created from TOML text"
    try:
        return f"config {info.config_path}:\n{Path(info.config_path).read_text().rstrip()}"
    except (OSError, UnicodeDecodeError) as error:
        return f"config {info.config_path}: cannot read it here: {getattr(error, 'strerror', error)}"


def _cmd_console(command: Command, session: Session) -> int:
    vm_id = _resolve(session, command.args[0])
    info = session.ops.get(vm_id)
    session.attach(vm_id, f"console of {_label(info)} ({render.state_name(info.state)})")
    return OK


def _cmd_mem(command: Command, session: Session) -> int:
    vm_id = _resolve(session, command.args[0])
    gpa, size = command.args[1], command.args[2] or DEFAULT_DUMP_BYTES
    session.say(render.hexdump(session.ops.read_memory(vm_id, gpa, size), gpa))
    return OK


def _cmd_regs(command: Command, session: Session) -> int:
    vm_id = _resolve(session, command.args[0])
    vcpus = [command.args[1]] if command.args[1] is not None else range(session.ops.get(vm_id).cpus)
    for vcpu in vcpus:
        session.say(render.registers_text(vcpu, session.ops.registers(vm_id, vcpu)))
    return OK


def _cmd_translate(command: Command, session: Session) -> int:
    vm_id = _resolve(session, command.args[0])
    session.say(render.translation_text(session.ops.translate(vm_id, command.args[1], command.args[2])))
    return OK


def _cmd_gdb(command: Command, session: Session) -> int:
    vm_id = _resolve(session, command.args[0])
    address = session.ops.gdb_serve(vm_id, command.args[1])
    target = address.removeprefix("tcp:") if address.startswith("tcp:") else address.removeprefix("unix:")
    session.say(f"gdb stub for VM {vm_id} on {address}; in gdb-multiarch: target remote {target}")
    return OK


_HANDLERS: dict[str, Callable[[Command, Session], int]] = {
    "exit": _cmd_exit,
    "help": _cmd_help,
    "create": _cmd_create,
    "start": _cmd_start,
    "stop": _cmd_stop,
    "reset": _cmd_reset,
    "restart": _cmd_restart,
    "suspend": _cmd_suspend,
    "resume": _cmd_resume,
    "snapshot": _cmd_snapshot,
    "delete": _cmd_delete,
    "list": _cmd_list,
    "show": _cmd_show,
    "console": _cmd_console,
    "mem": _cmd_mem,
    "regs": _cmd_regs,
    "translate": _cmd_translate,
    "gdb": _cmd_gdb,
}


def cwd() -> Path:
    return Path(os.getcwd())
