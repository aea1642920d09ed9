"""axvisor.sh's own commands as a user runs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent


def sh(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "axvisor.sh"), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_every_command() -> None:
    result = sh("help")
    assert result.returncode == 0
    for command in ("setup", "test", "run", "check", "defconfig", "build", "clean"):
        assert f"  {command}" in result.stdout


def test_unknown_command_exits_2() -> None:
    result = sh("frobnicate")
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr


def test_check_passes_on_shipped_configs() -> None:
    result = sh("check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok: ") == len(list((ROOT / "configs" / "vms").glob("*.toml")))


def test_check_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = sh("check", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'nope.toml'}: no such file; expected a VM config (.toml)"


def test_run_with_a_broken_default_list_is_one_line(tmp_path: Path) -> None:
    hvconfig = ROOT / ".hvconfig.toml"
    saved = hvconfig.read_text() if hvconfig.exists() else None
    try:
        hvconfig.write_text("vms = 3\n")
        result = sh("run")
        assert result.returncode == 2
        assert "vms: expected a non-empty array" in result.stderr and "Traceback" not in result.stderr
    finally:
        if saved is None:
            hvconfig.unlink()
        else:
            hvconfig.write_text(saved)
