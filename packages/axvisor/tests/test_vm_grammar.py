"""The vm shell's grammar (shared by ``axvisor shell`` and ``axvisor ctl``): AxVisor's command
names and flags are accepted, anything else is one GrammarError line naming the culprit."""

from __future__ import annotations

import pytest

from axvisor.vmctl.grammar import BY_NAME, Command, GrammarError, help_text, parse_line, parse_words


def test_create_takes_axvisor_options_short_long_and_attached() -> None:
    command = parse_line("vm create -n web -c 2 --memory=256M -f a.toml b.toml")
    assert command == Command(
        "create", (("a.toml", "b.toml"),), frozenset({"force"}), {"name": "web", "cpu": 2, "memory": 256 << 20}
    )
    assert parse_line("vm create -nweb -c0x2 a.toml").options == {"name": "web", "cpu": 2}


def test_flags_combine_and_ids_stay_words() -> None:
    command = parse_line("vm stop -fg 1 web")
    assert command is not None
    assert command.flags == {"force", "graceful"} and command.args == (("1", "web"),)
    assert parse_line("vm delete --keep-data -f 3") == Command("delete", ("3",), frozenset({"force", "keep-data"}))
    assert parse_line("vm start") == Command("start", ((),))


def test_list_format_is_checked() -> None:
    assert parse_line("vm list -a --format json") == Command("list", (), frozenset({"all"}), {"format": "json"})
    with pytest.raises(GrammarError, match=r"--format: expected one of table, json, got 'xml'"):
        parse_line("vm list --format xml")


def test_inspection_arguments_are_numbers() -> None:
    assert parse_line("vm mem 1 0x8000_0000 64") == Command("mem", ("1", 0x8000_0000, 64))
    assert parse_line("vm mem 1 0x80000000") == Command("mem", ("1", 0x80000000, None))
    assert parse_line("vm translate 2 0 0xffffffff80000000") == Command("translate", ("2", 0, 0xFFFFFFFF80000000))
    with pytest.raises(GrammarError, match=r"GPA: 'zz' is not a valid GPA"):
        parse_line("vm mem 1 zz")


@pytest.mark.parametrize(
    "line,message",
    [
        ("vm frobnicate 1", "unknown vm command 'frobnicate'"),
        ("reboot", "unknown command 'reboot'"),
        ("vm stop", "expected at least one ID"),
        ("vm show", "missing ID"),
        ("vm show 1 2", "unexpected argument '2'"),
        ("vm stop -x 1", "unknown option -x"),
        ("vm stop --now 1", "unknown option --now"),
        ("vm create -n", "-n needs a value NAME"),
        ("vm create -c two a.toml", "-c: 'two' is not a valid CPUS"),
        ("vm stop --force=yes 1", "--force takes no value"),
        ("vm show 'unclosed", "cannot split the line"),
        ("exit now", "exit takes no arguments"),
    ],
)
def test_bad_lines_are_one_line_errors(line: str, message: str) -> None:
    with pytest.raises(GrammarError) as caught:
        parse_line(line)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_help_and_empty_lines() -> None:
    assert parse_line("") is None and parse_line("   # a comment") is None
    assert parse_line("help") == Command("help", (None,))
    assert parse_line("vm") == Command("help")
    assert parse_line("vm stop --help") == Command("help", ("stop",))
    assert parse_line("help vm create") == Command("help", ("create",))
    assert parse_words(["exit"]) == Command("exit")
    text = help_text()
    for name in (
        "create",
        "start",
        "stop",
        "reset",
        "restart",
        "suspend",
        "resume",
        "delete",
        "list",
        "show",
        "console",
        "mem",
        "regs",
        "translate",
    ):
        assert f"vm {name}" in text
    assert "--keep-data" in help_text("delete")


def test_usage_lines_name_axvisor_flags() -> None:
    assert BY_NAME["create"].usage == "vm create [-f] [--restore DIR] [-n NAME] [-c CPUS] [-m MEM] [CONFIG...]"
    assert BY_NAME["snapshot"].usage == "vm snapshot [--stop] ID DIR"
    assert BY_NAME["stop"].usage == "vm stop [-f] [-g] ID..."
    assert BY_NAME["list"].usage == "vm list [-a] [--format FMT]"
    assert BY_NAME["show"].usage == "vm show [-f] [-c] [-s] ID"
