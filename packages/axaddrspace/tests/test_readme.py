"""The README's example runs as written, so the documentation cannot drift from the API."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README should carry a python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    assert "0x9000_0000 (4 bytes) is not backed by guest RAM" in capsys.readouterr().out
