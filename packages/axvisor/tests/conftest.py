"""Hypothesis settings for this package's tests: a fixed budget and a fixed seed in CI; and the
check that no VM a test runs has a device that raised.

Property tests choose their own ``max_examples`` (sized to a few seconds each); this profile
makes every run draw the same examples (``derandomize``), so CI time and results do not vary,
and keeps no example database between runs. ``HYPOTHESIS_PROFILE=explore`` draws fresh random
examples on every run (same budgets), for hunting bugs locally.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from axvm import AxVM

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "device_errors_expected: the test makes a device raise on purpose")


@pytest.fixture(autouse=True)
def no_device_errors(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every VM the test creates ends with no device having raised on a guest access: the bus
    answers such an access as if no device were there, so the guest goes on and only this count
    shows the device's bug."""
    created: list[AxVM] = []
    init = AxVM.__init__

    def recording_init(self: AxVM, *args: Any, **kwargs: Any) -> None:
        created.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(AxVM, "__init__", recording_init)
    yield
    if request.node.get_closest_marker("device_errors_expected") is None:
        errors = {vm.name: vm.buses.device_errors() for vm in created if hasattr(vm, "buses")}
        assert not any(errors.values()), f"devices raised on guest accesses: {errors}"
