"""``vm gdb ID PORT`` in the shell grammar and its dispatch (a fake manager), and the address
forms the stub accepts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from axvisor.gdb.server import GdbAddress, GdbAddressError, parse_address
from axvisor.vmctl import Session, execute, parse_line
from axvisor.vmctl.grammar import BY_NAME, Command, GrammarError, help_text

from .fake_manager import FakeManager


class GdbFakeManager(FakeManager):
    def __init__(self) -> None:
        super().__init__()
        self.gdb: list[tuple[int, str]] = []

    def gdb_serve(self, vm_id: int, address: str) -> str:
        self._vm(vm_id)
        self.gdb.append((vm_id, address))
        return "tcp:127.0.0.1:" + address.rsplit(":", 1)[1] if address.startswith("tcp:") else address


def test_grammar() -> None:
    assert parse_line("vm gdb 2 1234") == Command("gdb", ("2", "tcp:1234"))
    assert parse_line("vm gdb 2 unix:/tmp/g.sock") == Command("gdb", ("2", "unix:/tmp/g.sock"))
    assert parse_line("vm gdb 2 tcp:0.0.0.0:9") == Command("gdb", ("2", "tcp:0.0.0.0:9"))
    for bad in ("vm gdb 2 99999", "vm gdb 2 http:1", "vm gdb 2"):
        with pytest.raises(GrammarError, match="vm gdb ID PORT"):
            parse_line(bad)
    assert BY_NAME["gdb"].usage == "vm gdb ID PORT"
    assert "vm gdb" in help_text()


def test_dispatch(tmp_path: Path) -> None:
    manager = GdbFakeManager()
    out = io.StringIO()
    session = Session(manager, Console(file=out, width=200), lambda i, b: None, lambda q: False, tmp_path)
    config = tmp_path / "vm.toml"
    config.write_text('[base]\nid = 1\nname = "fake"\ncpu_num = 1\n')
    for line in (f"vm create {config}", "vm gdb 1 1234"):
        command = parse_line(line)
        assert command is not None
        assert execute(command, session) == 0, out.getvalue()
    assert manager.gdb == [(1, "tcp:1234")]
    assert "gdb stub for VM 1 on tcp:127.0.0.1:1234; in gdb-multiarch: target remote 127.0.0.1:1234" in out.getvalue()
    command = parse_line("vm gdb 7 1234")
    assert command is not None and execute(command, session) == 1  # no VM 7


def test_addresses() -> None:
    assert parse_address("tcp:1234") == GdbAddress("tcp", "127.0.0.1", 1234, "")
    assert parse_address("1234") == GdbAddress("tcp", "127.0.0.1", 1234, "")
    assert parse_address("tcp:0.0.0.0:1") == GdbAddress("tcp", "0.0.0.0", 1, "")
    assert parse_address("unix:/run/g") == GdbAddress("unix", "", 0, "/run/g")
    for bad in ("tcp:", "tcp:70000", "unix:", "udp:1", "x"):
        with pytest.raises(GdbAddressError, match="expected tcp:PORT"):
            parse_address(bad)
