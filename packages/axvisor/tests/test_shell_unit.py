"""``axvisor shell`` without a guest: completion of commands, flags and VM ids, and the shell
reading commands from a pipe (scripts), where bad lines are one error each and it goes on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from axvisor.shell import VmCompleter

from .fake_manager import FakeManager


def completions(manager: FakeManager, text: str) -> list[str]:
    completer = VmCompleter(manager)  # type: ignore[arg-type]
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]


def test_completes_commands_flags_and_vm_ids() -> None:
    manager = FakeManager()
    manager.create('[base]\nname = "a"\n', text=True)
    manager.create('[base]\nname = "b"\n', text=True)
    assert completions(manager, "") == ["vm", "help", "exit", "quit"]
    assert completions(manager, "vm su") == ["suspend"]
    assert completions(manager, "vm stop ")[:2] == ["1", "2"]
    assert "--graceful" in completions(manager, "vm stop ") and "-g" in completions(manager, "vm stop -")
    assert completions(manager, "vm list --f") == ["--format"]
    assert completions(manager, "vm create ") == [
        "--force", "--restore", "--name", "--cpu", "--memory", "-f", "-n", "-c", "-m"
    ]  # fmt: skip
    assert completions(manager, "bogus ") == []


def test_commands_from_a_pipe(tmp_path: Path) -> None:
    script = "vm list -a\nvm frobnicate\n\n# a comment\nvm show 5\nhelp stop\nexit\n"
    env = {**os.environ, "AXVISOR_LOG_DIR": str(tmp_path / "logs"), "AXVISOR_HISTORY_FILE": str(tmp_path / "h")}
    result = subprocess.run(
        [sys.executable, "-m", "axvisor", "shell"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "no VMs" in result.stdout
    assert "error: unknown vm command 'frobnicate'" in result.stdout
    assert "error: no VM with id 5" in result.stdout
    assert "usage: vm stop [-f] [-g] ID..." in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
