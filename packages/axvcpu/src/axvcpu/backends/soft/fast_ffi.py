"""The soft hart's C hooks (``fast_engine.c``), compiled with cffi at first use into a cache folder.

Theory of operation. Profiles of a Linux boot on unicorn (NOTES.md, "unicorn: where the time
goes") put a fifth of the time in ``emu_start(count=N)``'s per-instruction hook and most of the
trap traffic in rdtime and ecall. Unicorn takes any function pointer as a hook, and a single
hook of a type is called straight from generated code, so the C file supplies a block hook
(ends a slice on an event flag, the timer deadline or a bound) and an INTR hook (rdtime and
ecall in place, the rest handed to the Python handler). The C code does not link against
libunicorn: ``engine_functions`` takes the addresses of the entry points the Python binding has
loaded already, so the only build requirement is a C compiler and Python's headers.

The build follows the KVM binding (``kvm/_ffi.py``): lazy, in ``$AXVISOR_CACHE/cffi/<hash>``,
the hash covering the source, the register numbers and cffi's version, replaced atomically. A
missing compiler is one ``SoftEngineUnavailable`` line; the backend then runs the pure-Python
engine (``fast_slice.engine_choice``).
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from unicorn import riscv_const as rc
from unicorn import unicorn_const as uc

from ... import cffi_build

MODULE_NAME = "_axvcpu_soft_cffi"
C_FILE = Path(__file__).with_name("fast_engine.c")
APT_HINT = "apt-get install gcc python3-dev, or set AXVISOR_SOFT_ENGINE=python"

_REGISTERS = "PC PRIV X0 MSTATUS MIE MEDELEG MTVEC STVEC SEPC SCAUSE STVAL MEPC MCAUSE MTVAL SATP".split()

CDEF = r"""
typedef struct axv_clock { int64_t t0_ns; int64_t paused_ns; int64_t ns_per_tick; } axv_clock;
typedef struct axv_engine_fns {
    void *reg_read; void *reg_read_batch; void *reg_write_batch; void *emu_stop; void *vmem_read; void *hook_add;
    void *ctl; void *emu_start; void *mmio_map;
} axv_engine_fns;
typedef struct axv_hart {
    const axv_clock *clock;
    axv_engine_fns fns;
    volatile int32_t event;
    volatile int32_t timer_armed;
    volatile uint64_t mtimecmp;
    uint64_t blocks_left;
    uint32_t check_every;
    uint32_t countdown;
    int32_t stop_reason;
    int32_t ecall_mode;
    uint32_t n_watch;
    uint64_t watch[8][3];
    uint64_t time_reads;
    uint64_t ecalls;
    uint64_t alias_flushes;
    int32_t paged_entries;
    uint64_t timer_entries;
    void *fallback;
    void *fallback_user;
    uint64_t cmp_value;
    volatile int32_t cmp_posted;
    uint64_t cmp_writes;
    volatile uint32_t uart_lsr;
    uint32_t uart_len;
    uint8_t uart_tx[256];
    uint64_t uart_accesses;
    uint32_t uart_polls;
    void *uart_flush;
} axv_hart;
typedef struct axv_window { axv_hart *hart; uint64_t reg; void *read; void *write; } axv_window;
uint64_t axv_mtime(const axv_clock *clock);
int axv_install(axv_hart *h, void *uc);
int axv_run(axv_hart *h, void *uc, uint64_t begin, uint64_t until);
void axv_slice_begin(axv_hart *h, uint64_t blocks, int32_t timer_armed);
int axv_invalidate_pages(axv_hart *h, void *uc, const uint64_t *pages, size_t n);
int axv_map_window(axv_window *w, void *uc, uint64_t start, uint64_t size, int kind);
"""


class SoftEngineUnavailable(RuntimeError):
    """The C hooks cannot be built or loaded here; the message says why and how to fix it."""


_lock = threading.Lock()
_loaded: ModuleType | None = None


def load() -> ModuleType:
    """The compiled module (``.ffi``, ``.lib``), building it on first use."""
    global _loaded
    with _lock:
        if _loaded is None:
            extension = _extension()  # the C file is read once
            _loaded = cffi_build.import_module(extension, cffi_build.built_module(extension))
        return _loaded


def engine_functions(ffi: Any) -> dict[str, Any]:
    """libunicorn's entry points as ``void *`` for ``axv_engine_fns`` (the binding's own library)."""
    from unicorn.unicorn_py3.unicorn import uclib  # the CDLL the Uc objects use

    names = {
        "reg_read": "uc_reg_read",
        "reg_read_batch": "uc_reg_read_batch",
        "reg_write_batch": "uc_reg_write_batch",
        "emu_stop": "uc_emu_stop",
        "vmem_read": "uc_vmem_read",
        "hook_add": "uc_hook_add",
        "ctl": "uc_ctl",
        "emu_start": "uc_emu_start",
        "mmio_map": "uc_mmio_map",
    }
    return {
        field: ffi.cast("void *", ctypes.cast(getattr(uclib, name), ctypes.c_void_p).value or 0)
        for field, name in names.items()
    }


def source() -> str:
    """The C file with unicorn's riscv register numbers defined in front of it."""
    defines = "".join(f"#define AXV_REG_{name} {getattr(rc, 'UC_RISCV_REG_' + name)}\n" for name in _REGISTERS)
    defines += f"#define AXV_UC_HOOK_EDGE_GENERATED {uc.UC_HOOK_EDGE_GENERATED}\n"
    # UC_CTL_WRITE(UC_CTL_TLB_FLUSH, 0), as unicorn.h builds a control word: type | nargs << 26 | rw << 30
    defines += f"#define AXV_UC_CTL_TLB_FLUSH_WRITE {uc.UC_CTL_TLB_FLUSH | uc.UC_CTL_IO_WRITE << 30}\n"
    remove_cache = uc.UC_CTL_TB_REMOVE_CACHE | 2 << 26 | uc.UC_CTL_IO_WRITE << 30  # two arguments: start, end
    defines += f"#define AXV_UC_CTL_REMOVE_CACHE_WRITE {remove_cache}\n"
    return defines + C_FILE.read_text()


def _extension() -> cffi_build.Extension:
    return cffi_build.Extension(MODULE_NAME, CDEF, source(), "the soft CPU's C hooks", SoftEngineUnavailable, APT_HINT)
