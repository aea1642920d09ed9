"""Host callbacks for a VM's ioeventfds: one thread per VM waits on all of them.

With KVM_IOEVENTFD, a guest write that matches (address, length, value) is finished inside KVM,
which only signals an eventfd: the vCPU goes straight back into the guest, and no exit reaches
Python. Somebody still has to act on the write; here one thread per VM, started at the first
registration, waits on every such eventfd with epoll and calls the callback registered with
it (virtio's QueueNotify: the device serves the queue there, under the device lock its callback
takes, while the vCPU runs on). A callback that raises is logged and the thread carries on.
Several writes before the thread wakes are one callback: the eventfd counts them, and a queue
notification means "look at the queue", however often it was sent.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class EventfdWatcher:
    """Calls ``callback`` on its own thread each time a watched eventfd is signalled."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._epoll = select.epoll()
        self._stop = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._epoll.register(self._stop, select.EPOLLIN)
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback`` whenever ``fd`` (an eventfd; the caller owns it) is signalled."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: the eventfd watcher is closed")
            self._callbacks[fd] = callback
            self._epoll.register(fd, select.EPOLLIN)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()

    @property
    def watched(self) -> int:
        return len(self._callbacks)

    def _serve(self) -> None:
        while True:
            for fd, _ in self._epoll.poll():
                if fd == self._stop:
                    return
                try:
                    os.eventfd_read(fd)  # resets the count: all writes so far are this one call
                except BlockingIOError:
                    continue
                callback = self._callbacks.get(fd)
                if callback is None:
                    continue
                try:
                    callback()
                except Exception:
                    log.exception("%s: callback %r for eventfd %d failed", self._name, callback, fd)

    def close(self) -> None:
        """Stop the thread (after the callback in progress) and forget the fds; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        os.eventfd_write(self._stop, 1)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._epoll.close()
        os.close(self._stop)
        self._callbacks.clear()
