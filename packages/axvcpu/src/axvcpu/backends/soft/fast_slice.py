"""``FastHart``: one hart's C hooks (``fast_engine.c``) and the flags other threads raise.

Theory of operation. With the C engine a slice is ``emu_start`` with no count: the C block hook
ends it, before the block runs, when the event flag is set (any thread: an interrupt line, a
kick, an IPI, a stage-2 or code change) or after a bound of blocks. When mtime reaches the
hart's mtimecmp the block hook stops the engine, and ``axv_run`` enters the machine timer
interrupt in C and runs on, in the same slice, if the guest takes it now (MTIE set; in S or U
mode, or in M mode with MIE): a Linux boot takes thousands, and ending a slice for each so
Python could enter it cost a fifth of the boot. A deadline nobody enabled is ignored until
mtimecmp is written again; one masked in M mode ends the slice, for Python (firmware at a wfi
reads mip next). The flag
is only read on the hart's own thread, inside its run, so nothing stops unicorn from outside
(which corrupted boots, NOTES.md). The C INTR hook answers rdtime and enters ecall traps; what
it does not handle (and the ecalls the ecall observer watches) reaches the Python handler.

``engine_choice`` picks the engine: ``AXVISOR_SOFT_ENGINE=c|python`` or the backend's
``engine=``; by default C when it builds here, else Python with one warning line.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable
from typing import Any

from unicorn import UcError

from .fast_ffi import SoftEngineUnavailable, engine_functions, load

ENGINE_ENV = "AXVISOR_SOFT_ENGINE"
ENGINES = ("c", "python")
NO_TIMER = (1 << 64) - 1
CHECK_EVERY = 64
"""Blocks between two looks at the clock: a few microseconds of guest time, so a timer
deadline is met that late at most, while clock_gettime stays off most blocks."""

STOP_EVENT, STOP_BOUND, STOP_TIMER = 1, 2, 3
WINDOW_TIMER, WINDOW_UART = 1, 2
"""``FastHart.map_window`` kinds (fast_engine.c's AXV_WINDOW_*)."""
_MAX_WATCH = 8
_INTR_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
_VOID_CB = ctypes.CFUNCTYPE(None)
_MMIO_READ_CB = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_void_p)
_MMIO_WRITE_CB = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_uint64, ctypes.c_void_p
)
_log = logging.getLogger(__name__)
_warned = False


def engine_choice(requested: str | None = None) -> str:
    """``"c"`` or ``"python"``: ``requested``, else ``$AXVISOR_SOFT_ENGINE``, else C if it builds."""
    global _warned
    value = (requested or os.environ.get(ENGINE_ENV) or "auto").strip().lower()
    if value == "python":
        return "python"
    if value not in ("c", "auto"):
        raise ValueError(f"soft CPU engine {value!r} ({ENGINE_ENV} or engine=): expected one of {', '.join(ENGINES)}")
    try:
        load()
    except SoftEngineUnavailable as error:
        if value == "c":
            raise
        if not _warned:
            _warned = True
            _log.warning("%s; running the slower pure-Python soft CPU engine", error)
        return "python"
    return "c"


class FastClock:
    """The VM clock's state as the C hooks read it (the backend keeps it equal to its own)."""

    def __init__(self, t0_ns: int, ns_per_tick: int) -> None:
        module = load()
        self._lib = module.lib
        self.ptr: Any = module.ffi.new("axv_clock *")
        self.ptr.t0_ns = t0_ns
        self.ptr.paused_ns = -1
        self.ptr.ns_per_tick = ns_per_tick

    def update(self, t0_ns: int, paused_ns: int | None) -> None:
        self.ptr.t0_ns = t0_ns
        self.ptr.paused_ns = -1 if paused_ns is None else paused_ns

    def mtime(self) -> int:
        """What rdtime in C answers now."""
        return int(self._lib.axv_mtime(self.ptr))


