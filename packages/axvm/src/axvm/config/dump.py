"""``AxVMCrateConfig`` back to the plain TOML document axvmconfig reads.

Derived from the schema's dataclasses, so a key the schema gains is written without a change
here and a dump loads back to the same config. Regions and devices are written in serde's array
form, the form AxVisor's own configs use; enums as their config values; paths relative to
``relative_to`` (the output file's folder) when given.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path
from typing import Any

from .schema import SECTIONS, AxVMCrateConfig, file_keys


def config_to_dict(config: AxVMCrateConfig, relative_to: Path | None = None) -> dict[str, Any]:
    """The TOML document of ``config``: every field of every section, as the schema's field
    metadata says; loading it gives ``config`` back (the sections, not ``source``/``warnings``)."""

    def value(item: object) -> Any:
        if isinstance(item, enum.Enum):
            return item.value
        if isinstance(item, Path):
            return str(item) if relative_to is None else os.path.relpath(item, relative_to)
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return [value(getattr(item, name)) for name in file_keys(type(item))]  # serde's array form
        if isinstance(item, tuple):
            return [value(element) for element in item]
        return item

    document: dict[str, Any] = {}
    for section in SECTIONS:
        record = getattr(config, section)
        table: dict[str, Any] = {}
        for spec in dataclasses.fields(record):
            item = getattr(record, spec.name)
            if item is None or spec.metadata.get("omit_default") and item == _default(spec):
                continue
            if spec.metadata.get("as_table"):
                table[spec.name] = {key: value(entry) for key, entry in item}
            else:
                table[spec.name] = value(item)
        document[section] = table
    return document


def _default(spec: dataclasses.Field[Any]) -> object:
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default
