"""Linux kernel modules without depmod: dependencies read from each module's .modinfo.

Theory of operation. A module (.ko, possibly .ko.xz or .ko.gz) is an ELF relocatable file whose
.modinfo section holds NUL-separated key=value strings (include/linux/moduleparam.h,
MODULE_INFO): `depends=` lists the modules whose symbols it uses (modpost writes it), `softdep=`
("pre: a b post: c") those it asks for by name or alias at run time (ext4's "pre: crypto-crc32c"),
`alias=` the names it answers to, `name=` its own. depmod turns these into modules.dep and
modules.alias; a kernel package that ships neither (Debian's) can still be ordered from them.
Modules built into the kernel are listed in modules.builtin (their aliases in
modules.builtin.modinfo as "module.alias=..."); they need no loading.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import lzma
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.gz")


class ModuleError(Exception):
    """A module tree, a module file or a dependency that cannot be used."""


def elf_section(data: bytes, wanted: str) -> bytes | None:
    """The contents of the ELF section named `wanted` (ELF32/64, either byte order), or None."""
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise ModuleError("not an ELF file")
    end = "<" if data[5] == 1 else ">"
    is64 = data[4] == 2
    try:
        shoff = struct.unpack_from(end + ("Q" if is64 else "I"), data, 0x28 if is64 else 0x20)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A if is64 else 0x2E)
        layout = end + ("IIQQQQ" if is64 else "IIIIII")

        def section(index: int) -> tuple[int, int, int]:  # name offset, file offset, size
            name, _type, _flags, _addr, offset, size = struct.unpack_from(layout, data, shoff + index * shentsize)
            return name, offset, size

        _, strings_at, strings_size = section(shstrndx)
        strings = data[strings_at : strings_at + strings_size]
        for index in range(shnum):
            name_at, offset, size = section(index)
            if strings[name_at : strings.find(b"\0", name_at)].decode(errors="replace") == wanted:
                if offset + size > len(data):
                    raise ModuleError(f"section {wanted} runs past the end of the file")
                return data[offset : offset + size]
    except struct.error as error:
        raise ModuleError(f"truncated ELF section table ({error})") from None
    return None


def parse_modinfo(section: bytes) -> dict[str, list[str]]:
    """A .modinfo section's NUL-separated key=value strings, values per key in order."""
    info: dict[str, list[str]] = {}
    for item in section.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info


def normalize(name: str) -> str:
    """Module names as the kernel compares them: dashes and underscores are the same."""
    return name.replace("-", "_")


def module_name(path: Path) -> str:
    for suffix in MODULE_SUFFIXES:
        if path.name.endswith(suffix):
            return normalize(path.name[: -len(suffix)])
    raise ModuleError(f"{path}: not a kernel module file ({', '.join(MODULE_SUFFIXES)})")


def read_module(path: Path) -> bytes:
    """A module file's ELF bytes, decompressed."""
    try:
        raw = path.read_bytes()
        if path.name.endswith(".xz"):
            return lzma.decompress(raw)
        if path.name.endswith(".gz"):
            return gzip.decompress(raw)
    except (OSError, lzma.LZMAError, EOFError, gzip.BadGzipFile) as error:
        raise ModuleError(f"cannot read module {path}: {error}") from None
    return raw


@dataclass(frozen=True)
class Module:
    """One module file and what its .modinfo says it needs."""

    name: str
    path: Path  # the module's file in the modules tree
    relpath: str  # relative to the tree, without the compression suffix (kernel/fs/ext4/ext4.ko)
    depends: tuple[str, ...] = ()
    softdep_pre: tuple[str, ...] = ()
    softdep_post: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default=(), compare=False)


