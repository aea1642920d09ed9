"""Building a cffi extension on the user's machine at first use, cached by what it is built from.

The KVM binding and the soft CPU's C engine are C compiled where they run (no wheel per
platform): the C text and its cdef go through cffi, the C compiler ($CC, else the one Python was
built with) makes a shared object in ``$AXVISOR_CACHE/cffi/<hash>/`` (default
``~/.cache/axvisor``), and later runs only load it. The hash covers the C text, the cdef, cffi's
version, the interpreter and whatever else the build reads (headers), so a change to any of them
builds afresh. Every failure is one line, raised as the extension's own error type, naming what
is missing and the Debian packages that provide it.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# Every start checks the cache, few build: what only a build needs (subprocess, shlex, sysconfig,
# tempfile, the cffi package) is imported in the functions that build.


@dataclass(frozen=True)
class Extension:
    """One extension: its module name, cdef and C source, and how its failures read."""

    module_name: str
    cdef: str
    source: str
    what: str
    """What it is, as messages name it ("the KVM bindings")."""
    error: type[Exception]
    apt_hint: str
    inputs: tuple[bytes, ...] = ()
    """Other content the build reads (header files), hashed with the rest."""

    def fail(self, reason: str) -> Exception:
        return self.error(f"cannot build {self.what}: {reason}")


def cache_root() -> Path:
    """``$AXVISOR_CACHE`` or ``~/.cache/axvisor``."""
    env = os.environ.get("AXVISOR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "axvisor"


def compiler(extension: Extension) -> list[str]:
    """The C compiler command ($CC, else Python's own CC as for any extension), checked to exist."""
    import shlex
    import shutil
    import sysconfig

    command = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "gcc") or ["gcc"]
    if shutil.which(command[0]) is None:
        raise extension.fail(f"C compiler {command[0]!r} not found ({extension.apt_hint})")
    return command


def _sha256() -> Any:
    """A SHA-256 object from the interpreter's built-in module where it has one: hashlib would load
    OpenSSL for it, a few milliseconds of every start; the digest (the cache folder) is the same."""
    for name in ("_sha256", "_sha2"):  # CPython <= 3.11, >= 3.12
        with contextlib.suppress(ImportError):
            return importlib.import_module(name).sha256()
    import hashlib

    return hashlib.sha256()


def built_module(extension: Extension) -> Path:
    """Path of the compiled extension for this host, compiling it if the cache lacks it."""
    import _cffi_backend  # type: ignore[import-untyped]  # the extension loads it anyway; cffi is for builds

    digest = _sha256()
    # cffi checks that its package and _cffi_backend have one version: this is cffi.__version__
    for part in (extension.cdef, extension.source, _cffi_backend.__version__, sys.implementation.cache_tag or ""):
        digest.update(part.encode() + b"\0")
    for content in extension.inputs:
        digest.update(content + b"\0")
    folder = cache_root() / "cffi" / str(digest.hexdigest())[:20]
    # EXTENSION_SUFFIXES[0] is this interpreter's EXT_SUFFIX; sysconfig would cost ~50 ms of start-up
    target = folder / (extension.module_name + importlib.machinery.EXTENSION_SUFFIXES[0])
    if not target.is_file():
        import cffi

        _compile(cffi.FFI(), extension, folder, target)
    return target


def _compile(ffi: Any, extension: Extension, folder: Path, target: Path) -> None:
    """Emit the C file with cffi, compile it, and move the result into place atomically."""
    import io
    import shutil
    import subprocess
    import sysconfig
    import tempfile

    command_prefix = compiler(extension)
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").is_file():
        raise extension.fail(f"Python.h is missing from {include} (apt-get install python3-dev)")
    ffi.cdef(extension.cdef)
    ffi.set_source(extension.module_name, extension.source)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="build-", dir=folder))
    except OSError as error:
        raise extension.fail(f"cache folder {folder}: {error.strerror}") from None
    try:
        c_file = work / f"{extension.module_name}.c"
        with contextlib.redirect_stdout(io.StringIO()):  # cffi prints "generating <file>"
            ffi.emit_c_code(str(c_file))
        output = work / target.name
        command = [*command_prefix, "-shared", "-fPIC", "-O2", "-fno-strict-aliasing", f"-I{include}",
                   "-o", str(output), str(c_file)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = folder / "build-error.log"
            log.write_text(" ".join(command) + "\n" + result.stderr)
            first = next((line for line in result.stderr.splitlines() if "error" in line), "no message")
            raise extension.fail(f"{command_prefix[0]} failed: {first.strip()} (full log: {log}; {extension.apt_hint})")
        os.replace(output, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def import_module(extension: Extension, path: Path) -> ModuleType:
    """Import the extension at ``path`` under its fixed module name (once per process)."""
    name = extension.module_name
    if name in sys.modules:
        return sys.modules[name]
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise extension.error(f"cannot load {extension.what} from {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        loader.exec_module(module)
    except ImportError as error:
        raise extension.error(f"cannot load {extension.what} from {path}: {error}") from None
    sys.modules[name] = module
    return module
