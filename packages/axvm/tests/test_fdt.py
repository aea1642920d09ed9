"""The pyfdt helpers: typed properties, phandles, and a faithful round trip."""

from __future__ import annotations

import pytest

from axvm.machines import fdt
from axvm.machines.fdt import Phandles, flag, node, reg64, strings, u32, u64


def test_round_trip_keeps_kinds_pyfdt_would_guess_wrongly() -> None:
    root = node(
        "/",
        u32("words", 0x41424300),  # "ABC\0": pyfdt reads it back as a string
        u32("zero", 0),
        u64("big", 0x1_2345_6789),
        reg64("reg", [(0x8000_0000, 0x1000)]),
        strings("list", "a", "bc"),
        strings("empty", ""),
        flag("marker"),
        node("child@1", u32("reg", 1)),
    )
    back = fdt.parse_dtb(fdt.to_dtb(root))
    assert fdt.cells(fdt.find(back, "/words")) == [0x41424300]
    assert fdt.cells(fdt.find(back, "/zero")) == [0]
    assert fdt.cells(fdt.find(back, "/big")) == [1, 0x2345_6789]
    assert fdt.cells(fdt.find(back, "/reg")) == [0, 0x8000_0000, 0, 0x1000]
    assert fdt.strings_of(fdt.find(back, "/list")) == ["a", "bc"]
    assert fdt.strings_of(fdt.find(back, "/empty")) == [""]
    assert fdt.cells(fdt.find(back, "/marker")) == []
    assert [n.get_name() for n in fdt.subnodes(back)] == ["child@1"]
    assert fdt.cells(fdt.find(back, "/child@1/reg")) == [1]


def test_find_reports_missing_paths() -> None:
    root = node("/", node("a", u32("x", 1)))
    with pytest.raises(KeyError):
        fdt.find(root, "/b")
    with pytest.raises(KeyError):
        fdt.find(root, "/a/x/y")
    assert fdt.find(root, "/") is root


def test_phandles_are_stable_per_label() -> None:
    ph = Phandles()
    assert ph["plic"] == 1 and ph["intc0"] == 2 and ph["plic"] == 1
    assert fdt.cells(ph.prop("intc0")) == [2]


@pytest.mark.parametrize(
    "build",
    [
        lambda: u32("x", 1 << 32),
        lambda: u32("x", -1),
        lambda: u32("x"),
        lambda: u64("x", 1 << 64),
        lambda: strings("bootargs", "console=ttyS0\n"),
        lambda: strings("bootargs", "caf\u00e9"),
        lambda: strings("x", "a", ""),
        lambda: strings("x"),
    ],
)
def test_bad_values_raise_value_error_naming_the_property(build) -> None:
    with pytest.raises(ValueError, match="'(x|bootargs)'"):
        build()
