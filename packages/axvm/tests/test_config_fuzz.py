"""Random config documents into the loader: a config, or ConfigError naming the key, nothing else.

The documents are built from the schema's own keys with values of every TOML type (and of the
right type with odd values: huge or negative integers, paths with "~user" or NUL, names with
line breaks), then written as TOML text, so the parser and the validator both see them. Mutated
copies of a good config cover what a text editor can do to one. Only "ConfigError or a config"
is asserted about validation itself; which values are accepted is the schema's business.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from axvm import AxVMCrateConfig, ConfigError, config_from_dict, config_to_dict, parse_config
from axvm.config.load import EMU_FIELDS, KNOWN_KEYS, MEM_FIELDS

FILE = Path("/nonexistent/axvm-fuzz/vm.toml")  # never read: paths in the config resolve against it
GOOD = """
[base]
id = 3
name = "tiny"
vm_type = 2
cpu_num = 2
arch = "riscv64"
backend = "soft"

[kernel]
entry_point = 0x8020_0000
kernel_path = "images/Image"
kernel_load_addr = 0x8020_0000
bios_path = "fw_jump.bin"
bios_load_addr = 0x8000_0000
cmdline = "console=ttyS0"
memory_regions = [[0x8000_0000, 0x800_0000, 0x7, 0]]

