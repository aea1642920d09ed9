"""Random device trees through the fdt helpers: built, or refused with ValueError; then read back.

Node and property names and values are drawn from everything a caller might pass (the names a
device tree allows, and any other text; cells beyond 32 or 64 bits; strings with line breaks
or non-ASCII; sibling names that collide). Each helper either builds its piece or raises
ValueError naming it; a tree that was built serializes, and the blob parses back to the same
names, order and values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axvm.machines import fdt
from axvm.machines.fdt import FdtNode, FdtProperty, flag, node, strings, to_dtb, u32, u64

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,._+-"
names = st.one_of(
    st.text(NAME_CHARS, min_size=1, max_size=12),
    st.text(NAME_CHARS, min_size=1, max_size=8).map(lambda n: n + "@1000"),
    st.sampled_from(["#address-cells", "riscv,isa", "reg", "compatible", "a", "a"]),  # "a" twice: collisions
    st.text(max_size=6),  # spaces, line breaks, NUL, non-ASCII, empty
)
cell_values = st.one_of(st.integers(0, fdt.U32_MAX), st.integers(-(1 << 65), 1 << 65))
text_values = st.one_of(st.text("abc =,/:0123456789", max_size=10), st.text(max_size=6))


@dataclass
class Prop:
    kind: str  # u32, u64, strings, flag
    name: str
    values: list = field(default_factory=list)


@dataclass
class Node:
    name: str
    items: list = field(default_factory=list)


props = st.one_of(
    st.builds(Prop, st.just("u32"), names, st.lists(cell_values, max_size=3)),
    st.builds(Prop, st.just("u64"), names, st.lists(st.one_of(st.integers(0, (1 << 64) - 1), cell_values), max_size=2)),
    st.builds(Prop, st.just("strings"), names, st.lists(text_values, max_size=3)),
    st.builds(Prop, st.just("flag"), names),
)
trees = st.recursive(
    st.builds(Node, names, st.lists(props, max_size=4)),
    lambda children: st.builds(Node, names, st.lists(st.one_of(props, children), max_size=4)),
    max_leaves=10,
)

BUILDERS = {"u32": u32, "u64": u64, "strings": strings}


def build(spec: Node | Prop, unique: bool = False) -> tuple[FdtNode | FdtProperty, Node | Prop] | None:
    """The helper's result and the spec it stands for, or None when a helper refused it.
    ``unique`` drops children whose name an earlier child has (the root must not be refused)."""
    try:
        if isinstance(spec, Prop):
            if spec.kind == "flag":
                return flag(spec.name), spec
            return BUILDERS[spec.kind](spec.name, *spec.values), spec
        built = [piece for piece in map(build, spec.items) if piece is not None]
        if unique:
            built = [piece for i, piece in enumerate(built) if piece[1].name not in {p[1].name for p in built[:i]}]
        return node(spec.name, *(item for item, _ in built)), Node(spec.name, [kept for _, kept in built])
    except ValueError as error:
        assert repr(spec.name) in str(error) or str(spec.name) in str(error), str(error)
        return None


def check_same(parsed: FdtNode, spec: Node) -> None:
    assert [item.get_name() for item in parsed] == [item.name for item in spec.items]
    for item, expected in zip(parsed, spec.items, strict=True):
        if isinstance(expected, Node):
            assert isinstance(item, FdtNode)
            check_same(item, expected)
        elif expected.kind == "strings":
            assert fdt.strings_of(item) == expected.values
        elif expected.kind == "u64":
            assert fdt.cells(item) == [cell for value in expected.values for cell in fdt.split64(value)]
        else:
            assert fdt.cells(item) == expected.values


@settings(max_examples=150)
@given(spec=trees, boot_cpu=st.one_of(st.integers(0, 7), st.integers(-1, 1 << 33)))
def test_random_trees_build_or_refuse_and_read_back_the_same(spec: Node, boot_cpu: int) -> None:
    built = build(Node("/", spec.items), unique=True)
    assert built is not None  # named "/" with unique children: only what is below can be refused
    root, kept = built
    try:
        blob = to_dtb(root, boot_cpuid_phys=boot_cpu)
    except ValueError as error:
        assert not 0 <= boot_cpu <= fdt.U32_MAX and "boot_cpuid_phys" in str(error)
        return
    check_same(fdt.parse_dtb(blob), kept)


@pytest.mark.parametrize(
    "build_it",
    [
        lambda: node("bad name"),
        lambda: node("a\nb"),
        lambda: node("caf\u00e9"),
        lambda: node(""),
        lambda: u32("", 1),
        lambda: u32("x y", 1),
        lambda: flag("a\x00"),
        lambda: strings("\u00e9", "x"),
        lambda: node("n", u32("a", 1), flag("a")),
        lambda: node("n", node("c"), node("c")),
        lambda: to_dtb(node("/"), boot_cpuid_phys=1 << 32),
    ],
)
def test_names_a_device_tree_cannot_hold_are_value_errors(build_it) -> None:
    """pyfdt raised a bare Exception for these (or wrote a blob that does not read back)."""
    with pytest.raises(ValueError):
        build_it()
