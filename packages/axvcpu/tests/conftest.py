"""Hypothesis settings for this package's tests: a fixed budget and a fixed seed in CI.

Property tests choose their own ``max_examples`` (sized to a few seconds each); this profile
makes every run draw the same examples (``derandomize``), so CI time and results do not vary,
and keeps no example database between runs. ``HYPOTHESIS_PROFILE=explore`` draws fresh random
examples on every run (same budgets), for hunting bugs locally.
"""

from __future__ import annotations

import os
import shlex
import sysconfig
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from .host_tools import require

if TYPE_CHECKING:
    from .soft_machine import SoftMachine

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# -- the soft CPU's two engines ------------------------------------------------------------------

SOFT_ENGINE_MODULES = {"test_soft_contract", "test_soft_riscv", "test_soft_clock"}
"""Modules whose tests run once on each soft CPU engine: the C hooks and the pure-Python
reference (``axvcpu.backends.soft.fast_slice``)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "soft_engine" in metafunc.fixturenames and metafunc.module.__name__.rpartition(".")[2] in SOFT_ENGINE_MODULES:
        metafunc.parametrize("soft_engine", ["c", "python"], indirect=True)


@pytest.fixture(autouse=True)
def soft_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The engine this test's soft backends get (``AXVISOR_SOFT_ENGINE``); None: the default."""
    engine: str | None = getattr(request, "param", None)
    if engine is None:
        return None
    if engine == "c":
        soft_engine_available()
    monkeypatch.setenv("AXVISOR_SOFT_ENGINE", engine)
    return engine


def soft_engine_available() -> None:
    """Skip (or fail, where AXVISOR_REQUIRE_TOOLS says) where the C engine's compiler is absent."""
    compiler = (shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "gcc") or ["gcc"])[0]
    require(compiler, why="the soft CPU's C engine is compiled at first use")


@pytest.fixture
def machines() -> Iterator[list[SoftMachine]]:
    """Soft riscv machines a test builds (append them): closed after the test."""
    made: list[SoftMachine] = []
    yield made
    for machine in made:
        machine.close()
