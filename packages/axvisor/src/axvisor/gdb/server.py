"""``GdbServer``: the gdb stub's sockets, one VM, one debugger connection at a time.

Theory of operation. A thread accepts on ``tcp:[HOST:]PORT`` (loopback unless a host is
named) or ``unix:PATH``. A connection pauses the VM (the manager's pause; a VM that was never
started is started paused) so gdb finds it stopped, then one loop waits on the socket and on
a wake-up pipe: bytes from gdb go through the ``GdbSession``; a stop from a vCPU thread (a
breakpoint, a watchpoint, a finished step) or a Ctrl-C pauses the whole VM and sends the stop
reply. A guest that powers off while gdb waits is reported as exited (``W``). When the peer
detaches, or just goes away, every breakpoint is removed and the VM runs on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from axvcpu.debug import DebugStop

from ..vmtypes import ManagerError, VMState
from .protocol import frame
from .session import SIGINT, SIGTRAP, BreakKind, GdbSession, StopEvent
from .vm_target import DebugManager, VmDebugTarget

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""How often a waiting connection looks whether the VM has ended."""
RECV_BYTES = 1 << 16
PAUSE_TIMEOUT = 10.0


class GdbAddressError(ValueError):
    """An address that is not ``tcp:PORT``, ``tcp:HOST:PORT`` or ``unix:PATH``."""


@dataclass(frozen=True, slots=True)
class GdbAddress:
    family: str  # "tcp" or "unix"
    host: str
    port: int
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.family == "unix" else f"tcp:{self.host}:{self.port}"


def parse_address(spec: str) -> GdbAddress:
    """``tcp:PORT`` (127.0.0.1), ``tcp:HOST:PORT``, a bare ``PORT``, or ``unix:PATH``."""
    kind, colon, rest = spec.partition(":")
    if not colon and spec.isdigit():
        kind, rest = "tcp", spec
    if kind == "unix" and rest:
        return GdbAddress("unix", "", 0, rest)
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if port.isdigit() and 0 <= int(port) <= 65535:
            return GdbAddress("tcp", host or "127.0.0.1", int(port), "")
    raise GdbAddressError(f"{spec!r}: expected tcp:PORT, tcp:HOST:PORT or unix:PATH")


class GdbServer:
    """Serves gdb for VM ``vm_id`` of ``manager`` on ``address`` (see the module docstring)."""

    def __init__(self, manager: DebugManager, vm_id: int, address: GdbAddress) -> None:
        self.manager = manager
        self.vm_id = vm_id
        family = socket.AF_UNIX if address.family == "unix" else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            if address.family == "unix":
                with contextlib.suppress(FileNotFoundError):
                    if Path(address.path).is_socket():
                        os.unlink(address.path)
                self._listener.bind(address.path)
                self.address = address
            else:
                self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._listener.bind((address.host, address.port))
                self.address = GdbAddress("tcp", address.host, self._listener.getsockname()[1], "")
            self._listener.listen(1)
        except OSError:
            self._listener.close()
            raise
        self._closing = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"gdb-vm{vm_id}")
        self._thread.start()

    def close(self) -> None:
        """Stop listening and end a connection (its breakpoints removed, the VM left running)."""
        if self._closing.is_set():
            return
        self._closing.set()
        os.write(self._wake_w, b"x")
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5.0)
        if self.address.family == "unix":
            with contextlib.suppress(OSError):
                os.unlink(self.address.path)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- the server thread ------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    _Connection(self, conn).serve()
                except Exception:  # a bug here ends this connection, never the VMM
                    log.exception("gdb: VM %d: the connection failed", self.vm_id)


class _Connection:
    def __init__(self, server: GdbServer, conn: socket.socket) -> None:
        self.server = server
        self.manager = server.manager
        self.vm_id = server.vm_id
        self.conn = conn
        self.stops: queue.SimpleQueue[tuple[int, DebugStop | None]] = queue.SimpleQueue()
        self.target = VmDebugTarget(self.manager, self.vm_id, self._heard)
        self.target.interrupt = lambda: self._heard(-1, None)  # type: ignore[method-assign]

    def _heard(self, vcpu: int, stop: DebugStop | None) -> None:
        """On a vCPU thread (or the session's, for Ctrl-C): queue it and wake the loop."""
        self.stops.put((vcpu, stop))
        with contextlib.suppress(OSError):
            os.write(self.server._wake_w, b"s")

    def serve(self) -> None:
        self._halt()
        session = GdbSession(self.target)
        try:
            self._loop(session)
        finally:
            if not session.closed:  # the peer went away without a detach: as if it had detached
                with contextlib.suppress(ManagerError):
                    self.target.detach()

    def _loop(self, session: GdbSession) -> None:
        wake = self.server._wake_r
        while not self.server._closing.is_set():
            ready, _, _ = select.select([self.conn, wake], [], [], POLL_SECONDS)
            if self.conn in ready:
                data = self.conn.recv(RECV_BYTES)
                if not data:
                    return
                self.conn.sendall(session.receive(data))
                if session.closed:
                    return
            if wake in ready:
                os.read(wake, 4096)
            self._deliver_stops(session)
            if session.running and self._ended(session):
                return

    def _deliver_stops(self, session: GdbSession) -> None:
        while True:
            try:
                vcpu, stop = self.stops.get_nowait()
            except queue.Empty:
                return
            if not session.running:
                continue  # another vCPU's stop while already stopped: it is held and retried
            self._halt()
            if stop is None:
                event = StopEvent(session.current_vcpu, SIGINT)
            else:
                watch = (BreakKind(int(stop.watch[0])), stop.watch[1]) if stop.watch is not None else None
                event = StopEvent(vcpu, SIGTRAP, watch)
            self.conn.sendall(session.stopped(event))

    def _halt(self) -> None:
        """Pause the VM (start a Ready one paused); quiet when it is already paused or has ended."""
        state = self.manager.get(self.vm_id).state
        try:
            if state is VMState.READY:
                self.manager.start(self.vm_id, paused=True)
            elif state is VMState.RUNNING:
                self.manager.pause(self.vm_id, PAUSE_TIMEOUT)
        except ManagerError as error:
            log.info("gdb: VM %d: pausing: %s", self.vm_id, error)

    def _ended(self, session: GdbSession) -> bool:
        try:
            info = self.manager.get(self.vm_id)
        except ManagerError:  # deleted, or the manager is closing: nothing left to debug
            session.closed = True
            return True
        if info.state not in (VMState.STOPPED, VMState.FAILED):
            return False
        code = info.exit_code if info.exit_code is not None else 1
        self.conn.sendall(frame(b"W%02x" % (code & 0xFF)))
        session.running = False
        session.closed = True
        return True
