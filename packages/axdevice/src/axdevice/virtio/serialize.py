"""Saved virtio state to plain data and back: the one module that knows how state is stored.

``to_dict`` turns any of the state dataclasses (``VirtioMmioState``, ``QueueState``,
``VirtioBlkState``, ...) into dicts, lists, ints, bools and strings (bytes become hex strings),
ready for JSON or TOML; ``from_dict`` rebuilds the dataclass, refusing unknown keys and values
of the wrong type with a ValueError naming the field. Whether the values make sense is the
``from_state`` constructors' business. Devices and the transport never import this module.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

_T = TypeVar("_T")


def to_dict(state: object) -> dict[str, Any]:
    """A plain-data copy of the state dataclass ``state``."""
    if not dataclasses.is_dataclass(state) or isinstance(state, type):
        raise TypeError(f"{type(state).__name__} is not a state dataclass")
    return {f.name: _encode(getattr(state, f.name)) for f in dataclasses.fields(state)}


def _encode(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return int(value)  # IntFlag and IntEnum values become plain ints
    raise TypeError(f"cannot serialize {type(value).__name__} {value!r}")


def from_dict(cls: type[_T], data: Mapping[str, Any]) -> _T:
    """Rebuild a ``cls`` from ``to_dict`` output; missing keys take the field's default."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    values = {name: _decode(f"{cls.__name__}.{name}", hints[name], data[name]) for name in names if name in data}
    return cls(**values)


def _decode(where: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:  # tuple[X, ...] (the PLIC's and CLINT's per-context and per-hart values)
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{where}: cannot decode a {hint!r}")
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_decode(f"{where}[{i}]", args[0], item) for i, item in enumerate(value))
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_decode(f"{where}[{i}]", item_hint, item) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a table, got {value!r}")
        key_hint, item_hint = typing.get_args(hint)
        return {
            _decode(f"{where} key", key_hint, key): _decode(f"{where}[{key!r}]", item_hint, item)
            for key, item in value.items()
        }
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)  # type: ignore[arg-type]
    if hint is bytes:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a hex string, got {value!r}")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not hex") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: cannot decode a {hint!r}")
