"""Shared fixtures of the workspace tests: the x86 test guests, KVM availability, and the check
that no VM a test runs (in this process or as a watched VMM process) had a device that raised."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from axvm import AxVM

from . import vmm_watch

ROOT = Path(__file__).parent.parent
GUESTS = ROOT / "build" / "guests"

# VMs the tests run keep their console logs out of the work tree.
os.environ.setdefault("AXVISOR_LOG_DIR", tempfile.mkdtemp(prefix="axvisor-test-logs-"))


def kvm_problem() -> str | None:
    """Why KVM cannot be used here, or None; importing the backend may build its cffi module."""
    try:
        from axvcpu.backends.kvm import probe
    except Exception as error:  # the backend could not even be built: report it as the reason
        return f"the KVM backend is unavailable: {error}"
    return probe()


@pytest.fixture(scope="session")
def kvm() -> None:
    """Skip only where /dev/kvm is unusable; with AXVISOR_REQUIRE_KVM=1 (CI where it is usable), fail."""
    problem = kvm_problem()
    if problem is None:
        return
    if os.environ.get("AXVISOR_REQUIRE_KVM") == "1":
        pytest.fail(f"AXVISOR_REQUIRE_KVM=1 but KVM is unusable: {problem}")
    pytest.skip(f"KVM unusable here: {problem}")


@pytest.fixture(scope="session")
def guests() -> Path:
    """The x86_64 test guests, built from tests/guests with gcc."""
    subprocess.run([str(ROOT / "tests" / "guests" / "build.sh"), str(GUESTS)], check=True)
    return GUESTS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "device_errors_expected: the test makes a device raise on purpose")


@pytest.fixture(autouse=True)
def no_device_errors(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every VM the test runs ends with no device having raised on a guest access: the bus
    answers such an access as if no device were there, so the guest goes on and only the count
    (in this process) or the VMM's log (see vmm_watch) shows the device's bug."""
    created: list[AxVM] = []
    init = AxVM.__init__

    def recording_init(self: AxVM, *args: Any, **kwargs: Any) -> None:
        created.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(AxVM, "__init__", recording_init)
    vmm_watch.OUTPUTS.clear()
    yield
    if request.node.get_closest_marker("device_errors_expected") is None:
        errors = {vm.name: vm.buses.device_errors() for vm in created if hasattr(vm, "buses")}
        assert not any(errors.values()), f"devices raised on guest accesses: {errors}"
        lines = vmm_watch.device_error_lines()
        assert not lines, "the VMM reported devices raising on guest accesses:\n" + "\n".join(lines)