[devices]
emu_devices = [["uart", 0x1000_0000, 0x100, 10, 0x2, []]]
interrupt_mode = "emulated"
netdevs = { net0 = "udp:127.0.0.1:5000:127.0.0.1:5001" }
"""


# -- TOML text for a document (the test's own writer: only basic strings and inline tables) ------


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, plus DEL, which TOML wants escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(document: dict[str, Any]) -> str:
    lines = [f"{toml_string(k)} = {toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    for name, table in document.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_string(name)}]")
            lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# -- documents from the schema's keys ---------------------------------------------------------------

ints = st.one_of(
    st.integers(0, 16),
    st.sampled_from([0x1000, 0x8000_0000, 0x8020_0000, 0x800_0000, 2**63 - 1, 2**64 - 1, 2**64, -1, -0x1000]),
    st.integers(-(2**70), 2**70),
)
strings = st.one_of(
    st.sampled_from(
        [
            "riscv64",
            "x86_64",
            "aarch64",
            "soft",
            "kvm",
            "auto",
            "fs",
            "memory",
            "emu",
            "no_irq",
            "pt",
            "images/Image",
            "",
            " ",
            "~",
            "~/x",
            "~nosuchuser-axvm/x",
            "a\x00b",
            "/",
            "..",
            "a\nb",
            "udp:127.0.0.1:5000:127.0.0.1:5001",
            "tap:axtap0",
        ]
    ),
    st.text(max_size=12),
)
scalars = st.one_of(ints, strings, st.booleans(), st.floats())
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=3)),
    max_leaves=8,
)


def records(names: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """An axvmconfig struct in either of its forms, with fields of any type."""
    field = st.one_of(ints, ints, strings, anything)
    as_list = st.lists(field, min_size=len(names) - 2, max_size=len(names) + 1)
    as_table = st.dictionaries(st.sampled_from((*names, "bogus")), field, max_size=len(names) + 1)
    return st.one_of(as_list, as_list, as_table, anything)


SPECIAL = {
    "memory_regions": st.lists(records(MEM_FIELDS), max_size=3),
    "emu_devices": st.lists(records(EMU_FIELDS), max_size=3),
    "passthrough_devices": st.lists(records(("name", "base_gpa", "base_hpa", "length", "irq_id")), max_size=2),
    "passthrough_addresses": st.lists(records(("base_gpa", "length")), max_size=2),
    "netdevs": st.dictionaries(strings, st.one_of(strings, anything), max_size=3),
    "excluded_devices": st.lists(st.one_of(st.lists(strings, max_size=3), anything), max_size=3),
}


def section(name: str) -> st.SearchStrategy[Any]:
    keys = sorted(KNOWN_KEYS[name])
    values = {key: st.one_of(SPECIAL.get(key, st.one_of(ints, strings)), anything) for key in keys}
    table = st.fixed_dictionaries({}, optional={**values, "unknown_key": anything})
    return st.one_of(*[table] * 8, anything)


random_documents = st.fixed_dictionaries(
    {}, optional={name: section(name) for name in KNOWN_KEYS} | {"extra": anything}
)
GOOD_DOCUMENT = tomllib.loads(GOOD)
SCHEMA_KEYS = sorted((name, key) for name in KNOWN_KEYS for key in KNOWN_KEYS[name])


def edited(changes: list[tuple[tuple[str, str], Any]]) -> dict[str, Any]:
    """The good config with a few keys set to other values (None: removed)."""
    document = copy.deepcopy(GOOD_DOCUMENT)
    for (name, key), value in changes:
        if value is None:
            document[name].pop(key, None)
        else:
            document[name][key] = value
    return document


def changed_value(name_key: tuple[str, str]) -> st.SearchStrategy[tuple[tuple[str, str], Any]]:
    plausible = SPECIAL.get(name_key[1], st.one_of(ints, strings))
    return st.tuples(st.just(name_key), st.one_of(plausible, plausible, anything, st.none()))


# Half the documents are a good config with a few values changed, so accepted ones occur too.
documents = st.one_of(
    random_documents,
    st.lists(st.sampled_from(SCHEMA_KEYS).flatmap(changed_value), max_size=3).map(edited),
)


def check(load: Any) -> AxVMCrateConfig | None:
    """Run ``load``: a config, or ConfigError whose every line names the file and a key."""
    try:
        config = load()
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            line = str(problem)
            assert len(line.splitlines()) == 1, line
            assert problem.file == FILE and (problem.key or problem.message.startswith("invalid TOML")), line
        return None
    assert all(len(warning.splitlines()) == 1 for warning in config.warnings), config.warnings
    return config


@settings(max_examples=150)
@given(document=documents)
def test_random_documents_give_a_config_or_a_config_error(document: dict[str, Any]) -> None:
    config = check(lambda: parse_config(toml_document(document), FILE))
    assert (config is None) == (check(lambda: config_from_dict(document, FILE)) is None)
    if config is not None:  # what was accepted reads back the same once written out
        again = config_from_dict(config_to_dict(config), FILE)
        assert (again.base, again.kernel, again.devices) == (config.base, config.kernel, config.devices)


@settings(max_examples=150)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(GOOD)), st.integers(0, 8), st.text(max_size=4)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_config_text_gives_a_config_or_a_config_error(edits: list[tuple[int, int, str]]) -> None:
    text = GOOD
    for position, cut, insert in edits:
        text = text[:position] + insert + text[position + cut :]
    check(lambda: parse_config(text, FILE))


def test_deeply_nested_values_are_a_config_error() -> None:
    """tomllib recurses once per nested array: a hostile file ran it out of stack (RecursionError)."""
    for depth in (100, 10_000):
        check(lambda depth=depth: parse_config("[base]\nname = " + "[" * depth + "]" * depth + "\n", FILE))


def test_paths_the_host_cannot_resolve_are_a_config_error_naming_the_key() -> None:
    """ "~nosuchuser/..." made pathlib raise RuntimeError, a NUL byte ValueError: both escaped
    the loader as tracebacks."""
    for bad in ("~nosuchuser-axvm/Image", "a\\u0000b"):
        text = GOOD.replace('kernel_path = "images/Image"', f'kernel_path = "{bad}"')
        assert check(lambda text=text: parse_config(text, FILE)) is None
        try:
            parse_config(text, FILE)
        except ConfigError as error:
            assert [p.key for p in error.problems] == ["kernel.kernel_path"]


def test_a_key_with_a_line_break_is_quoted_in_its_one_line() -> None:
    text = GOOD.replace('net0 = "udp', '"net\\n0" = 5, net1 = "udp')
    try:
        parse_config(text, FILE)
    except ConfigError as error:
        assert [str(p) for p in error.problems] == [
            f'{FILE}: devices.netdevs."net\\u000a0": expected a string such as "tap:axtap0" or '
            '"udp:127.0.0.1:5000:127.0.0.1:5001", got integer 5'
        ]
    else:
        raise AssertionError("a netdev that is not a string was accepted")
