"""The interactive console: the host terminal's keystrokes go to one VM's console at a time.

Ctrl-A is the escape key, as in QEMU: Ctrl-A x quits every VM, Ctrl-A n moves the console to
the next VM, Ctrl-A Ctrl-A sends a literal Ctrl-A, Ctrl-A h prints help. ``ConsoleInput`` is the
only place that reads escape sequences. Input the console cannot take yet (a 16550's RX FIFO
holds 16 bytes) waits here and is retried, so pasted text is not lost; what is still waiting
when the console moves to another VM is dropped, since it was typed for the old one.

``ConsoleMux`` decides where each VM's output goes: every byte is appended to the VM's log
file (``<log_dir>/<name>.log``), and the focused VM's bytes also go to the terminal. Output
comes from vCPU threads; a VM that is not focused never waits for the terminal, and no VM
fails because the terminal went away (a hang-up): its bytes still reach the log.

``Terminal`` saves the user's terminal settings when ``axvisor run`` starts; the terminal is
put in raw mode only when stdin is a terminal, and restored in the VMM's one shutdown path
however it ends (see ``session``).
"""

from __future__ import annotations

import os
import re
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from .errors import UserError

if TYPE_CHECKING:
    from axvm import AxVM

ESCAPE = 0x01  # Ctrl-A
RETRY_SECONDS = 0.005
LOG_DIR_ENV = "AXVISOR_LOG_DIR"
DEFAULT_LOG_DIR = "axvisor-logs"


class ConsolePort(Protocol):
    """A guest console that takes host input: a 16550 UART or a virtio console."""

    def push_input(self, data: bytes) -> int: ...


ConsoleTarget = Callable[[], tuple[ConsolePort, threading.Lock] | None]
"""The console keystrokes go to and its VM's device lock, asked afresh each time (a reset VM is
a new one); None when that VM has no console to type into (its input is dropped)."""


def _help(switching: bool) -> bytes:
    next_vm = "   Ctrl-A n: next VM" if switching else ""
    return f"\r\n[axvisor] Ctrl-A x: quit{next_vm}   Ctrl-A Ctrl-A: send Ctrl-A   Ctrl-A h: this help\r\n".encode()


HELP = _help(False)


class ConsoleInput:
    """Feeds bytes to the target console under its VM's device lock; understands the escapes."""

    def __init__(self, target: ConsoleTarget, on_quit: Callable[[], None], echo: Callable[[bytes], object],
                 on_next: Callable[[], object] | None = None) -> None:
        self.target = target
        self.on_quit = on_quit
        self.echo = echo
        self.on_next = on_next
        self.pending = bytearray()
        self.dropped = 0
        """Keystrokes lost: typed for a VM without a console, or still waiting at Ctrl-A n."""
        self._escaped = False

    def feed(self, data: bytes) -> None:
        """Interpret keystrokes; bytes meant for the guest are queued and pushed."""
        for byte in data:
            if self._escaped:
                self._escaped = False
                self._escape(byte)
            elif byte == ESCAPE:
                self._escaped = True
            else:
                self.pending.append(byte)
        self.flush()

    def _escape(self, byte: int) -> None:
        if byte in (ord("x"), ord("X")):
            self.on_quit()
        elif byte == ESCAPE:
            self.pending.append(ESCAPE)
        elif byte in (ord("h"), ord("H"), ord("?")):
            self.echo(_help(self.on_next is not None))
        elif byte in (ord("n"), ord("N")) and self.on_next is not None:
            self.flush()  # what was typed before Ctrl-A n belongs to the VM it was typed for
            self.dropped += len(self.pending)
            self.pending.clear()
            self.on_next()

    def flush(self) -> bool:
        """Push what the console accepts now; True when nothing is left waiting."""
        if self.pending:
            target = self.target()
            if target is None:
                self.dropped += len(self.pending)
                self.pending.clear()
                return True
            port, lock = target
            with lock:
                accepted = port.push_input(bytes(self.pending))
            del self.pending[:accepted]
        return not self.pending


def vm_console_target(current_vm: Callable[[], AxVM]) -> ConsoleTarget:
    """A target typing into a VM's first UART, else its first virtio console; ``current_vm``
    returns the VM now running (a supervisor's ``vm`` changes when the guest resets)."""

    def target() -> tuple[ConsolePort, threading.Lock] | None:
        vm = current_vm()
        ports: list[ConsolePort] = [*vm.consoles, *vm.virtio_consoles]
        return (ports[0], vm.device_lock) if ports else None

    return target


