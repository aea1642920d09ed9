"""The AXVISOR_REQUIRE_TOOLS switch (host_tools.py): where CI requires a tool, a test that would
skip for want of it fails; and every package's copy of the helper is the same file."""

from __future__ import annotations

from pathlib import Path

import pytest

from .host_tools import needs, require

ROOT = Path(__file__).parent.parent
ABSENT = "axvisor-no-such-tool"


def test_every_copy_of_the_helper_is_the_same() -> None:
    copies = sorted((ROOT / "packages").glob("*/tests/host_tools.py"))
    assert [copy.parent.parent.name for copy in copies] == ["axvcpu", "axvisor", "axvm"]
    for copy in copies:
        assert copy.read_text() == (ROOT / "tests" / "host_tools.py").read_text(), f"{copy} differs"


def test_a_missing_tool_skips_naming_it_when_nothing_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AXVISOR_REQUIRE_TOOLS", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{ABSENT} missing: why"):
        require("sh", ABSENT, why="why")
    mark = needs(ABSENT, why="why")
    assert mark.args == (True,) and mark.kwargs["reason"] == f"{ABSENT} missing: why"


@pytest.mark.parametrize("value", ["1", f"gcc,{ABSENT}", f"gcc {ABSENT}"])
def test_a_required_missing_tool_fails(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AXVISOR_REQUIRE_TOOLS", value)
    with pytest.raises(pytest.fail.Exception, match=f"AXVISOR_REQUIRE_TOOLS requires {ABSENT}, missing here: why"):
        require(ABSENT, why="why")
    assert needs(ABSENT, why="why").args == (False,)  # the test runs, and fails without the tool


def test_a_tool_required_by_name_only_leaves_others_to_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AXVISOR_REQUIRE_TOOLS", "gcc dtc")
    with pytest.raises(pytest.skip.Exception):
        require(ABSENT, why="why")


def test_a_present_tool_neither_skips_nor_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AXVISOR_REQUIRE_TOOLS", "1")
    require("sh", why="why")
    assert needs("sh", why="why").args == (False,)
