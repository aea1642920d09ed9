"""A C filter in front of the aarch64 vCPU's MSR hook: only timer registers reach Python.

Theory of operation. Unicorn's MSR hook (UC_HOOK_INSN with UC_ARM64_INS_MSR) cannot be limited
to some registers: it runs before every MSR to an op0 2/3 register, and Linux writes DAIF
(``msr daif, xN``, its local_irq_restore) thousands of times a second. Through the Python
binding each call cost about 50 us on the development machine (measured: a loop of
``mrs/msr daif`` ran at 0.2 us per iteration without the hook, 57 us with a hook that does
nothing), while the vCPU only needs the timer registers (op0 3, op1 3, CRn 14). So the hook
unicorn calls is this small C function; it returns 0 ("not handled") at once for every other
register and calls the Python handler, handed in through the hook's user data, for the timer.

The C file is compiled once per host with the system compiler (``$CC``, else Python's own CC)
into ``$AXVISOR_CACHE/cffi/`` (default ``~/.cache/axvisor``), named by a hash of the source, and
loaded with ctypes; nothing links against libunicorn. Where it cannot be built, ``load()``
returns None and the vCPU keeps the Python hook (slower, same behaviour).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import threading
from pathlib import Path

from ... import cffi_build

__all__ = ["CpReg", "SYS_HOOK", "load"]

SOURCE = r"""
#include <stdint.h>
typedef struct { uint32_t crn, crm, op0, op1, op2; uint64_t val; } axv_cp_reg; /* uc_arm64_cp_reg */
typedef uint32_t (*axv_sys_cb)(void *uc, int reg, const axv_cp_reg *cp, void *user);

/* unicorn's uc_cb_insn_sys_t; user points at the Python handler's function pointer. */
uint32_t axv_a64_timer_msr(void *uc, int reg, const axv_cp_reg *cp, void *user)
{
    if (cp->op0 != 3 || cp->op1 != 3 || cp->crn != 14)
        return 0; /* not a generic timer register: unicorn runs the MSR itself */
    return (*(axv_sys_cb *)user)(uc, reg, cp, user);
}
"""
SYMBOL = "axv_a64_timer_msr"


class CpReg(ctypes.Structure):
    """unicorn's ``uc_arm64_cp_reg`` (include/unicorn/arm64.h)."""

    _fields_ = (
        ("crn", ctypes.c_uint32),
        ("crm", ctypes.c_uint32),
        ("op0", ctypes.c_uint32),
        ("op1", ctypes.c_uint32),
        ("op2", ctypes.c_uint32),
        ("val", ctypes.c_uint64),
    )


SYS_HOOK = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(CpReg), ctypes.c_void_p)
"""The C signature of an MSR hook (uc_cb_insn_sys_t)."""

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: list[int | None] = []
_libraries: list[ctypes.CDLL] = []  # kept: the filter's code must outlive every engine hooked to it


def load() -> int | None:
    """The address of the compiled filter, building it on first use; None where it cannot be built."""
    with _lock:
        if not _loaded:
            _loaded.append(_build())
        return _loaded[0]


def _build() -> int | None:
    command = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "gcc") or ["gcc"]
    digest = hashlib.sha256(SOURCE.encode() + " ".join(command).encode()).hexdigest()[:20]
    target = cffi_build.cache_root() / "cffi" / f"aarch64-msr-filter-{digest}.so"
    try:
        if not target.is_file():
            if shutil.which(command[0]) is None:
                raise OSError(f"C compiler {command[0]!r} not found (apt-get install gcc)")
            target.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
            try:
                (work / "filter.c").write_text(SOURCE)
                output = work / target.name
                done = subprocess.run(
                    [*command, "-shared", "-fPIC", "-O2", "-o", str(output), str(work / "filter.c")],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode:
                    raise OSError(f"{command[0]} failed: {done.stderr.strip().splitlines()[:1]}")
                os.replace(output, target)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        library = ctypes.CDLL(str(target))
        _libraries.append(library)
        return ctypes.cast(getattr(library, SYMBOL), ctypes.c_void_p).value
    except (OSError, AttributeError) as error:
        _log.warning("soft aarch64: the C MSR filter is unavailable (%s); every MSR goes through Python", error)
        return None
