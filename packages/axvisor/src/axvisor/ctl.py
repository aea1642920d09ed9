"""``axvisor ctl [--sock PATH | --connect ADDRESS:PORT --token-file FILE] vm ...``: the shell's
commands, one per invocation, carried out by a running ``axvisor serve`` over its API (as
ch-remote or virsh). Same grammar, same dispatcher, same output as ``axvisor shell``; the exit
status is 0, 1 when the server refused (unknown VM, wrong state ...), 2 when misused.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from .api.listen import default_socket_path, parse_listen, read_token
from .client import Client
from .errors import UserError
from .vmctl import ExitShell, GrammarError, Session, execute, parse_words
from .vmctl.attach import attach, remote_source


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        return False


def client_for(sock: str | None, connect: str | None, token_file: str | None) -> Client:
    if connect is not None:
        if token_file is None:
            raise UserError("--connect needs --token-file FILE (the token `axvisor serve --listen` was given)")
        host, port = parse_listen(connect)
        return Client.tcp(host, port, read_token(token_file))
    return Client.unix(Path(sock) if sock is not None else default_socket_path())


def ctl(words: Sequence[str], sock: str | None, connect: str | None, token_file: str | None) -> int:
    try:
        command = parse_words(list(words) or ["vm", "help"])
    except GrammarError as error:
        print(f"axvisor ctl: {error}", file=sys.stderr)
        return 2
    with client_for(sock, connect, token_file) as client:

        def attach_remote(vm_id: int, banner: str) -> None:
            attach(remote_source(client.console(vm_id)), banner)

        session = Session(
            client, Console(highlight=False), attach_remote, _confirm, Path.cwd(), Console(stderr=True, highlight=False)
        )
        try:
            return execute(command, session)
        except ExitShell:
            return 0
