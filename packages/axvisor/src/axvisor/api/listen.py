"""Where the management API listens: a Unix socket only its owner can use, and optionally a
loopback TCP port guarded by a bearer token.

The socket is bound inside a fresh private directory, made 0600 there and only then renamed to
its path, so there is no moment at which another user could connect to it (a chmod after bind
leaves one). A socket file left by a VMM that died is replaced; one a live server answers on
is not (two servers on one path would steal each other's clients).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
import tempfile
from pathlib import Path

from ..errors import UserError

SOCKET_NAME = "axvisor.sock"
SOCKET_ENV = "AXVISOR_SOCK"
"""Overrides the default socket path for ``serve`` and ``ctl`` (``--sock`` overrides both)."""
SUN_PATH_MAX = 107
"""sockaddr_un.sun_path holds 108 bytes with the terminating NUL (unix(7))."""


def default_socket_path() -> Path:
    """$AXVISOR_SOCK, else $XDG_RUNTIME_DIR/axvisor/axvisor.sock, else /tmp/axvisor-$UID/axvisor.sock."""
    explicit = os.environ.get(SOCKET_ENV)
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "axvisor" / SOCKET_NAME
    return Path(tempfile.gettempdir()) / f"axvisor-{os.getuid()}" / SOCKET_NAME


def private_directory(directory: Path) -> None:
    """Create ``directory`` 0700 if missing; refuse one another user owns or others can write."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError as error:
        raise UserError(
            f"socket directory {directory}: cannot create it: {error.strerror}; "
            "pass --sock PATH in a directory you own"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise UserError(f"socket directory {directory}: not a directory (a symbolic link?); pass --sock PATH")
    if info.st_uid != os.getuid():
        raise UserError(f"socket directory {directory}: owned by uid {info.st_uid}, not you; pass --sock PATH")


def bind_unix(path: Path, default: bool = False) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from the moment it appears there.

    The ``default`` path's directory is made (0700) and must be the user's own: under /tmp,
    another user could have made it first. A path given with --sock must be in a directory
    that exists."""
    path = path.expanduser().absolute()
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise UserError(
            f"--sock {path}: longer than the {SUN_PATH_MAX} bytes a Unix socket path may have; " "choose a shorter path"
        )
    if default:
        private_directory(path.parent)
    else:
        _existing_directory(path.parent)
    _clear_stale(path)
    staging = Path(tempfile.mkdtemp(prefix=".axvisor-", dir=path.parent))  # 0700: nobody else can reach it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        temporary = staging / "s"
        sock.bind(str(temporary))
        os.chmod(temporary, 0o600)
        os.rename(temporary, path)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise UserError(f"--sock {path}: cannot listen there: {error.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(staging / "s")
        with contextlib.suppress(OSError):
            staging.rmdir()
    sock.setblocking(False)
    return sock


def _existing_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise UserError(f"--sock: directory {directory} does not exist; create it or choose another path")


def _clear_stale(path: Path) -> None:
    """Remove a socket nobody answers on; refuse a live one or a file that is not a socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise UserError(f"--sock {path}: exists and is not a socket; remove it or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:  # refused: its server is gone
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise UserError(f"--sock {path}: another server is listening there; stop it or choose another path")


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:PORT`` or ``[::1]:PORT``; only loopback addresses (the token travels in clear)."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise UserError(f"--listen {text}: expected ADDRESS:PORT, e.g. 127.0.0.1:8080") from None
    if not sep or not 0 <= port <= 65535:
        raise UserError(f"--listen {text}: expected ADDRESS:PORT with a port 0-65535")
    if not address.is_loopback:
        raise UserError(
            f"--listen {text}: only a loopback address (127.0.0.1, ::1) is allowed; the bearer token "
            "is sent in clear, so reach other hosts through an SSH tunnel or a TLS proxy"
        )
    return str(address), port


def read_token(path: str | os.PathLike[str]) -> str:
    """The bearer token: the file's first line, stripped; it must not be empty."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as error:
        raise UserError(f"--token-file {path}: cannot read it: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"--token-file {path}: not text; write the token as one line") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise UserError(f"--token-file {path}: empty; write the token as one line (e.g. from `openssl rand -hex 32`)")
    return token


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on a loopback address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise UserError(f"--listen {host}:{port}: cannot listen there: {error.strerror}") from None
    sock.setblocking(False)
    return sock
