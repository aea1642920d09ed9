"""Why ``axvisor run`` stops, recorded safely from signal handlers and other threads.

Every way out of ``axvisor run`` (a stop signal, Ctrl-A x, the last VM ending, an exception in
the VMM) ends in the one shutdown path of ``session.run_session``, which runs on the main
thread. ``StopRequest`` is how the others reach it: it records the first reason to stop and
wakes the main thread through a pipe. A signal handler does nothing else (no locks, no I/O but
one byte), so it is safe wherever the signal interrupts the main thread, and a second signal
during the shutdown only adds a byte. The interpreter's C-level wakeup fd points at the same
pipe, so a signal the kernel delivers to a vCPU thread still wakes the main thread's select().
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
"""Signals that stop every VM in order; the exit status is then 128 + the signal number."""

SIGNAL_STATUS_BASE = 128
"""As a shell reports a process a signal ended: 130 for SIGINT, 143 for SIGTERM."""

QUIT_REASON = "quit from the console (Ctrl-A x)"


class StopRequest:
    """The first reason to stop (a signal, or Ctrl-A x) and a pipe that wakes the main thread.

    ``settle()`` fixes the reason: signals arriving later (during the shutdown) change nothing.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.signal: int | None = None
        self.quit = False
        self.late_signals = 0
        """Signals that arrived once the reason was settled (they are ignored)."""
        self._settled = False

    # -- any thread, or a signal handler ------------------------------------------------------

    def wake(self) -> None:
        """Make ``wait`` return (a VM ended, or a reason to stop was recorded)."""
        with contextlib.suppress(OSError):  # a full pipe wakes the reader already; closed: nobody waits
            os.write(self._write, b"\0")

    def request_quit(self) -> None:
        """Ctrl-A x: stop every VM, exit status from their outcomes (0 for a VM stopped here)."""
        if not self._settled:
            self.quit = True
        self.wake()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None and not self._settled:
            self.signal = signum
        else:
            self.late_signals += 1
        self.wake()

    # -- the main thread ----------------------------------------------------------------------

    @property
    def requested(self) -> bool:
        return self.quit or self.signal is not None

    def wait(self, timeout: float | None = None) -> None:
        """Block until ``wake`` (or a caught signal) or ``timeout``; drain the pipe."""
        readable, _, _ = select.select([self._read], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 512):
                    pass

    def settle(self) -> tuple[int, str] | None:
        """Fix the reason to stop now: (exit code, reason) for every VM still running, or None."""
        self._settled = True
        if self.signal is not None:
            return SIGNAL_STATUS_BASE + self.signal, f"stopped by {signal.Signals(self.signal).name}"
        if self.quit:
            return 0, QUIT_REASON
        return None

    @property
    def exit_status(self) -> int | None:
        """128 + the signal that stopped the run, if one did."""
        return None if self.signal is None else SIGNAL_STATUS_BASE + self.signal

    @contextlib.contextmanager
    def catching_signals(self) -> Iterator[StopRequest]:
        """Route STOP_SIGNALS here while the block runs; the previous handlers come back after.

        Only the main thread can install handlers; elsewhere (a test harness) nothing changes.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        try:
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._on_signal)
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            signal.set_wakeup_fd(previous_fd)

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> StopRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
