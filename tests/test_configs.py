"""Every config shipped in configs/vms loads and builds a VM (on the scripted backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from axdevice import RecordingNetBackend
from axvisor import UserError
from axvisor.net.spec import parse_netdev_spec
from axvisor.plan import plan_vm
from axvm import AxVM, ScriptedBackend, load_config
from axvm.host import LocalHost


class CheckingHost(LocalHost):
    """Checks each netdev spec and disk path without opening sockets or needing the images."""

    def open_disk(self, path: Path, read_only: bool):
        assert path.name.endswith(".ext4"), path
        return MemoryDisk()

    def open_netdev(self, spec: str):
        parse_netdev_spec(spec)
        return FakeLink()


class MemoryDisk:
    size_bytes = 1 << 20
    read_only = False
    serial = "memory"

    def readv(self, offset, views):
        return 0

    def writev(self, offset, views):
        return 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeLink(RecordingNetBackend):
    def start(self, deliver) -> None:
        pass

    def rx_ready(self) -> None:
        pass

    def close(self) -> None:
        pass

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
    vm = AxVM(config, ScriptedBackend(), host=CheckingHost())
    assert vm.warnings == [], vm.warnings
    assert vm.consoles, "every shipped VM has a console"
    vm.stop()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_passes_what_run_checks(path: Path) -> None:
    """plan_vm is what check and run both do before a vCPU starts: images placed without overlaps
    (those already fetched or built), devices composed, host bounds. Images not made yet are
    warnings only. Host state, not the config, may still refuse it: an x86 config on a host
    without KVM, or a shipped disk that a VM started by hand on this machine is using."""
    config = load_config(path)
    try:
        plan = plan_vm(config, missing_images_ok=True)
    except UserError as error:
        lines = str(error).splitlines()
        host_state = [line for line in lines if ": base.backend: " in line or "is in use by another VM" in line]
        assert lines == host_state, lines
        assert config.base.arch.value == "x86_64" or all("in use" in line for line in lines), lines
        return
    assert all("does not exist" in warning for warning in plan.warnings), plan.warnings
