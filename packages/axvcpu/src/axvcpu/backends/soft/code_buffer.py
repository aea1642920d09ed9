"""Give an idle engine's translated code back to the host.

unicorn mmaps one translation buffer per engine (``ctl_set_tcg_buffer_size``) and asks for
huge pages on it; every page a boot ever filled stays resident, although after a full flush of
the translations the buffer holds nothing live past the prologue at its start (unicorn 2.1,
tcg.c: the prologue is generated at the buffer's start, and translation regions begin after
it; ``tb_flush`` rewinds them). A riscv Linux boot fills ~44 MiB of the 64 MiB buffer; an idle
shell then runs a few hundred KiB of it. So a hart that has only waited for interrupts for a
while has its translations flushed, the buffer past the prologue handed back
(``MADV_DONTNEED``: anonymous pages read as zero when touched again, and unicorn writes code
before it runs it), and glibc's free heap pages trimmed (the flush frees the per-translation
bookkeeping). The guest sees nothing but the time to translate its idle loop again.

Finding the buffer: unicorn allocates it when the engine initialises, which reading the buffer
size does. ``locate`` compares this process's writable+executable anonymous mappings before
and after; one new mapping of the buffer's size (less unicorn's trailing guard page) is it, and
anything else (no new mapping, several) gives None: nothing is ever released then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

IDLE_SECONDS = 2.0
"""How long a hart must have done nothing but wait for interrupts before its code is released:
a quiet shell releases within a few seconds, while a working guest (which leaves its waits for
more than BUSY_GAP) keeps its translations."""
BUSY_GAP = 0.05
"""Time out of the waits that counts as work: an idle Linux hart runs its idle loop and the odd
timer tick between waits in well under this, a command or I/O takes longer."""
PROLOGUE_SPARE = 64 << 10
"""What stays at the buffer's start: unicorn's prologue (a few hundred bytes of host code every
translation jumps through), rounded well up."""
MAX_MERGED = 1 << 20
"""A new buffer mapping may have merged with an adjacent writable+executable page (a libffi
closure); bigger than this it is not the buffer."""
_MADV_DONTNEED = 4
_MAPS = "/proc/self/maps"


def _rwx_mappings() -> set[tuple[int, int]]:
    """This process's anonymous writable+executable private mappings, ``(start, end)``."""
    try:
        with open(_MAPS) as maps:
            lines = maps.read().splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        fields = line.split()
        if len(fields) == 5 and fields[1] == "rwxp" and fields[4] == "0":  # no path: anonymous
            start, _, end = fields[0].partition("-")
            found.add((int(start, 16), int(end, 16)))
    return found


class _Libc:
    """glibc's madvise and malloc_trim, or None where they are not there (another libc)."""

    def __init__(self) -> None:
        import ctypes  # here: only a release needs it (unicorn's binding has loaded it by then)

        self.madvise: Any = None
        self.malloc_trim: Any = None
        try:
            libc = ctypes.CDLL(None)  # the interpreter's own C library (ctypes.util costs a subprocess)
        except OSError:
            return
        madvise = getattr(libc, "madvise", None)
        if madvise is not None:
            madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            madvise.restype = ctypes.c_int
        trim = getattr(libc, "malloc_trim", None)
        if trim is not None:
            trim.argtypes = [ctypes.c_size_t]
            trim.restype = ctypes.c_int
        self.madvise, self.malloc_trim = madvise, trim


_libc: _Libc | None = None


def _the_libc() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


@dataclass(frozen=True)
class CodeBuffer:
    """Where one engine's translations live: ``[start, end)``, with its prologue at ``start``."""

    start: int
    end: int

    @property
    def releasable(self) -> tuple[int, int]:
        """``(address, length)`` that may be dropped once the engine's translations are flushed."""
        first = self.start + PROLOGUE_SPARE
        return first, max(self.end - first, 0)

    def release(self) -> bool:
        """Drop the buffer's pages past the prologue, then trim malloc's free pages. Call it with
        the engine stopped, open, and its translations just flushed (``ctl_flush_tb``), on the
        thread that owns the engine. False where the host refused (nothing changed then)."""
        libc = _the_libc()
        address, length = self.releasable
        if libc.madvise is None or length == 0:
            return False
        if libc.madvise(address, length, _MADV_DONTNEED) != 0:
            return False
        if libc.malloc_trim is not None:
            libc.malloc_trim(0)
        return True


def locate(uc: Any) -> CodeBuffer | None:
    """The translation buffer of ``uc``, a new engine not yet initialised (call it straight
    after ``ctl_set_tcg_buffer_size``): this initialises it. None where it cannot be told."""
    before = _rwx_mappings()
    size = uc.ctl_get_tcg_buffer_size()  # initialises the engine, which maps the buffer
    span = size - os.sysconf("SC_PAGE_SIZE")  # unicorn turns the buffer's last page into a guard page
    new = [(start, end) for start, end in _rwx_mappings() - before if span <= end - start <= span + MAX_MERGED]
    if len(new) != 1:
        return None
    start, end = new[0]
    return CodeBuffer(end - span, end)  # a merged neighbour can only sit below the buffer


class IdleRelease:
    """Decides when a hart's code is released: once per quiet stretch, after it has spent
    IDLE_SECONDS only waiting for interrupts. The hart reports each wait's start and end
    (``time.monotonic()``); a gap between waits longer than BUSY_GAP is work and starts a new
    stretch. The first gap after a release (translating the idle loop again) does not count."""

    def __init__(
        self, buffer: CodeBuffer | None, idle_seconds: float | None = None, busy_gap: float | None = None
    ) -> None:
        """``idle_seconds``, ``busy_gap``: IDLE_SECONDS and BUSY_GAP as they are now by default."""
        self.buffer = buffer
        self.idle_seconds = IDLE_SECONDS if idle_seconds is None else idle_seconds
        self.busy_gap = BUSY_GAP if busy_gap is None else busy_gap
        self.releases = 0
        self._quiet_since: float | None = None
        self._last_end: float | None = None
        self._released = False
        self._just_released = False

    def waited(self, start: float, end: float) -> bool:
        """The hart waited from ``start`` to ``end``; True: flush its translations and call
        ``release`` now."""
        if self.buffer is None:
            return False
        last = self._last_end
        self._last_end = end
        if last is None or (start - last > self.busy_gap and not self._just_released):
            self._quiet_since = start
            self._released = False
        self._just_released = False
        assert self._quiet_since is not None
        return not self._released and end - self._quiet_since >= self.idle_seconds

    def release(self) -> bool:
        """Hand the buffer back (see ``CodeBuffer.release``, same conditions)."""
        if self.buffer is None:
            return False
        self._released = True
        self._just_released = True
        self.releases += 1
        return self.buffer.release()
