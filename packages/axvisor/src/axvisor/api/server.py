"""The management API: HTTP/JSON (aiohttp) over a Unix socket, optionally loopback TCP with a
bearer token, in front of one ``VmManager``.

Routes follow AxVisor's (``/api/vms`` ...); ``openapi.json`` beside this file documents each
one, and a test holds the two equal. Errors are JSON ``{"error": "one line"}`` with the status
the manager's error carries (404 unknown VM, 409 wrong state, 400 a bad field, named in
``field``), so a client never parses text. The manager's calls block (a stop joins threads), so
each runs on a worker thread and the event loop stays free for other clients; the loop itself
runs on a thread of its own (``ApiServer``), which lets ``serve`` keep the VMM's one shutdown
path on the main thread and tests run a server in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..manager import MEMORY_ACCESS_MAX, BadRequest, ManagerError, VmManager, VmStateError, parse_size
from .metrics import ManagerCollector
from .schema import info_to_json, metrics_to_json, state_name, translation_to_json

log = logging.getLogger(__name__)

T = TypeVar("T")

CONFIG_BODY_MAX = 1 << 20
"""The largest config body POST /api/vms takes (a TOML config is a few KiB)."""
WORKERS = 16
"""Threads running manager calls: this many slow calls (stops joining vCPUs) at once."""
CONSOLE_QUEUE_CHUNKS = 1024
"""Console output chunks waiting for one slow WebSocket client; beyond it output is dropped
for that client (counted), so a client that stops reading cannot grow the VMM."""
WS_MESSAGE_MAX = 64 * 1024
"""The largest console input message a client may send."""

_MANAGER = web.AppKey("manager", VmManager)
_EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
_TOKEN = web.AppKey("token", str)


# -- errors and authentication ------------------------------------------------------------------


def _error(status: int, message: str, **extra: Any) -> web.Response:
    body = {"error": message, **{k: v for k, v in extra.items() if v is not None}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure as JSON: the manager's errors with their status, aiohttp's (404 no route,
    405, 413) as themselves, anything else a 500 that is logged and never takes the server down."""
    try:
        return await handler(request)
    except VmStateError as error:
        return _error(error.http_status, str(error), state=state_name(error.state))
    except BadRequest as error:
        return _error(error.http_status, str(error), field=error.field)
    except ManagerError as error:
        return _error(error.http_status, str(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        text = error.text if error.text and error.content_type == "application/json" else None
        if text is not None:
            return web.Response(status=error.status, text=text, content_type="application/json")
        what = "no such route" if error.status == 404 else (error.reason or "error")
        return _error(error.status, f"{request.method} {request.path}: {what}")
    except asyncio.CancelledError:
        raise
    except Exception as error:  # a bug: one line to the client, the traceback to the log
        log.exception("API %s %s failed", request.method, request.path)
        return _error(500, f"internal error: {type(error).__name__}: {error}")


@web.middleware
async def _auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """TCP clients must send ``Authorization: Bearer TOKEN``; the Unix socket (0600) needs none."""
    token = request.app.get(_TOKEN)
    transport = request.transport
    over_tcp = transport is not None and isinstance(transport.get_extra_info("sockname"), tuple)
    if token and over_tcp:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            return _error(401, "missing or wrong bearer token (send 'Authorization: Bearer TOKEN')")
    return await handler(request)


# -- helpers --------------------------------------------------------------------------------


async def _call(request: web.Request, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking manager call on a worker thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[_EXECUTOR], lambda: function(*args, **kwargs))


def _now(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a manager call that only reads a snapshot (get, list, metrics: lock-free, cheap) on the
    event loop itself. Each hop to a worker thread and back is a GIL hand-over, and with busy
    vCPU threads each costs up to the interpreter's switch interval."""
    return function(*args, **kwargs)


def _manager(request: web.Request) -> VmManager:
    return request.app[_MANAGER]


def _vm_id(request: web.Request) -> int:
    return _int_field("id", request.match_info["id"])


def _int_field(name: str, text: str | None, default: int | None = None) -> int:
    if text is None or text == "":
        if default is not None:
            return default
        raise BadRequest(name, "missing; expected an integer (decimal or 0x hex)")
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise BadRequest(name, f"expected an integer (decimal or 0x hex), got {text!r}") from None
    if value < 0:
        raise BadRequest(name, f"expected a non-negative integer, got {text!r}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _bool_field(request: web.Request, name: str, default: bool = False) -> bool:
    text = request.query.get(name)
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise BadRequest(name, f"expected true or false, got {text!r}")


def _only_query(request: web.Request, *allowed: str) -> None:
    """Reject unknown query parameters: a misspelt ``forse=1`` must not be silently ignored."""
    for key in request.query:
        if key not in allowed:
            expected = ", ".join(allowed) if allowed else "none"
            raise BadRequest(key, f"unknown query parameter; expected: {expected}")


# -- routes ---------------------------------------------------------------------------------


async def list_vms(request: web.Request) -> web.Response:
    _only_query(request, "all")
    infos = _now(_manager(request).list, all=_bool_field(request, "all", True))
    return web.json_response([info_to_json(info) for info in infos])


async def create_vm(request: web.Request) -> web.Response:
    """A TOML config as the body (overrides in the query), or JSON ``{"path"|"config", ...}``."""
    if request.content_length is not None and request.content_length > CONFIG_BODY_MAX:
        raise BadRequest("config", f"the body is larger than {CONFIG_BODY_MAX} bytes")
    body = await request.read()
    overrides: dict[str, Any]
    if request.content_type == "application/json":
        _only_query(request)
        spec = _json_object(body)
        if "restore" in spec:
            return await _create_restored(request, spec)
        unknown = sorted(set(spec) - {"path", "config", "name", "cpus", "mem"})
        if unknown:
            raise BadRequest(unknown[0], "unknown field; expected path or config, and name, cpus, mem")
        if ("path" in spec) == ("config" in spec):
            raise BadRequest("path", "give exactly one of path (a config file on the server) or config (TOML text)")
        source = spec.get("path", spec.get("config"))
        if not isinstance(source, str) or not source:
            raise BadRequest("path" if "path" in spec else "config", "expected a non-empty string")
        text = "config" in spec
        overrides = {key: spec.get(key) for key in ("name", "cpus", "mem")}
    else:
        _only_query(request, "name", "cpus", "mem")
        try:
            source = body.decode()
        except UnicodeDecodeError:
            raise BadRequest("config", "the body is not UTF-8 TOML text") from None
        if not source.strip():
            raise BadRequest("config", 'empty body; send a TOML config, or JSON {"path": ...}')
        text = True
        overrides = {key: request.query.get(key) for key in ("name", "cpus", "mem")}
    name, cpus, mem = _overrides(overrides)
    info = await _call(request, _manager(request).create, source, text=text, name=name, cpus=cpus, mem=mem)
    return web.json_response(info_to_json(info), status=201, headers={"Location": f"/api/vms/{info.id}"})


async def _create_restored(request: web.Request, spec: dict[str, Any]) -> web.Response:
    """JSON ``{"restore": DIR, "force": bool}``: a VM from a snapshot directory on this host."""
    unknown = sorted(set(spec) - {"restore", "force"})
    if unknown:
        raise BadRequest(unknown[0], "unknown field; with restore, expected only force")
    directory, force = spec["restore"], spec.get("force", False)
    if not isinstance(directory, str) or not directory:
        raise BadRequest("restore", "expected a snapshot directory (a non-empty string)")
    if not isinstance(force, bool):
        raise BadRequest("force", "expected true or false")
    info = await _call(request, _manager(request).create, "", restore=directory, force=force)
    return web.json_response(info_to_json(info), status=201, headers={"Location": f"/api/vms/{info.id}"})


async def snapshot_vm(request: web.Request) -> web.Response:
    """Save the VM: JSON ``{"dir": DIR, "stop": bool}`` (DIR new or empty, on this host)."""
    _only_query(request)
    spec = _json_object(await request.read())
    unknown = sorted(set(spec) - {"dir", "stop"})
    if unknown:
        raise BadRequest(unknown[0], "unknown field; expected dir and stop")
    directory, stop = spec.get("dir"), spec.get("stop", False)
    if not isinstance(directory, str) or not directory:
        raise BadRequest("dir", "expected the snapshot's directory (a non-empty string)")
    if not isinstance(stop, bool):
        raise BadRequest("stop", "expected true or false")
    info = await _call(request, _manager(request).snapshot, _vm_id(request), directory, stop=stop)
    return web.json_response(info_to_json(info))


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        spec = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("body", f"not valid JSON: {error}") from None
    if not isinstance(spec, dict):
        raise BadRequest("body", "expected a JSON object")
    return spec


def _overrides(values: dict[str, Any]) -> tuple[str | None, int | None, int | None]:
    name, cpus, mem = values["name"], values["cpus"], values["mem"]
    if name is not None and (not isinstance(name, str) or not name):
        raise BadRequest("name", "expected a non-empty string")
    if isinstance(cpus, str):
        cpus = _int_field("cpus", cpus)
    if cpus is not None and (not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1):
        raise BadRequest("cpus", "expected a positive integer")
    if isinstance(mem, str):
        mem = parse_size(mem, "mem")
    if mem is not None and (not isinstance(mem, int) or isinstance(mem, bool) or mem < 1):
        raise BadRequest("mem", "expected a positive byte count or a size such as 256M")
    return name, cpus, mem


async def get_vm(request: web.Request) -> web.Response:
    _only_query(request)
    return web.json_response(info_to_json(_now(_manager(request).get, _vm_id(request))))


async def start_vm(request: web.Request) -> web.Response:
    _only_query(request)
    return web.json_response(info_to_json(await _call(request, _manager(request).start, _vm_id(request))))


async def stop_vm(request: web.Request) -> web.Response:
    _only_query(request, "force", "graceful")
    info = await _call(
        request,
        _manager(request).stop,
        _vm_id(request),
        force=_bool_field(request, "force"),
        graceful=_bool_field(request, "graceful"),
    )
    return web.json_response(info_to_json(info))


async def pause_vm(request: web.Request) -> web.Response:
    _only_query(request)
    return web.json_response(info_to_json(await _call(request, _manager(request).pause, _vm_id(request))))


async def gdb_vm(request: web.Request) -> web.Response:
    """Start the VM's gdb stub: JSON ``{"address": "tcp:PORT" | "tcp:HOST:PORT" | "unix:PATH"}``."""
    _only_query(request)
    spec = _json_object(await request.read())
    address = spec.get("address")
    if set(spec) != {"address"} or not isinstance(address, str):
        raise BadRequest("address", 'expected {"address": "tcp:PORT" or "unix:PATH"}')
    bound = await _call(request, _manager(request).gdb_serve, _vm_id(request), address)
    return web.json_response({"address": bound})


async def resume_vm(request: web.Request) -> web.Response:
    _only_query(request)
    return web.json_response(info_to_json(await _call(request, _manager(request).resume, _vm_id(request))))


async def reset_vm(request: web.Request) -> web.Response:
    _only_query(request)
    return web.json_response(info_to_json(await _call(request, _manager(request).reset, _vm_id(request))))


async def delete_vm(request: web.Request) -> web.Response:
    _only_query(request, "force", "keep_data")
    await _call(
        request,
        _manager(request).delete,
        _vm_id(request),
        force=_bool_field(request, "force"),
        keep_data=_bool_field(request, "keep_data"),
    )
    return web.Response(status=204)


async def vm_metrics(request: web.Request) -> web.Response:
    _only_query(request)
    return web.json_response(metrics_to_json(_now(_manager(request).metrics, _vm_id(request))))


def _memory_range(request: web.Request) -> tuple[int, int | None]:
    gpa = _int_field("gpa", request.query.get("gpa"))
    size_text = request.query.get("size")
    size = None if size_text is None else _int_field("size", size_text)
    if size is not None and not 1 <= size <= MEMORY_ACCESS_MAX:
        raise BadRequest("size", f"expected 1 to {MEMORY_ACCESS_MAX} bytes, got {size}")
    return gpa, size


async def read_memory(request: web.Request) -> web.Response:
    _only_query(request, "gpa", "size")
    gpa, size = _memory_range(request)
    if size is None:
        raise BadRequest("size", f"missing; expected 1 to {MEMORY_ACCESS_MAX} bytes")
    data = await _call(request, _manager(request).read_memory, _vm_id(request), gpa, size)
    return web.Response(body=data, content_type="application/octet-stream")


async def write_memory(request: web.Request) -> web.Response:
    _only_query(request, "gpa", "size")
    gpa, size = _memory_range(request)
    if request.content_length is not None and request.content_length > MEMORY_ACCESS_MAX:
        raise BadRequest("data", f"the body is {request.content_length} bytes; at most {MEMORY_ACCESS_MAX}")
    data = await request.read()
    if not data:
        raise BadRequest("data", f"empty body; send 1 to {MEMORY_ACCESS_MAX} raw bytes")
    if size is not None and size != len(data):
        raise BadRequest("size", f"{size} does not match the body's {len(data)} bytes")
    await _call(request, _manager(request).write_memory, _vm_id(request), gpa, data)
    return web.Response(status=204)


async def vcpu_registers(request: web.Request) -> web.Response:
    _only_query(request)
    vcpu = _int_field("vcpu", request.match_info["vcpu"])
    registers = await _call(request, _manager(request).registers, _vm_id(request), vcpu)
    return web.json_response({"vcpu": vcpu, "registers": registers})


async def translate(request: web.Request) -> web.Response:
    _only_query(request, "vcpu", "gva")
    vcpu = _int_field("vcpu", request.query.get("vcpu"))
    gva = _int_field("gva", request.query.get("gva"))
    result = await _call(request, _manager(request).translate, _vm_id(request), vcpu, gva)
    return web.json_response(translation_to_json(result))


async def console(request: web.Request) -> web.StreamResponse:
    """The VM's console as a WebSocket: binary frames both ways (text frames from the client are
    taken as UTF-8 input). The last output comes first unless ``history=false``."""
    _only_query(request, "history")
    manager, vm_id = _manager(request), _vm_id(request)
    want_history = _bool_field(request, "history", True)
    history = _now(manager.console_history, vm_id)  # 404 before the upgrade
    ws = web.WebSocketResponse(max_msg_size=WS_MESSAGE_MAX, heartbeat=30)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(CONSOLE_QUEUE_CHUNKS)
    dropped = 0

    def offer(data: bytes) -> None:
        nonlocal dropped
        try:
            queue.put_nowait(data)
        except asyncio.QueueFull:
            dropped += len(data)

    def on_output(data: bytes) -> None:  # a vCPU thread: hand over and return
        with contextlib.suppress(RuntimeError):  # the loop closed: the client is gone
            loop.call_soon_threadsafe(offer, bytes(data))

    subscription = await _call(request, manager.console_subscribe, vm_id, on_output)
    sender = asyncio.create_task(_send_output(ws, queue, history if want_history else b"", subscription))
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                data = message.data
            elif message.type == WSMsgType.TEXT:
                data = message.data.encode()
            else:
                break
            if data:
                await _call(request, manager.console_input, vm_id, data)
    finally:
        subscription.close()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        if dropped:
            log.info("VM %d console: %d output bytes dropped for a slow WebSocket client", vm_id, dropped)
    return ws


async def _send_output(
    ws: web.WebSocketResponse, queue: asyncio.Queue[bytes], history: bytes, subscription: Any
) -> None:
    if history:
        await ws.send_bytes(history)
    while not ws.closed:
        try:
            data = await asyncio.wait_for(queue.get(), timeout=0.5)
        except TimeoutError:
            if subscription.closed:  # the VM was deleted
                await ws.close(message=b"the VM was deleted")
                return
            continue
        await ws.send_bytes(data)


async def prometheus_metrics(request: web.Request) -> web.Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ManagerCollector(_manager(request)))
    body = await _call(request, generate_latest, registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


ROUTES: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]], ...] = (
    ("GET", "/api/vms", list_vms),
    ("POST", "/api/vms", create_vm),
    ("GET", "/api/vms/{id}", get_vm),
    ("DELETE", "/api/vms/{id}", delete_vm),
    ("POST", "/api/vms/{id}/start", start_vm),
    ("POST", "/api/vms/{id}/stop", stop_vm),
    ("POST", "/api/vms/{id}/pause", pause_vm),
    ("POST", "/api/vms/{id}/gdb", gdb_vm),
    ("POST", "/api/vms/{id}/resume", resume_vm),
    ("POST", "/api/vms/{id}/snapshot", snapshot_vm),
    ("POST", "/api/vms/{id}/reset", reset_vm),
    ("GET", "/api/vms/{id}/metrics", vm_metrics),
    ("GET", "/api/vms/{id}/memory", read_memory),
    ("PUT", "/api/vms/{id}/memory", write_memory),
    ("GET", "/api/vms/{id}/vcpus/{vcpu}/registers", vcpu_registers),
    ("GET", "/api/vms/{id}/translate", translate),
    ("GET", "/api/vms/{id}/console", console),
    ("GET", "/metrics", prometheus_metrics),
)


def make_app(
    manager: VmManager, token: str | None = None, executor: ThreadPoolExecutor | None = None
) -> web.Application:
    """The aiohttp application serving ``manager`` (``token``: required from TCP clients)."""
    app = web.Application(middlewares=[_errors, _auth], client_max_size=MEMORY_ACCESS_MAX + CONFIG_BODY_MAX)
    app[_MANAGER] = manager
    app[_EXECUTOR] = executor or ThreadPoolExecutor(WORKERS, thread_name_prefix="api")
    if token:
        app[_TOKEN] = token
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


def openapi_path() -> Path:
    return Path(__file__).with_name("openapi.json")


# -- running it ---------------------------------------------------------------------------------


class _OneLine(logging.Filter):
    """A malformed request is the client's problem: one line, not aiohttp's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
            record.msg, record.args = "malformed request refused: %.200s", (text,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_protocol_log = logging.getLogger("axvisor.api.protocol")
_protocol_log.addFilter(_OneLine())


class ApiServer:
    """The API on its own thread and event loop, listening on sockets bound beforehand (see
    ``listen``); ``start`` returns once it accepts connections, ``close`` once it stopped and
    removed its Unix socket file."""

    def __init__(
        self, manager: VmManager, sockets: list[socket.socket], token: str | None = None, unix_path: Path | None = None
    ) -> None:
        self.manager = manager
        self.sockets = sockets
        self.unix_path = unix_path
        self._unix_inode = os.stat(unix_path).st_ino if unix_path is not None else None
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="api")
        self._app = make_app(manager, token, self._executor)
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="api", daemon=True)

    def start(self) -> ApiServer:
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:  # reported by start()
            self._failure = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _serve(self) -> None:
        self._runner = web.AppRunner(
            self._app, handle_signals=False, access_log=None, shutdown_timeout=1.0, logger=_protocol_log
        )
        await self._runner.setup()
        for sock in self.sockets:
            await web.SockSite(self._runner, sock).start()

    def close(self) -> None:
        """Stop taking requests, end open WebSockets, remove the Unix socket file; idempotent."""
        if self._thread.is_alive() and self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(Exception):
                future.result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.unix_path).st_ino == self._unix_inode:  # still ours, not a newer server's
                    os.unlink(self.unix_path)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