def _terminal_write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@dataclass
class _VmConsole:
    name: str
    log_path: Path
    log: IO[bytes] | None
    log_lock: threading.Lock = field(default_factory=threading.Lock)
    target: ConsoleTarget | None = None
    ended: bool = False
    log_errors: int = 0


def _file_names(names: Sequence[str]) -> list[str]:
    """A safe, distinct file-name stem for each VM (and the name the mux knows it by)."""
    taken: set[str] = set()
    stems = []
    for index, name in enumerate(names):
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", name) or f"vm{index}"
        stem = f"vm{stem}" if stem.startswith(".") else stem
        unique, n = stem, 2
        while unique in taken:
            unique, n = f"{stem}-{n}", n + 1
        taken.add(unique)
        stems.append(unique)
    return stems


class ConsoleMux:
    """Where each VM's console output goes, and which VM the terminal's keystrokes go to.

    ``names`` are the VMs in order; ``self.names`` holds the name the mux knows each by (the
    same, made file-safe and distinct: two VMs called "linux" become "linux" and "linux-2").
    The first VM has the focus. ``log_dir`` defaults to $AXVISOR_LOG_DIR, else ./axvisor-logs;
    it is created, and the log files opened for appending, here (UserError when that fails).
    ``write`` puts bytes on the terminal (default: stdout, flushed).
    """

    def __init__(self, names: Sequence[str], log_dir: str | os.PathLike[str] | None = None,
                 write: Callable[[bytes], object] | None = None) -> None:
        if not names:
            raise ValueError("a console mux needs at least one VM")
        directory = Path(log_dir if log_dir is not None else os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR)
        self.log_dir = directory
        self._write = write or _terminal_write
        self.terminal_errors = 0
        """Writes the terminal refused (it hung up, or stdout was closed); the logs still have them."""
        self.mid_line = False
        """The last byte on the terminal was not a newline (the VMM's last words start a line)."""
        self._out_lock = threading.Lock()
        self.names = _file_names(names)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"console log directory {directory}: cannot create it: {error.strerror}; "
                            f"set {LOG_DIR_ENV} to a writable directory") from None
        self._vms: dict[str, _VmConsole] = {}
        for name in self.names:
            path = directory / f"{name}.log"
            try:
                log = open(path, "ab")  # closed by close()
            except OSError as error:
                self.close()
                raise UserError(f"console log {path}: cannot open it for appending: {error.strerror}; "
                                f"set {LOG_DIR_ENV} to a writable directory") from None
            self._vms[name] = _VmConsole(name, path, log)
        self._focus = self.names[0]

    # -- output ----------------------------------------------------------------------------

    def _to_terminal(self, data: bytes) -> None:
        """Put bytes on the terminal (under ``_out_lock``); a terminal that is gone loses them."""
        try:
            self._write(data)
        except (OSError, ValueError):
            self.terminal_errors += 1
        if data:
            self.mid_line = not data.endswith(b"\n")

    def sink_for(self, name: str) -> Callable[[bytes], None]:
        """The console output sink to build VM ``name`` with (also after a reset)."""
        vm = self._vm(name)

        def sink(data: bytes) -> None:
            self._log(vm, data)
            if self._focus == name:  # cheap test first: unfocused VMs never take the terminal lock
                with self._out_lock:
                    if self._focus == name:
                        self._to_terminal(data)

        return sink

    def _log(self, vm: _VmConsole, data: bytes) -> None:
        with vm.log_lock:
            if vm.log is None:
                return
            try:
                vm.log.write(data)
                vm.log.flush()
            except (OSError, ValueError):  # a full disk loses log bytes, never the VM or the terminal
                vm.log_errors += 1

    def echo(self, data: bytes) -> None:
        """Write the VMM's own bytes to the terminal (help, status lines)."""
        with self._out_lock:
            self._to_terminal(data)

    @property
    def log_paths(self) -> dict[str, Path]:
        return {name: vm.log_path for name, vm in self._vms.items()}

    # -- focus -----------------------------------------------------------------------------

    @property
    def focused(self) -> str:
        return self._focus

    def status_line(self) -> bytes:
        logs = ", ".join(str(vm.log_path) for vm in self._vms.values())
        return f"\r\n[axvisor] console: {self._focus} (Ctrl-A n: next; logs: {logs})\r\n".encode()

    def announce(self) -> None:
        """Print the status line when there is more than one VM (call once, at start)."""
        if len(self.names) > 1:
            with self._out_lock:
                self._to_terminal(self.status_line())

    def focus_next(self) -> str:
        """Move the console to the next VM still running (any next VM when none is) and print
        the status line; returns the focused name."""
        with self._out_lock:
            start = self.names.index(self._focus)
            order = [self.names[(start + step) % len(self.names)] for step in range(1, len(self.names) + 1)]
            self._focus = next((name for name in order if not self._vms[name].ended), order[0])
            self._to_terminal(self.status_line())
            return self._focus

    def mark_ended(self, name: str, reason: str) -> None:
        """VM ``name`` ended for good: say so on the terminal and in its log; focus skips it."""
        vm = self._vm(name)
        vm.ended = True
        line = f"\r\n[axvisor] {name}: {reason}\r\n".encode()
        self._log(vm, line)
        self.echo(line)

    # -- input -----------------------------------------------------------------------------

    def set_target(self, name: str, target: ConsoleTarget) -> None:
        """Where keystrokes go while VM ``name`` has the focus (see ``vm_console_target``)."""
        self._vm(name).target = target

    def target(self) -> tuple[ConsolePort, threading.Lock] | None:
        """The focused VM's console: the ConsoleTarget for ConsoleInput."""
        target = self._vms[self._focus].target
        return target() if target is not None else None

    def console_input(self, on_quit: Callable[[], None]) -> ConsoleInput:
        """A ConsoleInput typing into the focused VM, Ctrl-A n moving the focus."""
        return ConsoleInput(self.target, on_quit, self.echo, on_next=self.focus_next)

    def close(self) -> None:
        """Close the log files; sinks still in use afterwards only reach the terminal."""
        for vm in self._vms.values():
            with vm.log_lock:
                if vm.log is not None:
                    vm.log.close()
                    vm.log = None

    def __enter__(self) -> ConsoleMux:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _vm(self, name: str) -> _VmConsole:
        try:
            return self._vms[name]
        except KeyError:
            raise KeyError(f"no VM {name!r} on this console; expected one of {self.names}") from None


