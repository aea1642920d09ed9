"""Typed reads of TOML values that record a problem instead of raising on the first one.

A config with three mistakes should get three lines, so each reader returns a placeholder
(None) on error and the loader reports everything it found at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigProblem

T = TypeVar("T")
MISSING: Any = object()

_TYPE_NAMES = {int: "an integer", str: "a string", list: "an array", dict: "a table", bool: "a boolean"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_part(name: str) -> str:
    """``name`` as a dotted TOML key writes it: bare, or quoted with every unprintable character
    escaped, so a key the user chose (with a line break, a dot, a quote) still gives one line."""
    if _BARE_KEY.fullmatch(name):
        return name
    return '"' + "".join(_escape(ch) for ch in name) + '"'


def _escape(ch: str) -> str:
    if ch in '"\\':
        return "\\" + ch
    if ch.isprintable():
        return ch
    return f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}"


def describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value:#x}" if value > 9 else f"integer {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class FieldReader:
    """Collects problems for one config file while its fields are read."""

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self.problems: list[ConfigProblem] = []
        self.warnings: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.file, key, message))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(str(ConfigProblem(self.file, key, message)))

    def typed(self, table: dict[str, Any], key: str, path: str, kind: type[T], required: bool = True) -> T | None:
        value = table.get(key, MISSING)
        if value is MISSING:
            if required:
                self.problem(path, f"missing; expected {_TYPE_NAMES[kind]}")
            return None
        return self.check_type(value, path, kind)

    def check_type(self, value: object, path: str, kind: type[T]) -> T | None:
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            self.problem(path, f"expected {_TYPE_NAMES[kind]}, got {describe(value)}")
            return None
        return value

    def uint(self, table: dict[str, Any], key: str, path: str, required: bool = True, minimum: int = 0,
             maximum: int = (1 << 64) - 1) -> int | None:
        value = self.typed(table, key, path, int, required)
        return self.check_range(value, path, minimum, maximum)

    def check_range(self, value: int | None, path: str, minimum: int, maximum: int) -> int | None:
        if value is None:
            return None
        if not minimum <= value <= maximum:
            self.problem(path, f"expected an integer in {minimum:#x}..{maximum:#x}, got {value:#x}")
            return None
        return value

    def choice(self, table: dict[str, Any], key: str, path: str, choices: dict[str, T], default: T) -> T:
        value = self.typed(table, key, path, str, required=False)
        if value is None:
            return default
        if value not in choices:
            self.problem(path, f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
            return default
        return choices[value]

    def int_list(self, table: dict[str, Any], key: str, path: str) -> tuple[int, ...] | None:
        values = self.typed(table, key, path, list, required=False)
        if values is None:
            return None
        result = [self.check_type(item, f"{path}[{i}]", int) for i, item in enumerate(values)]
        return None if any(item is None for item in result) else tuple(result)  # type: ignore[arg-type]

    def path(self, table: dict[str, Any], key: str, path: str, base_dir: Path, required: bool = False) -> Path | None:
        value = self.typed(table, key, path, str, required)
        if value is None:
            return None
        if not value:
            self.problem(path, "expected a file path, got an empty string")
            return None
        try:
            return (base_dir / Path(value).expanduser()).resolve()
        except (RuntimeError, ValueError, OSError) as error:  # "~nosuchuser", a NUL byte
            self.problem(path, f"cannot use {value!r} as a path ({error}); expected a file path")
            return None

    def record(self, value: object, path: str, names: tuple[str, ...], required: int,
               build: Callable[..., T]) -> T | None:
        """Read an axvmconfig struct written either as an array (serde's tuple form) or a table."""
        if isinstance(value, list):
            if not required <= len(value) <= len(names):
                count = f"{required}" if required == len(names) else f"{required} to {len(names)}"
                self.problem(path, f"expected {count} items [{', '.join(names)}], got {len(value)}")
                return None
            fields = dict(zip(names, value, strict=False))
        elif isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            if unknown:
                self.problem(f"{path}.{key_part(unknown[0])}", f"unknown key; expected one of {', '.join(names)}")
                return None
            missing = [name for name in names[:required] if name not in value]
            if missing:
                self.problem(f"{path}.{missing[0]}", "missing")
                return None
            fields = dict(value)
        else:
            self.problem(path, f"expected an array [{', '.join(names)}] or a table, got {describe(value)}")
            return None
        return build(**fields)
