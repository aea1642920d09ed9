"""The grammar of AxVisor's ``vm`` shell, shared by ``axvisor shell`` and ``axvisor ctl``.

A command line is split as a POSIX shell would (``shlex``), then parsed against a table of
command specs: the same names, flags and options as AxVisor's shell (``vm create -n NAME -c CPUS
-m MEM -f CONFIG...``, ``vm stop -f -g ID...``, ...) plus this VMM's inspection commands
(``vm mem``, ``vm regs``, ``vm translate``, ``vm console``). Parsing is pure: a line in, a
``Command`` or a ``GrammarError`` (one line naming the argument and the usage) out, so both
front ends accept exactly the same input, and the table also feeds help and completion.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..manager import BadRequest
from ..manager import parse_size as _manager_size


class GrammarError(ValueError):
    """A line that is not a command: ``str()`` is one line saying what was wrong and the usage."""


def parse_int(text: str) -> int:
    """Decimal or 0x/0o/0b prefixed, '_' allowed (as in the TOML configs); never negative."""
    value = int(text.replace("_", ""), 0)
    if value < 0:
        raise ValueError("negative")
    return value


def parse_size(text: str) -> int:
    """``vm create -m MEM`` and ``vm mem ... SIZE``: the manager's size syntax (512M, 1G, 0x1000)."""
    try:
        return _manager_size(text)
    except BadRequest as error:
        raise ValueError(error.message) from None


def parse_gdb_address(text: str) -> str:
    """``vm gdb``'s PORT: a port number is a loopback TCP port; tcp:... and unix:... as given."""
    if text.isdigit():
        if not 0 <= int(text) <= 65535:
            raise ValueError("not a port")
        return f"tcp:{text}"
    if text.startswith(("tcp:", "unix:")):
        return text
    raise ValueError("expected a port, tcp:HOST:PORT or unix:PATH")


@dataclass(frozen=True)
class Flag:
    name: str
    short: str | None
    help: str


@dataclass(frozen=True)
class Option:
    name: str
    short: str | None
    metavar: str
    help: str
    convert: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Arg:
    """A positional argument; ``many`` takes one or more (or zero or more when ``optional``)."""

    metavar: str
    convert: Callable[[str], Any] = str
    optional: bool = False
    many: bool = False


@dataclass(frozen=True)
class Spec:
    name: str
    help: str
    args: tuple[Arg, ...] = ()
    flags: tuple[Flag, ...] = ()
    options: tuple[Option, ...] = ()

    @property
    def usage(self) -> str:
        parts = [f"vm {self.name}"]
        for flag in self.flags:
            parts.append(f"[{'-' + flag.short if flag.short else '--' + flag.name}]")
        for option in self.options:
            lead = f"-{option.short}" if option.short else f"--{option.name}"
            parts.append(f"[{lead} {option.metavar}]")
        for arg in self.args:
            text = arg.metavar + ("..." if arg.many else "")
            parts.append(f"[{text}]" if arg.optional else text)
        return " ".join(parts)


@dataclass(frozen=True)
class Command:
    """A parsed line: ``name`` is ``vm <sub>`` without the ``vm`` (``help``/``exit`` as themselves)."""

    name: str
    args: tuple[Any, ...] = ()
    flags: frozenset[str] = frozenset()
    options: Mapping[str, Any] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        return name in self.flags

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


_FORCE = Flag("force", "f", "do it without asking")
_ID = Arg("ID")
_IDS = Arg("ID", many=True)

