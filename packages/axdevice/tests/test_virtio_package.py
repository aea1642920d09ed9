"""The virtio package's shape: sans-IO modules, state kept apart from its serialization."""

from __future__ import annotations

from pathlib import Path

import axdevice.virtio as virtio

ROOT = Path(virtio.__file__).parent
# The raw-file disk backend and how it opens and locks images: the modules allowed to touch the host.
INJECTED_IO = {ROOT / "blk" / name for name in ("file_backend.py", "image.py", "image_lock.py")}


def sources() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted(ROOT.rglob("*.py"))}


def test_device_and_queue_modules_are_sans_io() -> None:
    for path, source in sources().items():
        if path in INJECTED_IO:
            continue
        for module in ("os", "socket", "select", "threading"):
            assert f"import {module}" not in source, path
            assert f"from {module} " not in source, path


def test_no_device_imports_the_serializer() -> None:
    for path, source in sources().items():
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert not any("serialize" in line for line in imports), path


def test_every_device_has_the_same_files() -> None:
    for device in ("blk", "console", "net", "rng"):
        names = {path.name for path in (ROOT / device).glob("*.py")}
        assert {"__init__.py", "device.py", "request.py", "state.py"} <= names, device


LAZY_RE_EXPORT = ("if TYPE_CHECKING:", "def __getattr__(name: str) -> object:")
"""An __init__ may re-export on first use (PEP 562): names for the type checker, then the lookup."""


def test_init_files_only_re_export() -> None:
    for path in ROOT.rglob("__init__.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            assert line in LAZY_RE_EXPORT or not line.startswith(("def ", "class ", "if ", "for ")), path
