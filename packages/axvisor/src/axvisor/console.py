"""The interactive console: the host terminal's keystrokes go to a VM's UART.

Ctrl-A is the escape key, as in QEMU: Ctrl-A x quits every VM, Ctrl-A Ctrl-A sends a literal
Ctrl-A, Ctrl-A h prints help. Input the UART cannot take yet (its RX FIFO holds 16 bytes) waits
here and is retried, so pasted text is not lost. The terminal is put in raw mode only when
stdin is a terminal, and restored however the VMM ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator

from axdevice import Uart16550

ESCAPE = 0x01  # Ctrl-A
RETRY_SECONDS = 0.005
HELP = b"\r\n[axvisor] Ctrl-A x: quit   Ctrl-A Ctrl-A: send Ctrl-A   Ctrl-A h: this help\r\n"


ConsoleTarget = Callable[[], tuple[Uart16550, threading.Lock]]
"""The UART keystrokes go to and the lock of its VM, asked afresh each time (a reset VM is a new one)."""


class ConsoleInput:
    """Feeds bytes to a UART under the VM's device lock; understands the escape sequences."""

    def __init__(self, target: ConsoleTarget, on_quit: Callable[[], None], echo: Callable[[bytes], object]) -> None:
        self.target = target
        self.on_quit = on_quit
        self.echo = echo
        self.pending = bytearray()
        self._escaped = False

    def feed(self, data: bytes) -> None:
        """Interpret keystrokes; bytes meant for the guest are queued and pushed."""
        for byte in data:
            if self._escaped:
                self._escaped = False
                if byte in (ord("x"), ord("X")):
                    self.on_quit()
                elif byte == ESCAPE:
                    self.pending.append(ESCAPE)
                elif byte in (ord("h"), ord("H"), ord("?")):
                    self.echo(HELP)
            elif byte == ESCAPE:
                self._escaped = True
            else:
                self.pending.append(byte)
        self.flush()

    def flush(self) -> bool:
        """Push what the UART accepts now; True when nothing is left waiting."""
        if self.pending:
            uart, lock = self.target()
            with lock:
                accepted = uart.push_input(bytes(self.pending))
            del self.pending[:accepted]
        return not self.pending


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def pump_stdin(console: ConsoleInput, stop: threading.Event, fd: int | None = None) -> None:
    """Read stdin until ``stop`` is set or stdin ends; run on a daemon thread."""
    fd = sys.stdin.fileno() if fd is None else fd
    while not stop.is_set():
        readable, _, _ = select.select([fd], [], [], RETRY_SECONDS if console.pending else 0.1)
        if readable:
            data = os.read(fd, 1024)
            if not data:
                return
            console.feed(data)
        elif console.pending:
            console.flush()
