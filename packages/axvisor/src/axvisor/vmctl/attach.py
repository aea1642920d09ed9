"""``vm console ID``: the terminal attached to one VM's console until Ctrl-A x detaches.

The escape keys are read by ``axvisor.console.ConsoleInput``, the same reader ``axvisor run``
uses (Ctrl-A x here detaches instead of quitting, Ctrl-A Ctrl-A sends a Ctrl-A, Ctrl-A h helps).
Output arrives on another thread (a vCPU thread in the shell, the WebSocket reader in ctl) and
is queued, so the producer never waits for the terminal. Where it comes from and where input
goes is injected: ``local_source`` for the manager in-process, ``remote_source`` for the API.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..console import ConsoleInput, Terminal
from ..manager import VmManager

POLL_SECONDS = 0.02
DETACH_HELP = "Ctrl-A x detaches, Ctrl-A h helps"


@dataclass
class ConsoleSource:
    """One VM's console seen from a front end: ``send`` returns how many bytes were taken,
    ``output`` receives chunks (None: the console ended), ``close`` ends the attachment."""

    send: Callable[[bytes], int]
    output: queue.SimpleQueue[bytes | None]
    close: Callable[[], None]


class _Port:
    """ConsoleInput's target: pushes through ``send`` (the manager queues what the UART cannot
    take yet, so a partial count only means its bound was reached)."""

    def __init__(self, send: Callable[[bytes], int]) -> None:
        self._send = send

    def push_input(self, data: bytes) -> int:
        return self._send(data)


def local_source(manager: VmManager, vm_id: int) -> ConsoleSource:
    output: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    history = manager.console_history(vm_id)  # history first, then subscribe (a byte may repeat, none is lost)
    if history:
        output.put(history)
    subscription = manager.console_subscribe(vm_id, lambda data: output.put(bytes(data)))
    return ConsoleSource(lambda data: manager.console_input(vm_id, data), output, subscription.close)


def remote_source(connection: object) -> ConsoleSource:
    """From ``axvisor.client.ConsoleConnection``: a reader thread moves WebSocket frames over."""
    from ..client import ConsoleConnection

    assert isinstance(connection, ConsoleConnection)
    output: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            data = connection.recv(0.2)
            if data == b"":
                output.put(None)
                return
            if data:
                output.put(data)

    thread = threading.Thread(target=reader, name="console-reader", daemon=True)
    thread.start()

    def send(data: bytes) -> int:
        connection.send(data)
        return len(data)

    def close() -> None:
        done.set()
        with contextlib.suppress(Exception):
            connection.close()
        thread.join(timeout=5)

    return ConsoleSource(send, output, close)


def attach(
    source: ConsoleSource, banner: str, stdin_fd: int | None = None, write: Callable[[bytes], object] | None = None
) -> str:
    """Copy keystrokes to the console and its output to the terminal until Ctrl-A x or the
    console ends; returns why it ended. The terminal is raw meanwhile and restored after."""
    fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    out = write or _stdout_write
    detached = threading.Event()
    lock = threading.Lock()
    console = ConsoleInput(lambda: (_Port(source.send), lock), detached.set, out)
    terminal = Terminal(fd)
    out(f"[axvisor] {banner} ({DETACH_HELP})\r\n".encode())
    ended = "detached"
    terminal.raw()
    try:
        while not detached.is_set():
            readable, _, _ = select.select([fd], [], [], POLL_SECONDS)
            if readable:
                data = os.read(fd, 1024)
                if not data:
                    ended = "input ended"
                    break
                console.feed(data)
            elif console.pending:
                console.flush()
            if _drain(source.output, out):
                ended = "the console ended"
                break
    finally:
        terminal.restore()
        source.close()
    out(f"\r\n[axvisor] {ended}\r\n".encode())
    return ended


def _drain(output: queue.SimpleQueue[bytes | None], write: Callable[[bytes], object]) -> bool:
    """Write what is queued; True when the console ended."""
    chunks = []
    ended = False
    while True:
        try:
            item = output.get_nowait()
        except queue.Empty:
            break
        if item is None:
            ended = True
            break
        chunks.append(item)
    if chunks:
        write(b"".join(chunks))
    return ended


def _stdout_write(data: bytes) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
