"""Small typed helpers over pyfdt for building flattened device trees, and reading them back.

pyfdt models a tree as FdtNode objects holding properties of three kinds (32-bit words,
strings, bytes) and serializes it to a DTB (version 17). What it leaves to callers, and these
helpers do once: 64-bit values split into cells, phandles allocated by label, an empty string
value (pyfdt rejects one), and value errors raised as ValueError naming the property, since a
bad value usually comes from a user's config (a kernel command line, an address).

Reading back is for tests and tools: pyfdt guesses a property's kind from its bytes, so a
words property can come back as strings; ``cells`` and ``strings`` undo the guess.
"""

from __future__ import annotations

import io
import string
from collections.abc import Iterable
from struct import pack, unpack
from typing import TypeAlias

from pyfdt.pyfdt import (
    Fdt,
    FdtBlobParse,
    FdtNode,
    FdtProperty,
    FdtPropertyBytes,
    FdtPropertyStrings,
    FdtPropertyWords,
)

U32_MAX = 0xFFFF_FFFF
U64_MAX = (1 << 64) - 1
_PRINTABLE = frozenset(string.printable) - {"\r", "\n"}  # what pyfdt accepts in a string value
# Devicetree spec 2.2.1 and 2.2.4: the characters of node names (and unit addresses) and of
# property names. pyfdt checks less and raises a bare Exception; a name outside these does not
# read back (or confuses paths), so the helpers refuse it with a ValueError naming it.
_NODE_NAME_CHARS = frozenset(string.ascii_letters + string.digits + ",._+-")
_PROPERTY_NAME_CHARS = _NODE_NAME_CHARS | {"?", "#"}

Item: TypeAlias = FdtNode | FdtProperty


def _check_property_name(name: str) -> None:
    if not isinstance(name, str) or not name or not set(name) <= _PROPERTY_NAME_CHARS:
        raise ValueError(f"device tree property name {name!r}: expected letters, digits and ,._+?#-")


def _check_node_name(name: str) -> None:
    """``name`` or ``name@unit-address``; the root alone is "/"."""
    if name == "/":
        return
    parts = name.split("@") if isinstance(name, str) else []
    if not 1 <= len(parts) <= 2 or not all(part and set(part) <= _NODE_NAME_CHARS for part in parts):
        raise ValueError(
            f"device tree node name {name!r}: expected letters, digits and ,._+- with an optional "
            "@unit-address, or / for the root"
        )


def node(name: str, *items: Item) -> FdtNode:
    """A node holding ``items`` (properties and subnodes, in order)."""
    _check_node_name(name)
    taken = [item.get_name() for item in items]
    for item in items:
        if isinstance(item, FdtNode) and item.get_name() == "/":
            raise ValueError(f"device tree node {name!r}: a child cannot be named / (only the root is)")
        if taken.count(item.get_name()) > 1:
            raise ValueError(f"device tree node {name!r}: two items are named {item.get_name()!r}")
    result = FdtNode(name)
    for item in items:
        if isinstance(item, FdtNode):
            item.set_parent_node(result)
        result.append(item)
    return result


def u32(name: str, *values: int) -> FdtPropertyWords:
    """A property of one or more 32-bit cells."""
    _check_property_name(name)
    for value in values:
        if not isinstance(value, int) or not 0 <= value <= U32_MAX:
            raise ValueError(f"device tree property {name!r}: {value!r} is not a 32-bit cell")
    if not values:
        raise ValueError(f"device tree property {name!r} needs at least one cell (use flag() for none)")
    return FdtPropertyWords(name, list(values))


def split64(value: int) -> tuple[int, int]:
    """A 64-bit value as two cells, high first (the DT's big-endian two-cell form)."""
    if not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise ValueError(f"{value!r} is not a 64-bit value")
    return value >> 32, value & U32_MAX


def u64(name: str, *values: int) -> FdtPropertyWords:
    """A property of 64-bit values, two cells each."""
    cells: list[int] = []
    for value in values:
        try:
            cells.extend(split64(value))
        except ValueError:
            raise ValueError(f"device tree property {name!r}: {value!r} is not a 64-bit value") from None
    return u32(name, *cells)


def reg64(name: str, regions: Iterable[tuple[int, int]]) -> FdtPropertyWords:
    """``(address, size)`` pairs for a parent with #address-cells = #size-cells = 2."""
    return u64(name, *(v for region in regions for v in region))


