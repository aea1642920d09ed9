"""Every config shipped in configs/vms loads and builds a VM (on the scripted backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from axvm import AxVM, ScriptedBackend, load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs" / "vms").glob("*.toml"))


def test_there_are_configs() -> None:
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_loads_and_composes(path: Path) -> None:
    config = load_config(path)
    name = path.stem
    os_name, arch, _board, smp = name.rsplit("-", 3)
    assert config.base.arch.value == arch, "the file name follows <os>-<arch>-<board>-smp<N>"
    assert smp == f"smp{config.base.cpu_num}"
    assert config.warnings == (), config.warnings
    vm = AxVM(config, ScriptedBackend())
    assert vm.warnings == [], vm.warnings
    assert vm.consoles, "every shipped VM has a console"
    vm.stop()