class Terminal:
    """The user's terminal: its settings saved at start, raw while VMs run, restored once.

    ``restore`` never raises and never waits for output to drain (TCSANOW), so the shutdown
    path cannot hang on a terminal that stopped reading; after a hang-up it returns False.
    """

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None
        if fd is not None and os.isatty(fd):
            try:
                self._saved = termios.tcgetattr(fd)
            except termios.error:
                self._saved = None

    @classmethod
    def of_stdin(cls) -> Terminal:
        try:
            return cls(sys.stdin.fileno())
        except (OSError, ValueError, AttributeError):  # no usable stdin (closed, or a test harness's)
            return cls(None)

    @property
    def interactive(self) -> bool:
        """stdin is a terminal whose settings were saved (so keystrokes go to the guest)."""
        return self._saved is not None

    def raw(self) -> None:
        """Keystrokes straight to the guest: no echo, no line editing, no signals from keys."""
        if self.fd is not None and self._saved is not None:
            tty.setraw(self.fd)

    def restore(self) -> bool:
        """Put back the settings saved at start; False when the terminal is gone (hung up)."""
        if self.fd is None or self._saved is None:
            return True
        try:
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
        except (termios.error, OSError):
            return False
        return True


def pump_stdin(console: ConsoleInput, stop: threading.Event, fd: int | None = None) -> None:
    """Read stdin until ``stop`` is set or stdin ends (or hangs up); run on a daemon thread."""
    fd = sys.stdin.fileno() if fd is None else fd
    while not stop.is_set():
        try:
            readable, _, _ = select.select([fd], [], [], RETRY_SECONDS if console.pending else 0.1)
            data = os.read(fd, 1024) if readable else None
        except OSError:  # EIO once the terminal hung up: nothing more will be typed
            return
        if data is not None:
            if not data:
                return
            console.feed(data)
        elif console.pending:
            console.flush()
