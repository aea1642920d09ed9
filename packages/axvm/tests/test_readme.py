"""The README's example runs as written and ends the way it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLES = re.findall(r"```python\n(.*?)```", (Path(__file__).parent.parent / "README.md").read_text(), re.S)


def test_example_powers_off_through_debug_exit(capsys: pytest.CaptureFixture[str]) -> None:
    (example,) = EXAMPLES
    exec(compile(example, "README.md example", "exec"), {})
    assert "SystemDown(exit_code=7, reset=False)" in capsys.readouterr().out