def parse_softdep(values: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`softdep=pre: a b post: c` entries -> (pre, post)."""
    pre: list[str] = []
    post: list[str] = []
    target = None
    for value in values:
        for token in value.split():
            if token in ("pre:", "post:"):
                target = pre if token == "pre:" else post
            elif target is not None:
                target.append(token)
    return tuple(pre), tuple(post)


def module_from_file(path: Path, root: Path) -> Module:
    try:
        section = elf_section(read_module(path), ".modinfo")
    except ModuleError as error:
        raise ModuleError(f"module {path}: {error}") from None
    info = parse_modinfo(section or b"")
    depends = tuple(normalize(d) for value in info.get("depends", []) for d in value.split(",") if d)
    pre, post = parse_softdep(info.get("softdep", []))
    name = normalize(info.get("name", [module_name(path)])[0])
    relpath = str(path.relative_to(root)).removesuffix(".xz").removesuffix(".gz")
    return Module(name, path, relpath, depends, pre, post, tuple(info.get("alias", [])))


class ModuleTree:
    """A lib/modules/RELEASE tree: module files by name, the built-in modules, aliases on demand."""

    ALIAS_CACHE = "modules.axvisor-aliases.json"  # written beside modules.builtin, as depmod would

    def __init__(self, root: Path, report: Callable[[str], None] = lambda message: None) -> None:
        """root: the lib/modules/RELEASE directory; report: where progress and warnings go."""
        if not root.is_dir():
            raise ModuleError(f"{root}: no such modules directory")
        self.report = report
        self.root = root
        self.files: dict[str, Path] = {}
        for path in sorted(root.rglob("*.ko*")):
            if path.name.endswith(MODULE_SUFFIXES):
                self.files.setdefault(module_name(path), path)
        self.builtin = self._read_builtin()
        self._modules: dict[str, Module] = {}
        self._aliases: dict[str, list[str]] | None = None

    def _read_builtin(self) -> set[str]:
        builtin = set()
        listing = self.root / "modules.builtin"
        if listing.is_file():
            builtin = {module_name(Path(line.strip())) for line in listing.read_text().splitlines() if line.strip()}
        return builtin

    def module(self, name: str) -> Module:
        name = normalize(name)
        if name not in self._modules:
            self._modules[name] = module_from_file(self.files[name], self.root)
        return self._modules[name]

    def _builtin_aliases(self) -> dict[str, list[str]]:
        aliases: dict[str, list[str]] = {}
        modinfo = self.root / "modules.builtin.modinfo"
        if modinfo.is_file():
            for key, values in parse_modinfo(modinfo.read_bytes()).items():
                module, _, what = key.rpartition(".")
                if what == "alias":
                    for alias in values:
                        aliases.setdefault(alias, []).append(normalize(module))
        return aliases

    def aliases(self) -> dict[str, list[str]]:
        """alias -> module names, from every module's .modinfo (cached: reading them all takes seconds)."""
        if self._aliases is not None:
            return self._aliases
        fingerprint = [len(self.files), sum(p.stat().st_size for p in self.files.values())]
        cache = self.root / self.ALIAS_CACHE
        try:
            saved = json.loads(cache.read_text())
            if saved.get("fingerprint") == fingerprint:
                self._aliases = saved["aliases"]
                return saved["aliases"]
        except (OSError, ValueError, AttributeError, KeyError):
            pass
        self.report(f"reading the aliases of {len(self.files)} modules in {self.root} (once; cached)")
        aliases = self._builtin_aliases()
        paths = list(self.files.values())
        roots = [self.root] * len(paths)
        if len(paths) < 64:
            found: Iterable[Module] = map(module_from_file, paths, roots)
            self._add_aliases(found, aliases)
        else:  # decompressing thousands of modules: one process per core (threads hold the GIL)
            with concurrent.futures.ProcessPoolExecutor() as pool:
                self._add_aliases(pool.map(module_from_file, paths, roots, chunksize=32), aliases)
        try:
            partial = cache.with_name(f"{cache.name}.{os.getpid()}")
            partial.write_text(json.dumps({"fingerprint": fingerprint, "aliases": aliases}))
            partial.replace(cache)
        except OSError:
            pass  # a read-only tree: scan again next time
        self._aliases = aliases
        return aliases

    def _add_aliases(self, found: Iterable[Module], aliases: dict[str, list[str]]) -> None:
        for module in found:
            self._modules.setdefault(module.name, module)
            for alias in module.aliases:
                aliases.setdefault(alias, []).append(module.name)

    def resolve(self, wanted: str) -> str | None:
        """A softdep target (module name or alias) -> a module name; None when nothing provides it."""
        name = normalize(wanted)
        if name in self.files or name in self.builtin:
            return name
        candidates = self.aliases().get(wanted, [])
        return sorted(candidates, key=lambda m: (m not in self.builtin, m))[0] if candidates else None

    def load_order(self, wanted: Iterable[str]) -> tuple[list[Module], list[str]]:
        """The modules to insmod, each after what it needs; and the wanted modules built into the kernel."""
        order: list[Module] = []
        done: set[str] = set()
        builtin: list[str] = []

        def visit(name: str, chain: tuple[str, ...], required_by: str | None) -> None:
            if name in done:
                return
            if name in chain:
                raise ModuleError(f"module dependency cycle: {' -> '.join((*chain, name))}")
            if name in self.builtin:
                done.add(name)
                builtin.append(name)
                return
            if name not in self.files:
                needed = f" (needed by {required_by})" if required_by else ""
                raise ModuleError(f"no module {name}{needed} in {self.root}, nor in its modules.builtin")
            module = self.module(name)
            for dep in module.depends:
                visit(dep, (*chain, name), name)
            for soft in module.softdep_pre:
                target = self.resolve(soft)
                if target is None:
                    self.report(f"warning: nothing provides {soft}, a soft dependency of {name}; skipped")
                else:
                    visit(target, (*chain, name), name)
            done.add(name)
            order.append(module)
            for soft in module.softdep_post:
                target = self.resolve(soft)
                if target is not None:
                    visit(target, (), name)

        for name in wanted:
            visit(normalize(name), (), None)
        return order, builtin


def modules_dep(order: list[Module]) -> str:
    """modules.dep for busybox modprobe: each module, then every module it needs (depth first)."""
    by_name = {module.name: module for module in order}
    lines = []
    for module in order:
        needed: list[str] = []
        stack = list(reversed(module.depends))
        while stack:
            dep = by_name.get(stack.pop())
            if dep is not None and dep.relpath not in needed:
                needed.append(dep.relpath)
                stack.extend(reversed(dep.depends))
        lines.append(f"{module.relpath}: {' '.join(needed)}".rstrip())
    return "\n".join(lines) + "\n"
