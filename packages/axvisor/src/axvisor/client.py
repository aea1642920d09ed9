"""``axvisor.client``: a small typed client of the management API (``axvisor serve``).

It speaks to the server over its Unix socket, or over loopback TCP with a bearer token, and
hands back the manager's own dataclasses (``VmInfo``, ``VmMetrics``, ``Translation``), so code
written against ``VmManager`` in-process runs unchanged against a remote one: the method names,
arguments and results are the same (``axvisor ctl`` and the shell share one dispatcher this
way). Errors are ``ApiError`` (a ``ManagerError``) carrying the HTTP status, the one-line
message, and the ``field`` (400) or ``state`` (409) the server named.

    from axvisor.client import Client
    with Client.unix("/run/user/1000/axvisor/axvisor.sock") as api:
        vm = api.create("configs/vms/uboot-riscv64-virt-smp1.toml")
        api.start(vm.id)
        with api.console(vm.id) as console:
            console.send(b"version\\n")
            print(console.read_until(b"=> "))

One connection per client, kept alive and guarded by a lock: a client may be shared between
threads; for parallel requests use one client per thread.
"""

from __future__ import annotations

import builtins
import http.client
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .api.listen import default_socket_path
from .api.schema import info_from_json, metrics_from_json, state_from_name, translation_from_json
from .manager import ManagerError, Translation, VmInfo, VmMetrics

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

__all__ = ["ApiError", "Client", "ConsoleConnection", "ServerUnreachable"]

DEFAULT_TIMEOUT = 120.0
"""Seconds to wait for an answer: a stop joins vCPUs and may wait for a graceful power-off."""


class ApiError(ManagerError):
    """The server refused a request: ``http_status`` (404 unknown VM, 409 wrong state, 400 bad
    field, 401 token ...), ``str()`` its one-line message, ``field``/``state`` when it named one."""

    def __init__(self, status: int, message: str, field: str | None = None, state: str | None = None) -> None:
        super().__init__(message)
        self.http_status = status
        self.message = message
        self.field = field
        self.state = state_from_name(state) if state else None


