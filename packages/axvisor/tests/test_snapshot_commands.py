"""``vm snapshot`` and ``vm create --restore`` through the shell's dispatcher and the HTTP API
(client and server), over an in-memory manager that records what it was asked: the directory
made absolute, the flags carried, misuse refused with status 2 or a 400 naming the field."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from axvisor.api import listen
from axvisor.api.server import ApiServer
from axvisor.client import ApiError, Client
from axvisor.manager import BadRequest, VmInfo
from axvisor.vmctl import Session, execute, parse_line
from axvisor.vmctl.grammar import GrammarError
from axvm import VMState

from .fake_manager import FakeManager

CONFIG = '[base]\nid = 1\nname = "fake"\ncpu_num = 1\n'


class SnapshotManager(FakeManager):
    """FakeManager plus snapshot and create(restore=...), recording their arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any, ...]] = []  # type: ignore[misc]

    def snapshot(self, vm_id: int, directory: str, stop: bool = False, timeout: float = 10.0) -> VmInfo:
        vm = self._vm(vm_id)
        if not Path(directory).is_absolute():
            raise BadRequest("dir", f"{directory}: not absolute")
        self.calls.append(("snapshot", vm_id, directory, stop))
        if stop:
            vm.state = VMState.STOPPED
        return vm.info()

    def create(self, config: str | Path, *, restore: str | None = None, force: bool = False, **kw: Any) -> VmInfo:
        if restore is None:
            return super().create(config, **kw)
        self.calls.append(("restore", restore, force))
        return super().create(CONFIG, text=True)


def _front(tmp_path: Path) -> tuple[SnapshotManager, io.StringIO, Session]:
    manager = SnapshotManager()
    out = io.StringIO()
    session = Session(manager, Console(file=out, width=200), lambda i, b: None, lambda q: False, tmp_path)
    return manager, out, session


def _run(session: Session, line: str) -> int:
    command = parse_line(line)
    assert command is not None
    return execute(command, session)


def test_shell_snapshot_and_restore(tmp_path: Path) -> None:
    manager, out, session = _front(tmp_path)
    vm_id = manager.create(CONFIG, text=True).id
    assert _run(session, f"vm snapshot {vm_id} saved --stop") == 0
    assert manager.calls[-1] == ("snapshot", vm_id, str(tmp_path / "saved"), True)
    assert f"saved VM {vm_id} 'fake' to {tmp_path / 'saved'} (Stopped)" in out.getvalue()
    assert _run(session, "vm create --restore saved -f") == 0
    assert manager.calls[-1] == ("restore", str(tmp_path / "saved"), True)
    assert "from snapshot saved" in out.getvalue()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("vm create", "give one or more CONFIG files, or --restore DIR"),
        ("vm create --restore d vm.toml", "give no CONFIG, -n, -c or -m with it"),
        ("vm create --restore d -n other", "give no CONFIG, -n, -c or -m with it"),
    ],
)
def test_create_misuse_is_status_2(tmp_path: Path, line: str, message: str) -> None:
    manager, out, session = _front(tmp_path)
    assert _run(session, line) == 2
    assert message in out.getvalue() and manager.calls == []


def test_snapshot_needs_a_directory() -> None:
    with pytest.raises(GrammarError, match="DIR"):
        parse_line("vm snapshot 1")


@pytest.fixture
def api() -> Iterator[tuple[SnapshotManager, Client]]:
    folder = Path(tempfile.mkdtemp(prefix="axsnap-"))
    manager = SnapshotManager()
    sock = folder / "api.sock"
    try:
        with ApiServer(manager, [listen.bind_unix(sock)], unix_path=sock), Client.unix(sock, timeout=10) as client:  # type: ignore[arg-type]
            yield manager, client
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_api_snapshot_and_restore_routes(api: tuple[SnapshotManager, Client]) -> None:
    manager, client = api
    vm_id = client.create(CONFIG, text=True).id
    info = client.snapshot(vm_id, "/srv/snap", stop=True)
    assert info.state is VMState.STOPPED and manager.calls[-1] == ("snapshot", vm_id, "/srv/snap", True)
    restored = client.create("", restore="/srv/snap", force=True)
    assert restored.id != vm_id and manager.calls[-1] == ("restore", "/srv/snap", True)
    with pytest.raises(ApiError, match="dir"):
        client.request("POST", f"/api/vms/{vm_id}/snapshot", None, b'{"dir": 3}', "application/json")
    with pytest.raises(ApiError, match="stop"):
        client.request("POST", f"/api/vms/{vm_id}/snapshot", None, b'{"dir": "/x", "stop": "yes"}', "application/json")
    with pytest.raises(ApiError, match="path"):
        client.request("POST", "/api/vms", None, b'{"restore": "/x", "path": "/y"}', "application/json")
    with pytest.raises(ApiError, match="no VM with id 99"):
        client.snapshot(99, "/srv/other")
