"""``axvisor serve``: the VMM as a service, operated only through the management API.

It creates and starts the VMs of any CONFIG given, listens on its Unix socket (and a loopback
TCP port with a token, if asked), prints where, and runs until SIGINT/SIGTERM/SIGHUP/SIGQUIT.
Then it takes the same way out as ``axvisor run``: the signal only records and wakes
(``shutdown.StopRequest``), the main thread stops taking requests, the manager's ``close()``
stops every VM in order of id (vCPUs joined, disks flushed, resources released), and the exit
status is 128 + the signal. Each VM's console goes to its log file under the log directory.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from axvm import VmBuildError

from .api.listen import bind_tcp, bind_unix, default_socket_path, parse_listen, read_token
from .api.server import ApiServer
from .console import DEFAULT_LOG_DIR, LOG_DIR_ENV
from .errors import UserError
from .manager import ManagerError, VmManager
from .shutdown import StopRequest


def serve(
    configs: Sequence[str], sock: str | None, listen: str | None, token_file: str | None, log_dir: str | None = None
) -> int:
    """Run until a stop signal; returns the exit status (128 + the signal)."""
    if listen is not None and token_file is None:
        raise UserError("--listen needs --token-file FILE: TCP clients must send that bearer token")
    if token_file is not None and listen is None:
        raise UserError("--token-file is only used with --listen ADDRESS:PORT")
    address = parse_listen(listen) if listen is not None else None
    token = read_token(token_file) if token_file is not None else None
    directory = Path(log_dir or os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR)
    with StopRequest() as stop, stop.catching_signals():
        manager = VmManager(log_dir=directory)
        try:
            return _serve(manager, stop, configs, sock, address, token, directory)
        finally:
            manager.close()  # every VM stopped in order, whatever ended the service


def _serve(
    manager: VmManager,
    stop: StopRequest,
    configs: Sequence[str],
    sock: str | None,
    address: tuple[str, int] | None,
    token: str | None,
    directory: Path,
) -> int:
    for config in configs:
        try:
            info = manager.create(str(Path(config).expanduser().absolute()))
        except ManagerError as error:
            raise UserError(f"{config}: {error}") from None
        try:
            manager.start(info.id)
        except ManagerError as error:  # the host refused (KVM, memory): not the config's fault
            raise VmBuildError(f"VM {info.id} {info.name!r}: {error}") from None
        _say(f"axvisor serve: started VM {info.id} {info.name!r} ({info.arch}, {info.backend})")
    path = Path(sock) if sock is not None else default_socket_path()
    sockets = [bind_unix(path, default=sock is None)]
    if address is not None:
        try:
            sockets.append(bind_tcp(*address))
        except UserError:
            sockets[0].close()
            os.unlink(path)
            raise
    with ApiServer(manager, sockets, token, unix_path=path.expanduser().absolute()):
        _say(f"axvisor serve: listening on unix:{path.expanduser().absolute()}")
        if address is not None:
            host, port = sockets[1].getsockname()[:2]
            shown = f"[{host}]" if sockets[1].family == socket.AF_INET6 else host
            _say(f"axvisor serve: listening on http://{shown}:{port} (bearer token required)")
        _say(f"axvisor serve: console logs in {directory}; stop with SIGINT or SIGTERM")
        while not stop.requested:
            stop.wait()
        stop.settle()
        _say(f"axvisor serve: stopping {len(manager.list())} VM(s)")
    return stop.exit_status or 0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