class FastHart:
    """The C hooks installed on one engine; ``fallback(intno)`` handles what C leaves."""

    def __init__(self, clock: FastClock, uc: Any, fallback: Callable[[int], None]) -> None:
        """``uc``: the binding's ``Uc`` (its ``_uch`` handle is what the hooks are installed on)."""
        module = load()
        ffi, lib = module.ffi, module.lib
        self._lib = lib
        self._ffi = ffi
        self._binding = uc
        self._uc = ffi.cast("void *", uc._uch.value)
        self._fallback = fallback
        self.hook_error: BaseException | None = None
        h = ffi.new("axv_hart *")
        self._clock = clock  # the struct must outlive the hooks that read it
        h.clock = clock.ptr
        for field, address in engine_functions(ffi).items():
            setattr(h.fns, field, address)
        h.mtimecmp = NO_TIMER
        h.check_every = CHECK_EVERY
        self._callback = _INTR_CB(self._on_fallback)  # kept referenced: C holds its address
        self._windows: dict[int, tuple[Any, tuple[Any, ...]]] = {}
        self._uart_sink: Callable[[bytes], None] | None = None
        self._flush_callback = _VOID_CB(self._on_uart_flush)
        h.uart_flush = ffi.cast("void *", ctypes.cast(self._flush_callback, ctypes.c_void_p).value or 0)
        h.fallback = ffi.cast("void *", ctypes.cast(self._callback, ctypes.c_void_p).value or 0)
        self._h = h
        self._watching: object = object()  # the observer the watch table was built for
        err = lib.axv_install(h, self._uc)
        if err:
            raise RuntimeError(f"uc_hook_add failed installing the soft CPU's C hooks (unicorn error {err})")

    def _on_fallback(self, _uc: int | None, intno: int, _user: int | None) -> None:
        try:
            self._fallback(intno)
        except BaseException as error:  # never unwind through C: reported after the slice
            self._hook_failed(error)

    def _hook_failed(self, error: BaseException) -> None:
        if self.hook_error is None:
            self.hook_error = error
        self._h.event = 1  # and the slice ends at the next block

    # -- any thread ---------------------------------------------------------------------------

    def raise_event(self) -> None:
        """End the running slice at its next block (a no-op cost when none runs)."""
        self._h.event = 1

    def set_mtimecmp(self, value: int) -> None:
        """A new compare value: armed, since firmware enables MTIE right after writing one."""
        self._h.mtimecmp = value
        self._h.cmp_value = value
        self._h.timer_armed = 1

    # -- the hart's thread ----------------------------------------------------------------------

    def clear_event(self) -> None:
        """Forget events already seen: called before the slice's lines and requests are taken."""
        self._h.event = 0

    def invalidate_pages(self, pages: list[int]) -> None:
        """Drop the translations of these guest physical pages (RAM only), in one C call."""
        if pages:
            err = self._lib.axv_invalidate_pages(self._h, self._uc, self._ffi.new("uint64_t[]", pages), len(pages))
            if err:
                raise RuntimeError(f"uc_ctl_remove_cache failed (unicorn error {err})")

    def map_window(
        self,
        kind: int,
        start: int,
        size: int,
        reg: int,
        read: Callable[[int, int], int],
        write: Callable[[int, int, int], None],
    ) -> None:
        """Map the device window ``[start, +size)`` with the registers of ``kind`` (WINDOW_TIMER:
        this hart's mtimecmp; WINDOW_UART: a 16550's LSR and THR) ``reg`` bytes into it served
        in C, and every other access by ``read(offset, size)`` / ``write(offset, size, value)``."""

        def on_read(_uc: int | None, offset: int, size: int, _user: int | None) -> int:
            try:
                return read(offset, size)
            except BaseException as error:  # never unwind through C: reported after the slice
                self._hook_failed(error)
                return 0

        def on_write(_uc: int | None, offset: int, size: int, value: int, _user: int | None) -> None:
            try:
                write(offset, size, value)
            except BaseException as error:
                self._hook_failed(error)

        callbacks = (_MMIO_READ_CB(on_read), _MMIO_WRITE_CB(on_write))
        ffi = self._ffi
        window = ffi.new("axv_window *")
        window.hart = self._h
        window.reg = reg
        window.read, window.write = (
            ffi.cast("void *", ctypes.cast(cb, ctypes.c_void_p).value or 0) for cb in callbacks
        )
        err = self._lib.axv_map_window(window, self._uc, start, size, kind)
        if err:
            raise UcError(err)
        self._windows[start] = (window, callbacks)  # C holds their addresses while mapped

    def unmapped_window(self, start: int) -> None:
        """The window at ``start`` is unmapped: its callbacks may go."""
        self._windows.pop(start, None)

    def take_posted_mtimecmp(self) -> int | None:
        """The mtimecmp value the guest wrote in C since the last call, to replay to the device;
        None when it wrote none."""
        h = self._h
        if not h.cmp_posted:
            return None
        h.cmp_posted = 0
        return int(h.cmp_value)

    @property
    def mtimecmp_writes(self) -> int:
        """Guest writes to the hart's mtimecmp taken in C."""
        return int(self._h.cmp_writes)

    def set_uart_sink(self, sink: Callable[[bytes], None]) -> None:
        """Where the THR bytes collected in C go: handed over by C at a newline or a full
        buffer, and by ``flush_uart``."""
        self._uart_sink = sink

    def flush_uart(self) -> None:
        """Hand the sink the THR bytes collected in C since the last hand-over."""
        h = self._h
        if h.uart_len and self._uart_sink is not None:
            data = bytes(self._ffi.buffer(h.uart_tx, h.uart_len))
            h.uart_len = 0
            self._uart_sink(data)

    def allow_uart(self, lsr: int) -> None:
        """Serve LSR reads (answering ``lsr``) and THR writes in C; 0: send them to Python."""
        self._h.uart_lsr = lsr

    @property
    def uart_accesses(self) -> int:
        """UART LSR reads and THR writes taken in C."""
        return int(self._h.uart_accesses)

    def _on_uart_flush(self) -> None:
        try:
            self.flush_uart()
        except BaseException as error:  # never unwind through C: reported after the slice
            self._hook_failed(error)

    def begin(self, blocks: int, timer_armed: bool) -> None:
        self._lib.axv_slice_begin(self._h, blocks, 1 if timer_armed else 0)

    def run(self, begin: int, until: int) -> None:
        """The slice begun by ``begin``, from PC ``begin``: the binding's ``emu_start``, with due
        timer interrupts entered in C between runs; raises as ``emu_start`` does."""
        uc = self._binding
        uc._hook_exception = None  # what the binding's hook wrappers record, as emu_start reads it
        status = self._lib.axv_run(self._h, self._uc, begin, until)
        if status:
            raise UcError(status)
        if uc._hook_exception is not None:
            raise uc._hook_exception

    @property
    def stop_reason(self) -> int:
        """STOP_EVENT/STOP_BOUND/STOP_TIMER when the block hook ended the slice, else 0."""
        return int(self._h.stop_reason)

    @property
    def time_reads(self) -> int:
        return int(self._h.time_reads)

    @property
    def ecalls(self) -> int:
        return int(self._h.ecalls)

    @property
    def alias_flushes(self) -> int:
        """TLB flushes after new translations (made only while paging may have filled the TLB)."""
        return int(self._h.alias_flushes)

    @property
    def timer_entries(self) -> int:
        """Machine timer interrupts the block hook entered."""
        return int(self._h.timer_entries)

    def watch_ecalls(self, observer: object, always: tuple[tuple[int, int, int | None], ...] = ()) -> None:
        """Route to Python only the ecalls ``observer`` may answer True for (its ``watched_calls``:
        (priv, a7, a6 or None) triples) and those in ``always``; every ecall when the observer
        does not say which."""
        if observer is self._watching:
            return
        self._watching = observer
        h = self._h
        observed = getattr(observer, "watched_calls", None) if observer is not None else ()
        watched = None if observed is None else (*observed, *always)
        if watched is None or len(watched) > _MAX_WATCH:
            h.ecall_mode = 0
            return
        for i, (priv, a7, a6) in enumerate(watched):
            h.watch[i][0] = priv
            h.watch[i][1] = a7
            h.watch[i][2] = NO_TIMER if a6 is None else a6
        h.n_watch = len(watched)
        h.ecall_mode = 1
