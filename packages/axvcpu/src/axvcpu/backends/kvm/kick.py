"""Kicking a vCPU thread out of KVM_RUN: the immediate_exit flag plus a harmless signal.

A kick first sets ``kvm_run.immediate_exit`` (so a KVM_RUN about to start returns at once) and
then sends a signal to the vCPU's thread (so a KVM_RUN in progress returns with EINTR). The
signal needs a handler that does nothing: the default action of SIGUSR1 would kill the process.
``install_kick_signal`` installs one at the C level (sigaction with SA_RESTART), so unlike a
Python handler it can be installed from any thread and costs the interpreter nothing per kick.
"""

from __future__ import annotations

import signal
import threading

from ._ffi import load
from .errors import check

DEFAULT_KICK_SIGNAL = signal.SIGUSR1

_lock = threading.Lock()
_installed: int | None = None


def install_kick_signal(signum: int = DEFAULT_KICK_SIGNAL) -> int:
    """Make ``signum`` interrupt KVM_RUN without killing the process; returns the kick signal.

    Idempotent; any thread may call it. A Python handler already set for ``signum`` is kept
    (it interrupts KVM_RUN just as well); an ignored signal is refused, as it could not
    interrupt anything. Afterwards, resetting ``signum`` to SIG_DFL would make kicks fatal.
    """
    global _installed
    with _lock:
        if _installed is not None:
            if _installed != signum:
                raise ValueError(f"the kick signal is already {signal.Signals(_installed).name}")
            return _installed
        current = signal.getsignal(signum)
        name = signal.Signals(signum).name
        if current is signal.SIG_IGN:
            raise RuntimeError(f"{name} is ignored in this process, so it cannot kick a vCPU out of KVM_RUN; "
                               f"restore it with signal.signal({name}, signal.SIG_DFL)")
        if current is signal.SIG_DFL:
            check(load().lib.axv_install_noop_handler(signum), f"sigaction({name})")
        _installed = signum
        return signum


def kick_signal() -> int:
    """The installed kick signal (installing the default one if none is yet)."""
    return _installed if _installed is not None else install_kick_signal()