class ServerUnreachable(ManagerError):
    """Nothing answers at the socket or address (the server is not running, or a wrong path)."""

    http_status = 503


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """The API of one ``axvisor serve``; see the module docstring."""

    def __init__(
        self,
        *,
        unix_path: str | os.PathLike[str] | None = None,
        host: str | None = None,
        port: int | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if (unix_path is None) == (host is None):
            raise ValueError("give exactly one of unix_path or host and port")
        self.unix_path = str(Path(unix_path).expanduser()) if unix_path is not None else None
        self.host, self.port, self.token, self.timeout = host, port, token, timeout
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None

    @classmethod
    def unix(cls, path: str | os.PathLike[str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Client:
        """A client of the server at ``path`` (default: where ``axvisor serve`` listens by default)."""
        return cls(unix_path=path if path is not None else default_socket_path(), timeout=timeout)

    @classmethod
    def tcp(cls, host: str, port: int, token: str, timeout: float = DEFAULT_TIMEOUT) -> Client:
        return cls(host=host, port=port, token=token, timeout=timeout)

    @property
    def where(self) -> str:
        return self.unix_path if self.unix_path is not None else f"{self.host}:{self.port}"

    # -- transport ----------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        if self.unix_path is not None:
            return _UnixHTTPConnection(self.unix_path, self.timeout)
        assert self.host is not None and self.port is not None
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, str, bytes]:
        """One request: (status, content type, body) of a 2xx answer; ApiError for any other."""
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        target = path + (f"?{urlencode(params)}" if params else "")
        with self._lock:
            for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more
                if self._connection is None:
                    self._connection = self._connect()
                try:
                    self._connection.request(method, target, body=body, headers=self._headers(content_type))
                    response = self._connection.getresponse()
                    data = response.read()
                except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine) as error:
                    self._drop()
                    if attempt == 2 or isinstance(error, ConnectionRefusedError):
                        raise ServerUnreachable(f"axvisor API at {self.where}: {error}") from None
                    continue
                except FileNotFoundError:
                    self._drop()
                    raise ServerUnreachable(
                        f"axvisor API at {self.where}: no socket there " "(is `axvisor serve` running? --sock PATH)"
                    ) from None
                except OSError as error:
                    self._drop()
                    raise ServerUnreachable(f"axvisor API at {self.where}: {error.strerror or error}") from None
                if response.will_close:
                    self._drop()
                break
        kind = response.getheader("Content-Type", "").split(";")[0]
        if response.status >= 400:
            raise _api_error(response.status, kind, data)
        return response.status, kind, data

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _json(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        _, _, data = self.request(method, path, query, payload, "application/json" if body is not None else None)
        return json.loads(data) if data else None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- VMs: the VmManager methods -----------------------------------------------------------

    def create(
        self,
        config: str | os.PathLike[str],
        *,
        text: bool = False,
        name: str | None = None,
        cpus: int | None = None,
        mem: int | str | None = None,
        restore: str | os.PathLike[str] | None = None,
        force: bool = False,
    ) -> VmInfo:
        """A VM from a config file on the server's host (made absolute here), or TOML ``text``,
        or (``restore``) from a snapshot directory on the server's host."""
        if restore is not None:
            body = {"restore": str(Path(restore).expanduser().absolute()), "force": force}
            return info_from_json(self._json("POST", "/api/vms", body=body))
        spec: dict[str, Any] = {"config": str(config)} if text else {"path": str(Path(config).expanduser().absolute())}
        spec |= {key: value for key, value in (("name", name), ("cpus", cpus), ("mem", mem)) if value is not None}
        return info_from_json(self._json("POST", "/api/vms", body=spec))

    def list(self, all: bool = False) -> list[VmInfo]:
        return [info_from_json(item) for item in self._json("GET", "/api/vms", {"all": all})]

    def ids(self) -> builtins.list[int]:
        return [info.id for info in self.list(all=True)]

    def get(self, vm_id: int) -> VmInfo:
        return info_from_json(self._json("GET", f"/api/vms/{vm_id}"))

    def start(self, vm_id: int) -> VmInfo:
        return info_from_json(self._json("POST", f"/api/vms/{vm_id}/start"))

    def stop(self, vm_id: int, force: bool = False, graceful: bool = False) -> VmInfo:
        query = {"force": force or None, "graceful": graceful or None}
        return info_from_json(self._json("POST", f"/api/vms/{vm_id}/stop", query))

    def pause(self, vm_id: int) -> VmInfo:
        return info_from_json(self._json("POST", f"/api/vms/{vm_id}/pause"))

    def resume(self, vm_id: int) -> VmInfo:
        return info_from_json(self._json("POST", f"/api/vms/{vm_id}/resume"))

    def snapshot(self, vm_id: int, directory: str, stop: bool = False) -> VmInfo:
        """Save the VM into ``directory`` on the server's host (see ``VmManager.snapshot``)."""
        body = {"dir": str(directory), "stop": stop}
        return info_from_json(self._json("POST", f"/api/vms/{vm_id}/snapshot", body=body))

    def reset(self, vm_id: int) -> VmInfo:
        return info_from_json(self._json("POST", f"/api/vms/{vm_id}/reset"))

    def delete(self, vm_id: int, force: bool = False, keep_data: bool = False) -> None:
        self.request("DELETE", f"/api/vms/{vm_id}", {"force": force or None, "keep_data": keep_data or None})

    def metrics(self, vm_id: int) -> VmMetrics:
        return metrics_from_json(self._json("GET", f"/api/vms/{vm_id}/metrics"))

    def read_memory(self, vm_id: int, gpa: int, size: int) -> bytes:
        return self.request("GET", f"/api/vms/{vm_id}/memory", {"gpa": hex(gpa), "size": size})[2]

    def write_memory(self, vm_id: int, gpa: int, data: bytes) -> None:
        self.request("PUT", f"/api/vms/{vm_id}/memory", {"gpa": hex(gpa)}, bytes(data), "application/octet-stream")

    def registers(self, vm_id: int, vcpu: int) -> dict[str, int]:
        return {
            str(k): int(v)
            for k, v in self._json("GET", f"/api/vms/{vm_id}/vcpus/{vcpu}/registers")["registers"].items()
        }

    def gdb_serve(self, vm_id: int, address: str) -> str:
        """Start the server's gdb stub for a VM; the address it listens on."""
        return str(self._json("POST", f"/api/vms/{vm_id}/gdb", body={"address": address})["address"])

    def translate(self, vm_id: int, vcpu: int, gva: int) -> Translation:
        return translation_from_json(self._json("GET", f"/api/vms/{vm_id}/translate", {"vcpu": vcpu, "gva": hex(gva)}))

    def prometheus_text(self) -> str:
        """``GET /metrics``: every VM's metrics in Prometheus' text format."""
        return self.request("GET", "/metrics")[2].decode()

    def console(self, vm_id: int, history: bool = True) -> ConsoleConnection:
        """The VM's console (a WebSocket): the output so far first unless ``history=False``."""
        from websockets.exceptions import InvalidStatus  # loaded only by those who attach
        from websockets.sync.client import connect, unix_connect

        path = f"/api/vms/{vm_id}/console" + ("" if history else "?history=false")
        try:
            if self.unix_path is not None:
                ws = unix_connect(
                    self.unix_path,
                    f"ws://localhost{path}",
                    open_timeout=self.timeout,
                    max_size=None,
                    ping_interval=None,
                )
            else:
                ws = connect(
                    f"ws://{self.host}:{self.port}{path}",
                    additional_headers=self._headers(),
                    open_timeout=self.timeout,
                    max_size=None,
                    ping_interval=None,
                )
        except InvalidStatus as error:
            response = error.response
            kind = response.headers.get("Content-Type", "").split(";")[0]
            raise _api_error(response.status_code, kind, response.body or b"") from None
        except FileNotFoundError:
            raise ServerUnreachable(f"axvisor API at {self.where}: no socket there") from None
        except OSError as error:
            raise ServerUnreachable(f"axvisor API at {self.where}: {error.strerror or error}") from None
        return ConsoleConnection(ws.__enter__())  # entered: the connection is ours to close


class ConsoleConnection:
    """One attachment to a VM's console: ``send`` keystrokes, ``recv`` output, ``close``."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.buffer = bytearray()
        """Output received by ``read_until`` past its marker, returned by the next read."""
        self.closed_reason: str | None = None

    def send(self, data: bytes) -> None:
        self._ws.send(bytes(data))

    def recv(self, timeout: float | None = None) -> bytes | None:
        """The next output chunk; None when ``timeout`` passed; b"" once the server closed it."""
        if self.buffer:
            data, self.buffer = bytes(self.buffer), bytearray()
            return data
        from websockets.exceptions import ConnectionClosed

        try:
            message = self._ws.recv(timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            self.closed_reason = closed.rcvd.reason if closed.rcvd is not None else "closed"
            return b""
        return message if isinstance(message, bytes) else message.encode()

    def read_until(self, marker: bytes, timeout: float = 60.0) -> bytes:
        """Output up to and including ``marker``; TimeoutError (with what came) if it does not come."""
        deadline = time.monotonic() + timeout
        seen = bytearray()
        while (at := seen.find(marker)) < 0:
            left = deadline - time.monotonic()
            chunk = self.recv(max(left, 0)) if left > 0 else None
            if not chunk:
                raise TimeoutError(f"{marker!r} did not come in {timeout} s; got {bytes(seen[-400:])!r}")
            seen += chunk
        end = at + len(marker)
        self.buffer[:0] = seen[end:]
        return bytes(seen[:end])

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> ConsoleConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _api_error(status: int, kind: str, data: bytes) -> ApiError:
    if kind == "application/json":
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return ApiError(status, body["error"], body.get("field"), body.get("state"))
    text = data.decode(errors="replace").strip().splitlines()
    return ApiError(status, f"HTTP {status}: {text[0] if text else 'no message'}")
