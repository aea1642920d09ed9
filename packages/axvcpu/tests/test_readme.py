"""The README's examples run as written (the KVM one only where /dev/kvm is usable)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .kvm_guest import require_kvm

EXAMPLES = re.findall(r"```python\n(.*?)```", (Path(__file__).parent.parent / "README.md").read_text(), re.S)


def test_the_readme_has_its_four_examples() -> None:
    assert len(EXAMPLES) == 4


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    if "backends.kvm" in EXAMPLES[index]:
        require_kvm()
    exec(compile(EXAMPLES[index], f"README.md example {index}", "exec"), {})
    if "SoftRiscvBackend" in EXAMPLES[index] or "SoftAarch64Backend" in EXAMPLES[index]:
        assert "Halt()" in capsys.readouterr().out
