"""The one dispatcher of the vm commands (shell and ctl) over an in-memory manager: what each
command prints, that several IDs go on after a failure, that errors are one line and statuses
say what happened (0 ok, 1 refused, 2 misused)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from axvisor.vmctl import ExitShell, Session, execute, parse_line
from axvm import VMState

from .fake_manager import RAM_BASE, FakeManager

CONFIG = '[base]\nid = 1\nname = "fake"\ncpu_num = 1\n'


class Front:
    def __init__(self, tmp_path: Path, confirm: bool = False) -> None:
        self.manager = FakeManager()
        self.out = io.StringIO()
        self.attached: list[int] = []
        self.config = tmp_path / "vm.toml"
        self.config.write_text(CONFIG)
        self.session = Session(
            self.manager,
            Console(file=self.out, width=120),
            lambda i, b: self.attached.append(i),
            lambda question: confirm,
            tmp_path,
        )

    def run(self, line: str) -> tuple[int, str]:
        self.out.seek(0)
        self.out.truncate()
        command = parse_line(line)
        assert command is not None
        return execute(command, self.session), self.out.getvalue()


def test_create_start_list_show(tmp_path: Path) -> None:
    front = Front(tmp_path)
    status, text = front.run("vm create -n web vm.toml")
    assert status == 0 and "created VM 1 'web': riscv64, 1 vCPU(s), 1 MiB, soft (Ready)" in text
    assert front.manager.vms[1].path == str(tmp_path / "vm.toml")  # made absolute against the session's cwd
    status, text = front.run("vm create -n web vm.toml")
    assert status == 1 and "a VM named 'web' exists (id 1); add -f" in text
    assert front.run("vm create -f -n web vm.toml")[0] == 0
    status, text = front.run("vm start")
    assert status == 0 and "started VM 1 'web'" in text and "started VM 2 'web'" in text
    status, text = front.run("vm list")
    header, *rows = text.splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "ARCH", "BACKEND", "CPUS", "MEMORY", "UPTIME"]
    assert rows[0].split()[:3] == ["1", "web", "Running"]
    status, text = front.run("vm list --format json")
    assert [vm["state"] for vm in json.loads(text)] == ["Running", "Running"]
    status, text = front.run("vm show -s 1")
    assert "vCPU 0" in text and "MmioRead 7" in text and "console bytes" in text


def test_several_ids_go_on_after_a_failure(tmp_path: Path) -> None:
    front = Front(tmp_path)
    front.run("vm create vm.toml")
    front.run("vm create vm.toml")
    front.run("vm start 1")
    status, text = front.run("vm suspend 2 1 9")
    assert status == 1
    lines = text.splitlines()
    assert lines[0] == "error: VM 2 'fake' is Ready: cannot pause (allowed in Running)"
    assert lines[1] == "suspended VM 1 'fake'"
    assert lines[2] == "error: no VM with id 9"
    assert front.manager.vms[1].state is VMState.PAUSED
    assert front.run("vm resume fake")[1].startswith("error: 2 VMs are named 'fake'")


def test_delete_asks_unless_forced(tmp_path: Path) -> None:
    front = Front(tmp_path, confirm=False)
    front.run("vm create vm.toml")
    status, text = front.run("vm delete 1")
    assert status == 1 and "not deleted" in text and 1 in front.manager.vms
    status, text = front.run("vm delete -f --keep-data 1")
    assert status == 0 and front.manager.calls[-1] == "delete 1 force=True keep_data=True"


def test_inspection_and_console(tmp_path: Path) -> None:
    front = Front(tmp_path)
    front.run("vm create vm.toml")
    front.run("vm start 1")
    front.manager.write_memory(1, RAM_BASE, b"AxVisor!")
    status, text = front.run(f"vm mem 1 {RAM_BASE:#x} 16")
    assert text.strip() == "0000000080000000  41 78 56 69 73 6f 72 21  00 00 00 00 00 00 00 00  |AxVisor!........|"
    assert front.run("vm regs 1")[1].startswith("error: VM 1 'fake' is Running: cannot read registers")
    front.run("vm suspend 1")
    assert "pc 0x0000000080200000" in front.run("vm regs 1")[1]
    assert "-> gpa 0x1000" in front.run("vm translate 1 0 0x1000")[1]
    assert front.run("vm console 1")[0] == 0 and front.attached == [1]
    status, text = front.run("vm mem 1 0x10 4")
    assert status == 1 and text.startswith("error: gpa: ")


def test_misuse_is_status_2_and_exit_ends(tmp_path: Path) -> None:
    front = Front(tmp_path)
    status, text = front.run("vm create -n a vm.toml vm.toml")
    assert status == 2 and "names one VM" in text
    assert front.run("vm show nothing")[0] == 2
    with pytest.raises(ExitShell):
        front.run("exit")