def strings(name: str, *values: str) -> FdtProperty:
    """A property of one or more NUL-terminated strings (printable ASCII, no line breaks)."""
    _check_property_name(name)
    if not values:
        raise ValueError(f"device tree property {name!r} needs at least one string")
    for value in values:
        bad = set(value) - _PRINTABLE
        if bad:
            raise ValueError(
                f"device tree property {name!r}: {value!r} has characters a device tree string "
                f"cannot hold ({''.join(sorted(bad))!r}); use printable ASCII without line breaks"
            )
    if values == ("",):
        return FdtPropertyBytes(name, [0])  # the empty string: one NUL byte
    if "" in values:
        raise ValueError(f"device tree property {name!r}: an empty string inside a string list")
    return FdtPropertyStrings(name, list(values))


def flag(name: str) -> FdtProperty:
    """A property with no value (``interrupt-controller;``, ``ranges;``)."""
    _check_property_name(name)
    return FdtProperty(name)


class Phandles:
    """Phandle numbers allocated by label, from 1, so nodes can point at each other."""

    def __init__(self) -> None:
        self._by_label: dict[str, int] = {}

    def __getitem__(self, label: str) -> int:
        """The phandle for ``label``, allocated on first use."""
        if label not in self._by_label:
            self._by_label[label] = len(self._by_label) + 1
        return self._by_label[label]

    def prop(self, label: str) -> FdtPropertyWords:
        """The ``phandle`` property of the node that ``label`` names."""
        return u32("phandle", self[label])


def to_dtb(root: FdtNode, *, boot_cpuid_phys: int = 0) -> bytes:
    """The tree as a DTB blob (version 17, last compatible version 16)."""
    if not isinstance(boot_cpuid_phys, int) or not 0 <= boot_cpuid_phys <= U32_MAX:
        raise ValueError(f"device tree boot_cpuid_phys {boot_cpuid_phys!r} is not a 32-bit value")
    fdt = Fdt(version=17, last_comp_version=16, boot_cpuid_phys=boot_cpuid_phys)
    fdt.add_rootnode(root)
    return bytes(fdt.to_dtb())


# -- reading back ----------------------------------------------------------------------------


def parse_dtb(blob: bytes) -> FdtNode:
    """The root node of a DTB blob."""
    return FdtBlobParse(io.BytesIO(blob)).to_fdt().get_rootnode()


def find(root: FdtNode, path: str) -> FdtNode | FdtProperty:
    """The node or property at ``path`` ("/soc/plic@c000000/reg"); KeyError if absent."""
    current: FdtNode | FdtProperty = root
    for part in path.strip("/").split("/") if path.strip("/") else ():
        if not isinstance(current, FdtNode):
            raise KeyError(path)
        try:
            current = current[current.index(part)]
        except ValueError:
            raise KeyError(path) from None
    return current


def subnodes(parent: FdtNode) -> list[FdtNode]:
    """The child nodes of ``parent``, in order."""
    return [item for item in parent if isinstance(item, FdtNode)]


def _raw(prop: FdtProperty) -> bytes:
    if isinstance(prop, FdtPropertyWords):
        return b"".join(pack(">I", word) for word in prop.words)
    if isinstance(prop, FdtPropertyStrings):
        return b"".join(s.encode("ascii") + b"\0" for s in prop.strings)
    if isinstance(prop, FdtPropertyBytes):
        return bytes(b & 0xFF for b in prop.bytes)
    return b""


def cells(prop: FdtNode | FdtProperty) -> list[int]:
    """A property's value as 32-bit cells, whatever kind pyfdt guessed for it."""
    if not isinstance(prop, FdtProperty):
        raise TypeError(f"{prop} is a node, not a property")
    raw = _raw(prop)
    if len(raw) % 4:
        raise ValueError(f"property {prop.get_name()!r} is {len(raw)} bytes, not whole cells")
    return list(unpack(f">{len(raw) // 4}I", raw))


def strings_of(prop: FdtNode | FdtProperty) -> list[str]:
    """A property's value as its NUL-separated strings."""
    if not isinstance(prop, FdtProperty):
        raise TypeError(f"{prop} is a node, not a property")
    raw = _raw(prop)
    return raw.decode("ascii").split("\0")[:-1] if raw.endswith(b"\0") else [raw.decode("ascii")]