SPECS: tuple[Spec, ...] = (
    Spec("help", "show the vm commands", (Arg("COMMAND", optional=True),)),
    Spec(
        "create",
        "create VMs from CONFIG files (one VM each), or one from a snapshot (--restore DIR), not started",
        (Arg("CONFIG", optional=True, many=True),),
        (Flag("force", "f", "create even if a VM of that name exists; with --restore, accept changed disks"),),
        (
            Option("restore", None, "DIR", "the VM saved in DIR by 'vm snapshot', to carry on from there"),
            Option("name", "n", "NAME", "the VM's name (one CONFIG only)"),
            Option("cpu", "c", "CPUS", "number of vCPUs", parse_int),
            Option("memory", "m", "MEM", "guest RAM of the first region (e.g. 256M)", parse_size),
        ),
    ),
    Spec(
        "start",
        "start VMs (every created VM when no ID is given)",
        (Arg("ID", optional=True, many=True),),
        (
            Flag("detach", "d", "start in the background (the default)"),
            Flag("console", "c", "attach to the console of the one VM started"),
        ),
    ),
    Spec(
        "stop",
        "stop VMs",
        (_IDS,),
        (Flag("force", "f", "stop at once"), Flag("graceful", "g", "ask the guest to power off first")),
    ),
    Spec("reset", "reset VMs: restart from the config, disks kept", (_IDS,)),
    Spec("restart", "stop then start VMs again", (_IDS,), (Flag("force", "f", "stop at once"),)),
    Spec("suspend", "pause VMs: every vCPU leaves the guest, the guest clock stops", (_IDS,)),
    Spec("resume", "resume suspended VMs", (_IDS,)),
    Spec(
        "snapshot",
        "save a VM into the new directory DIR (paused meanwhile, then resumed): RAM, vCPUs, devices, config",
        (_ID, Arg("DIR")),
        (Flag("stop", None, "stop the VM once saved"),),
    ),
    Spec(
        "delete",
        "delete a VM (stopping it first with -f)",
        (_ID,),
        (
            Flag("force", "f", "skip the confirmation, stop it if running"),
            Flag("keep-data", None, "keep the VM's console log"),
        ),
    ),
    Spec(
        "list",
        "list VMs",
        (),
        (Flag("all", "a", "include stopped VMs"),),
        (Option("format", None, "FMT", "table or json", choices=("table", "json")),),
    ),
    Spec(
        "show",
        "show a VM",
        (_ID,),
        (Flag("full", "f", "everything"), Flag("config", "c", "its configuration"), Flag("stats", "s", "its metrics")),
    ),
    Spec("console", "attach to a VM's console (Ctrl-A x or Ctrl-A d detaches)", (_ID,)),
    Spec("mem", "hexdump guest memory", (_ID, Arg("GPA", parse_int), Arg("SIZE", parse_size, optional=True))),
    Spec("regs", "print a paused VM's vCPU registers", (_ID, Arg("VCPU", parse_int, optional=True))),
    Spec(
        "translate",
        "translate a guest virtual address on a paused VM's vCPU",
        (_ID, Arg("VCPU", parse_int), Arg("GVA", parse_int)),
    ),
    Spec(
        "gdb",
        "serve gdb's remote protocol for a VM: PORT, tcp:HOST:PORT or unix:PATH (in gdb: target remote :PORT)",
        (_ID, Arg("PORT", parse_gdb_address)),
    ),
)
BY_NAME: dict[str, Spec] = {spec.name: spec for spec in SPECS}
TOP_LEVEL = ("vm", "help", "exit", "quit")


