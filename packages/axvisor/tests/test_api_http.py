"""The management API's HTTP layer on a real server (a Unix socket in a temp dir, aiohttp) in
front of an in-memory manager, driven through ``axvisor.client``: every route, the status codes
and JSON errors, the OpenAPI document, the socket's mode, the token, malformed and concurrent
requests, the console WebSocket. tests/test_api.py does the same against real VMs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from axvisor.api import listen
from axvisor.api.server import ROUTES, ApiServer, openapi_path
from axvisor.client import ApiError, Client, ServerUnreachable
from axvisor.errors import UserError
from axvm import VMState

from .fake_manager import RAM_BASE, FakeManager

CONFIG = '[base]\nid = 1\nname = "fake"\ncpu_num = 2\n'


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose socket paths fit sun_path (pytest's tmp_path may be too long)."""
    path = Path(tempfile.mkdtemp(prefix="axapi-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def served(short_dir: Path) -> Iterator[tuple[FakeManager, Path]]:
    manager = FakeManager()
    sock_path = short_dir / "api.sock"
    with ApiServer(manager, [listen.bind_unix(sock_path)], unix_path=sock_path):  # type: ignore[arg-type]
        yield manager, sock_path


@pytest.fixture
def api(served: tuple[FakeManager, Path]) -> Iterator[Client]:
    with Client.unix(served[1], timeout=10) as client:
        yield client


def raw_request(path: Path, data: bytes, answer: bool = True) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        try:
            sock.sendall(data)
        except BrokenPipeError:  # the server answered and hung up before reading it all
            pass
        received = b""
        while answer and b"\r\n" not in received and (chunk := sock.recv(65536)):
            received += chunk
    return received


def test_openapi_documents_exactly_the_routes_served() -> None:
    document = json.loads(openapi_path().read_text())
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    served = {(method, path) for method, path, _ in ROUTES}
    assert served == documented
    assert document["openapi"].startswith("3.")


def test_socket_is_0600_stale_replaced_live_refused(short_dir: Path) -> None:
    path = short_dir / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on: a VMM that died
    live = listen.bind_unix(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert [p.name for p in short_dir.iterdir()] == ["s.sock"]  # the staging directory is gone
        with pytest.raises(UserError, match="another server is listening there"):
            listen.bind_unix(path)
    finally:
        live.close()
    (short_dir / "plain").write_text("x")
    with pytest.raises(UserError, match="exists and is not a socket"):
        listen.bind_unix(short_dir / "plain")
    with pytest.raises(UserError, match="longer than the 107 bytes"):
        listen.bind_unix(short_dir / ("x" * 120))


def test_default_socket_directory_is_private(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    monkeypatch.delenv(listen.SOCKET_ENV, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_dir))
    path = listen.default_socket_path()
    assert path == short_dir / "axvisor" / "axvisor.sock"
    sock = listen.bind_unix(path, default=True)
    sock.close()
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_dir / "missing"))
    assert listen.default_socket_path().parent.name == f"axvisor-{os.getuid()}"


def test_every_route_through_the_client(served: tuple[FakeManager, Path], api: Client, short_dir: Path) -> None:
    manager, _ = served
    config = short_dir / "vm.toml"
    config.write_text(CONFIG)
    first = api.create(config, name="one")
    assert (first.name, first.cpus, first.state, first.config_path) == ("one", 2, VMState.READY, str(config))
    second = api.create(CONFIG, text=True, cpus=1)
    assert (second.name, second.cpus, second.config_path) == ("fake", 1, None)
    assert [info.id for info in api.list(all=True)] == [first.id, second.id]
    assert api.get(first.id).name == "one"
    assert api.start(first.id).state is VMState.RUNNING
    assert api.pause(first.id).state is VMState.PAUSED
    assert api.registers(first.id, 1) == {"pc": 0x8020_0000, "sp": 0x8100_0000, "satp": 0}
    translation = api.translate(first.id, 0, 0x8020_0000)
    assert (translation.gpa, translation.mode) == (0x8020_0000, "bare")
    assert api.resume(first.id).state is VMState.RUNNING
    assert api.reset(first.id).state is VMState.RUNNING
    api.write_memory(first.id, RAM_BASE + 16, b"\x01\x02\x03")
    assert api.read_memory(first.id, RAM_BASE + 15, 5) == b"\x00\x01\x02\x03\x00"
    metrics = api.metrics(first.id)
    assert metrics.vcpus[0].exits == {"MmioRead": 7, "Halt": 2} and metrics.devices.per_device["uart0"]
    text = api.prometheus_text()
    assert 'axvisor_vm_state{name="one",state="Running",vm="1"} 1.0' in text
    assert 'axvisor_vm_vcpu_exits_total{kind="MmioRead",name="one",vcpu="0",vm="1"} 7.0' in text
    assert api.stop(first.id, force=True, graceful=True).state is VMState.STOPPED
    assert manager.calls[-1] == f"stop {first.id} force=True graceful=True"
    assert [info.id for info in api.list()] == [second.id]  # Stopped ones only with all
    api.delete(first.id, keep_data=True)
    assert manager.calls[-1] == f"delete {first.id} force=False keep_data=True"
    assert api.ids() == [second.id]


def test_errors_name_the_state_the_field_or_the_id(api: Client) -> None:
    vm = api.create(CONFIG, text=True)
    with pytest.raises(ApiError) as caught:
        api.resume(vm.id)
    assert caught.value.http_status == 409 and caught.value.state is VMState.READY
    assert "is Ready: cannot resume" in str(caught.value)
    with pytest.raises(ApiError) as caught:
        api.registers(vm.id, 0)
    assert caught.value.http_status == 409
    with pytest.raises(ApiError) as caught:
        api.get(99)
    assert (caught.value.http_status, str(caught.value)) == (404, "no VM with id 99")
    with pytest.raises(ApiError) as caught:
        api.read_memory(vm.id, RAM_BASE, 2 << 20)
    assert (caught.value.http_status, caught.value.field) == (400, "size")
    with pytest.raises(ApiError) as caught:
        api.create("[base]\nid = 1\n", text=True)
    assert (caught.value.http_status, caught.value.field) == (400, "config")


@pytest.mark.parametrize(
    "method,target,body,content_type,field",
    [
        ("POST", "/api/vms", b"{not json", "application/json", "body"),
        ("POST", "/api/vms", b'{"path": "a", "config": "b"}', "application/json", "path"),
        ("POST", "/api/vms", b'{"path": "a", "colour": 1}', "application/json", "colour"),
        ("POST", "/api/vms", b'{"config": "[base]\\nname=\\"x\\"", "cpus": 0}', "application/json", "cpus"),
        ("POST", "/api/vms", b'{"config": "[base]\\nname=\\"x\\"", "mem": true}', "application/json", "mem"),
        ("POST", "/api/vms", b"", "application/toml", "config"),
        ("POST", "/api/vms", b"\xff\xfe", "application/toml", "config"),
        ("GET", "/api/vms/abc", None, None, "id"),
        ("GET", "/api/vms/-1", None, None, "id"),
        ("GET", "/api/vms?all=maybe", None, None, "all"),
        ("POST", "/api/vms/1/stop?forse=1", None, None, "forse"),
        ("GET", "/api/vms/1/memory?size=4", None, None, "gpa"),
        ("GET", "/api/vms/1/memory?gpa=0x80000000", None, None, "size"),
        ("GET", "/api/vms/1/memory?gpa=0x80000000&size=0", None, None, "size"),
        ("PUT", "/api/vms/1/memory?gpa=0x80000000", b"", "application/octet-stream", "data"),
        ("PUT", "/api/vms/1/memory?gpa=0x80000000&size=3", b"ab", "application/octet-stream", "size"),
        ("GET", "/api/vms/1/translate?vcpu=0", None, None, "gva"),
        ("GET", "/api/vms/1/vcpus/x/registers", None, None, "vcpu"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    api: Client, method: str, target: str, body: bytes | None, content_type: str | None, field: str
) -> None:
    api.create(CONFIG, text=True)
    with pytest.raises(ApiError) as caught:
        api.request(method, target, body=body, content_type=content_type)
    assert (caught.value.http_status, caught.value.field) == (400, field), str(caught.value)


def test_oversized_memory_write_is_refused_before_it_is_read(api: Client) -> None:
    vm = api.create(CONFIG, text=True)
    with pytest.raises(ApiError) as caught:
        api.write_memory(vm.id, RAM_BASE, bytes((1 << 20) + 1))
    assert caught.value.http_status == 400 and caught.value.field == "data"


def test_unknown_routes_and_methods_answer_json(api: Client) -> None:
    with pytest.raises(ApiError) as caught:
        api.request("GET", "/api/nothing")
    assert caught.value.http_status == 404 and "no such route" in str(caught.value)
    with pytest.raises(ApiError) as caught:
        api.request("PATCH", "/api/vms")
    assert caught.value.http_status == 405


def test_malformed_http_gets_400_and_the_server_goes_on(served: tuple[FakeManager, Path], api: Client) -> None:
    _, path = served
    for garbage in (
        b"GARBAGE \x00\x01 nonsense\r\n\r\n",
        b"GET /api/vms HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"GET /api/vms HTTP/1.1\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n",
    ):
        status_line = raw_request(path, garbage).split(b"\r\n", 1)[0]
        assert status_line.split()[1:2] in ([b"400"], [b"431"]), status_line
    raw_request(path, b"POST /api/vms HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort", answer=False)
    assert api.list(all=True) == []


def test_two_clients_at_once(served: tuple[FakeManager, Path]) -> None:
    _, path = served
    failures: list[BaseException] = []
    created: list[int] = []

    def worker() -> None:
        try:
            with Client.unix(path, timeout=10) as client:
                for _ in range(20):
                    vm = client.create(CONFIG, text=True)
                    created.append(vm.id)
                    assert client.start(vm.id).state is VMState.RUNNING
                    assert client.get(vm.id).state is VMState.RUNNING
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    with Client.unix(path) as client:
        assert sorted(info.id for info in client.list(all=True)) == sorted(created)
        assert len(created) == 40


def test_a_manager_bug_is_a_500_and_the_server_survives(
    served: tuple[FakeManager, Path], api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager, _ = served

    def broken(vm_id: int) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(manager, "get", broken)
    with pytest.raises(ApiError) as caught:
        api.get(1)
    assert caught.value.http_status == 500 and "ZeroDivisionError: oops" in str(caught.value)
    assert api.list(all=True) == []


def test_tcp_needs_the_bearer_token(short_dir: Path) -> None:
    manager = FakeManager()
    tcp = listen.bind_tcp("127.0.0.1", 0)
    port = tcp.getsockname()[1]
    unix_path = short_dir / "t.sock"
    with ApiServer(manager, [listen.bind_unix(unix_path), tcp], token="s3cret", unix_path=unix_path):  # type: ignore[arg-type]
        with Client.tcp("127.0.0.1", port, "s3cret") as good:
            assert good.list() == []
        for token in ("wrong", ""):
            with Client.tcp("127.0.0.1", port, token) as bad, pytest.raises(ApiError) as caught:
                bad.list()
            assert caught.value.http_status == 401
        with Client.unix(unix_path) as local:  # the 0600 socket is its own guard
            assert local.list() == []
        with Client.tcp("127.0.0.1", port, "wrong") as bad, pytest.raises(ApiError) as caught:
            bad.console(1)
        assert caught.value.http_status == 401
    assert not unix_path.exists()  # removed when the server closed


def test_listen_accepts_only_loopback_and_a_token(short_dir: Path) -> None:
    assert listen.parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert listen.parse_listen("[::1]:0") == ("::1", 0)
    with pytest.raises(UserError, match="only a loopback address"):
        listen.parse_listen("0.0.0.0:80")
    with pytest.raises(UserError, match="expected ADDRESS:PORT"):
        listen.parse_listen("localhost")
    (short_dir / "empty").write_text("\n")
    with pytest.raises(UserError, match="--token-file .*empty"):
        listen.read_token(short_dir / "empty")
    (short_dir / "token").write_text("abc\n")
    assert listen.read_token(short_dir / "token") == "abc"


def test_console_websocket_history_input_and_end(served: tuple[FakeManager, Path], api: Client) -> None:
    vm = api.create(CONFIG, text=True)
    api.start(vm.id)
    with api.console(vm.id) as console:
        assert console.read_until(b"=> ", timeout=10) == b"booted\r\n=> "
        console.send(b"version\n")
        assert console.read_until(b"VERSION\n", timeout=10) == b"VERSION\n"
        api.delete(vm.id, force=True)
        assert console.recv(10) == b""  # the server closed it: the VM is gone
    with pytest.raises(ApiError) as caught:
        api.console(vm.id)
    assert caught.value.http_status == 404


def test_no_server_is_one_line(short_dir: Path) -> None:
    with Client.unix(short_dir / "none.sock") as client, pytest.raises(ServerUnreachable, match="no socket there"):
        client.list()
