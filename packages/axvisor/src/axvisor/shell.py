"""``axvisor shell [CONFIG...]``: AxVisor's ``vm`` shell over a ``VmManager`` in this process.

Line editing, history (``$AXVISOR_HISTORY_FILE``, default ``~/.local/state/axvisor/shell_history``)
and completion of commands, flags and VM ids come from prompt_toolkit; tables from rich. The
grammar and the dispatcher are the ones ``axvisor ctl`` uses, with the manager as transport, so
both accept and print the same. Every error is one line and the shell reads the next command;
with stdin not a terminal it reads commands line by line (scripts, pipes) without the editor.

It ends with ``exit``, end of input (Ctrl-D), or SIGTERM/SIGHUP/SIGQUIT; in each case every VM
is stopped in order of id through the manager's ``close()`` (its one shutdown path per VM). The
exit status is 0, or 128+N for signal N as ``axvisor run``. Ctrl-C at the prompt clears the line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from rich.console import Console

from .console import DEFAULT_LOG_DIR, LOG_DIR_ENV
from .manager import ManagerError, VmManager
from .shutdown import SIGNAL_STATUS_BASE
from .vmctl import Command, ExitShell, GrammarError, Session, execute, parse_line
from .vmctl.attach import attach, local_source
from .vmctl.grammar import BY_NAME, TOP_LEVEL, words_for_completion

PROMPT = "axvisor> "
HISTORY_ENV = "AXVISOR_HISTORY_FILE"
END_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
"""Signals that end the shell (every VM stopped in order); SIGINT only clears the line."""

_ID_COMMANDS = frozenset(name for name, spec in BY_NAME.items() if spec.args and spec.args[0].metavar == "ID")


class _Ended(BaseException):
    """Raised on the main thread by a stop signal's handler to leave the prompt at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class VmCompleter(Completer):
    """Completes ``vm`` subcommands, their flags, and VM ids where an ID goes."""

    def __init__(self, manager: VmManager) -> None:
        self.manager = manager

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        words = text.split()
        partial = "" if text.endswith((" ", "\t")) or not words else words[-1]
        done = words if not partial else words[:-1]
        for word in self._candidates(done):
            if word.startswith(partial):
                yield Completion(word, start_position=-len(partial))

    def _candidates(self, done: Sequence[str]) -> Iterable[str]:
        if not done:
            return TOP_LEVEL
        if done[0] == "help" and len(done) == 1:
            return list(BY_NAME)
        if done[0] != "vm":
            return ()
        if len(done) == 1:
            return words_for_completion(None)
        sub = done[1]
        words = words_for_completion(sub)
        if sub in _ID_COMMANDS:
            with contextlib.suppress(ManagerError):
                words = [*map(str, self.manager.ids()), *words]
        return words


def _history() -> History:
    path = Path(os.environ.get(HISTORY_ENV) or Path.home() / ".local" / "state" / "axvisor" / "shell_history")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


def _confirm_tty(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


def _lines(interactive: bool, manager: VmManager) -> Iterator[str]:
    """The command lines typed (an editor at a terminal, else stdin line by line)."""
    if not interactive:
        while True:
            _SIGNALS.at_prompt = True
            try:
                line = sys.stdin.readline()
            finally:
                _SIGNALS.at_prompt = False
            if not line:
                return
            yield line
    prompt: PromptSession[str] = PromptSession(
        history=_history(), completer=VmCompleter(manager), complete_while_typing=False
    )
    while True:
        try:
            _SIGNALS.at_prompt = True
            try:
                line = prompt.prompt(PROMPT)
            finally:
                _SIGNALS.at_prompt = False
            yield line
        except KeyboardInterrupt:  # Ctrl-C: a fresh line
            continue
        except EOFError:  # Ctrl-D
            return


def run_shell(configs: Sequence[str], log_dir: str | None = None) -> int:
    """The REPL; returns the exit status (see the module docstring)."""
    directory = Path(log_dir or os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR)
    interactive = sys.stdin.isatty()
    console = Console(highlight=False, soft_wrap=False)
    manager = VmManager(log_dir=directory)
    session = Session(
        manager, console, lambda vm_id, banner: attach(local_source(manager, vm_id), banner), _confirm_tty, Path.cwd()
    )
    previous = _catch_end_signals()
    status = 0
    try:
        if configs:
            execute(Command("create", (tuple(configs),)), session)
        session.say(
            f"axvisor shell: {len(manager.ids())} VM(s); console logs in {directory}; "
            "'help' lists the commands, 'exit' stops every VM and leaves"
        )
        for line in _lines(interactive, manager):
            try:
                command = parse_line(line)
            except GrammarError as error:
                session.error(str(error))
                continue
            if command is None:
                continue
            try:
                execute(command, session)
            except ExitShell:
                break
            except Exception as error:  # a bug: one line, and the shell goes on
                session.error(f"internal error: {type(error).__name__}: {error}")
            if _SIGNALS.pending is not None:  # arrived during the command: end now
                raise _Ended(_SIGNALS.pending)
    except _Ended as ended:
        status = SIGNAL_STATUS_BASE + ended.signum
    finally:
        _close(manager, session)
        _restore(previous)
    if status == 0 and _SIGNALS.pending is not None:
        status = SIGNAL_STATUS_BASE + _SIGNALS.pending
    return status


def _close(manager: VmManager, session: Session) -> None:
    running = [info for info in manager.list()]
    if running:
        session.say(f"stopping {len(running)} VM(s)")
    manager.close()


class _SignalState:
    """A stop signal interrupts the prompt at once (raising there is safe: nothing is half
    done); during a command it is only recorded, and the shell ends once the command returns."""

    at_prompt = False
    pending: int | None = None


_SIGNALS = _SignalState()


def _on_end_signal(signum: int, frame: FrameType | None) -> None:
    if _SIGNALS.pending is None:
        _SIGNALS.pending = signum
    if _SIGNALS.at_prompt:
        _SIGNALS.at_prompt = False
        raise _Ended(signum)


def _catch_end_signals() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {signum: signal.getsignal(signum) for signum in END_SIGNALS}
    for signum in END_SIGNALS:
        signal.signal(signum, _on_end_signal)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
