"""The layering contract is checked, and a violation of it is caught."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("axaddrspace", "axvcpu", "axdevice", "axvm", "axvisor")


def lint_imports(src_root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(src_root / name) for name in PACKAGES))
    lint = Path(sys.executable).parent / "lint-imports"
    command = [str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=src_root)


def copy_sources(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / "packages" / name / "src", tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_tree_keeps_the_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_sources(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_lower_package_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    root = copy_sources(tmp_path)
    module = root / "axaddrspace" / "axaddrspace" / "flags.py"
    module.write_text(module.read_text() + "\nimport axvm  # a layering violation\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "axaddrspace.flags -> axvm" in result.stdout


def test_axvcpu_importing_axdevice_is_caught(tmp_path: Path) -> None:
    root = copy_sources(tmp_path)
    module = root / "axvcpu" / "axvcpu" / "exits.py"
    module.write_text(module.read_text() + "\nimport axdevice  # the two middle packages are independent\n")
    result = lint_imports(root)
    assert result.returncode != 0 and "axvcpu.exits -> axdevice" in result.stdout