def parse_line(line: str) -> Command | None:
    """A shell line: None for an empty line or a comment, else the Command (GrammarError if bad)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as error:  # an unclosed quote
        raise GrammarError(f"cannot split the line: {error}") from None
    if not words:
        return None
    return parse_words(words)


def parse_words(words: Sequence[str]) -> Command:
    """``vm <sub> ...``, ``help``, ``exit``/``quit``: the ``axvisor ctl`` arguments use this too."""
    head, rest = words[0], list(words[1:])
    if head in ("exit", "quit"):
        if rest:
            raise GrammarError(f"{head} takes no arguments")
        return Command("exit")
    if head == "help":
        return parse_vm(["help", *(rest[1:] if rest[:1] == ["vm"] else rest)])
    if head != "vm":
        raise GrammarError(f"unknown command {head!r}: expected vm, help or exit (try 'help')")
    if not rest:
        return Command("help")
    return parse_vm(rest)


def parse_vm(words: Sequence[str]) -> Command:
    """The words after ``vm``."""
    name, rest = words[0], list(words[1:])
    spec = BY_NAME.get(name)
    if spec is None:
        raise GrammarError(f"unknown vm command {name!r}: expected one of {', '.join(BY_NAME)} (try 'vm help')")
    if "-h" in rest or "--help" in rest:
        return Command("help", (name,))
    return _parse(spec, rest)


def _parse(spec: Spec, words: list[str]) -> Command:
    flags: set[str] = set()
    options: dict[str, Any] = {}
    positionals: list[str] = []
    longs = {f.name: f for f in spec.flags} | {o.name: o for o in spec.options}
    shorts = {f.short: f for f in spec.flags if f.short} | {o.short: o for o in spec.options if o.short}
    i = 0

    def fail(message: str) -> GrammarError:
        return GrammarError(f"vm {spec.name}: {message} (usage: {spec.usage})")

    def take_value(item: Option, inline: str | None, label: str) -> None:
        nonlocal i
        if inline is None:
            i += 1
            if i >= len(words):
                raise fail(f"{label} needs a value {item.metavar}")
            inline = words[i]
        if item.choices and inline not in item.choices:
            raise fail(f"{label}: expected one of {', '.join(item.choices)}, got {inline!r}")
        try:
            options[item.name] = item.convert(inline)
        except ValueError:
            raise fail(f"{label}: {inline!r} is not a valid {item.metavar}") from None

    while i < len(words):
        word = words[i]
        if word == "--":
            positionals += words[i + 1 :]
            break
        if word.startswith("--"):
            key, eq, value = word[2:].partition("=")
            item = longs.get(key)
            if item is None:
                raise fail(f"unknown option --{key}")
            if isinstance(item, Flag):
                if eq:
                    raise fail(f"--{key} takes no value")
                flags.add(item.name)
            else:
                take_value(item, value if eq else None, f"--{key}")
        elif word.startswith("-") and len(word) > 1 and not _is_number(word):
            for j, letter in enumerate(word[1:], start=1):
                item = shorts.get(letter)
                if item is None:
                    raise fail(f"unknown option -{letter}")
                if isinstance(item, Flag):
                    flags.add(item.name)
                    continue
                take_value(item, word[j + 1 :] or None, f"-{letter}")
                break
        else:
            positionals.append(word)
        i += 1
    return Command(spec.name, _bind(spec, positionals, fail), frozenset(flags), options)


def _is_number(word: str) -> bool:
    try:
        int(word, 0)
    except ValueError:
        return False
    return True


def _bind(spec: Spec, words: list[str], fail: Callable[[str], GrammarError]) -> tuple[Any, ...]:
    """Match positionals to the spec's args (only the last may be ``many``); convert each."""
    values: list[Any] = []
    rest = list(words)
    for arg in spec.args:
        if arg.many:
            taken, rest = rest, []
            if not taken and not arg.optional:
                raise fail(f"expected at least one {arg.metavar}")
            values.append(tuple(_convert(arg, word, fail) for word in taken))
            continue
        if not rest:
            if not arg.optional:
                raise fail(f"missing {arg.metavar}")
            values.append(None)
            continue
        values.append(_convert(arg, rest.pop(0), fail))
    if rest:
        raise fail(f"unexpected argument {rest[0]!r}")
    return tuple(values)


def _convert(arg: Arg, word: str, fail: Callable[[str], GrammarError]) -> Any:
    try:
        return arg.convert(word)
    except ValueError:
        raise fail(f"{arg.metavar}: {word!r} is not a valid {arg.metavar}") from None


def help_text(name: str | None = None) -> str:
    """``vm help`` (every command, one line each) or one command's usage and flags."""
    if name is None:
        width = max(len(spec.usage) for spec in SPECS)
        lines = ["vm commands:"]
        lines += [f"  {spec.usage:<{width}}  {spec.help}" for spec in SPECS]
        lines.append("  help [COMMAND]  exit")
        return "\n".join(lines)
    spec = BY_NAME.get(name)
    if spec is None:
        raise GrammarError(f"unknown vm command {name!r}: expected one of {', '.join(BY_NAME)}")
    lines = [f"usage: {spec.usage}", f"  {spec.help}"]
    for flag in spec.flags:
        lead = f"-{flag.short}, --{flag.name}" if flag.short else f"--{flag.name}"
        lines.append(f"  {lead:<22} {flag.help}")
    for option in spec.options:
        lead = (
            f"-{option.short}, --{option.name} {option.metavar}"
            if option.short
            else f"--{option.name} {option.metavar}"
        )
        lines.append(f"  {lead:<22} {option.help}")
    return "\n".join(lines)


def words_for_completion(spec_name: str | None) -> list[str]:
    """What may follow ``vm`` (no spec) or ``vm <spec_name>`` (its flags and options)."""
    if spec_name is None:
        return list(BY_NAME)
    spec = BY_NAME.get(spec_name)
    if spec is None:
        return []
    items: tuple[Flag | Option, ...] = (*spec.flags, *spec.options)
    words = [f"--{item.name}" for item in items]
    words += [f"-{item.short}" for item in items if item.short]
    return words
