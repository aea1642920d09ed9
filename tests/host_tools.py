"""Host tools some tests need. A test skips where one is missing, naming it, unless
AXVISOR_REQUIRE_TOOLS requires it ("1": every tool; else names, separated by spaces or commas),
as CI does where the tools are installed: then the test fails instead. Each package's tests keep
their own copy of this file (they run without the workspace); tests/test_host_tools.py checks
that the copies stay the same."""

from __future__ import annotations

import os
import shutil

import pytest


def missing(*tools: str) -> list[str]:
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"  # mke2fs is in sbin, off a user's PATH
    return [tool for tool in tools if shutil.which(tool, path=path) is None]


def required(tools: list[str]) -> bool:
    wanted = os.environ.get("AXVISOR_REQUIRE_TOOLS", "").replace(",", " ").split()
    return "1" in wanted or bool(set(tools) & set(wanted))


def needs(*tools: str, why: str) -> pytest.MarkDecorator:
    """A mark that skips where a tool is missing; where it is required, the test runs and fails."""
    gone = missing(*tools)
    return pytest.mark.skipif(bool(gone) and not required(gone), reason=f"{', '.join(gone)} missing: {why}")


def require(*tools: str, why: str) -> None:
    """Called in a test or fixture: skip where a tool is missing, fail where it is required."""
    gone = missing(*tools)
    if gone and required(gone):
        pytest.fail(f"AXVISOR_REQUIRE_TOOLS requires {', '.join(gone)}, missing here: {why}", pytrace=False)
    if gone:
        pytest.skip(f"{', '.join(gone)} missing: {why}")
