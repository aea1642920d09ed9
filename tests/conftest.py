"""Shared fixtures of the workspace tests: the x86 test guests, and KVM availability."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

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
