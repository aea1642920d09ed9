"""``ConsoleHub``: one managed VM's console, shared by everyone who watches or types into it.

Output (on vCPU threads) goes to the VM's log file, to a ring of recent bytes and to every
subscriber; a subscriber or a log that fails never reaches the guest. Input is queued here,
bounded by ``CONSOLE_INPUT_MAX``, and pushed into the guest's console by the manager's input
thread as the guest takes it (a 16550 takes 16 bytes at a time), under the VM's device lock.
The hub outlives each build of its VM (a reset or a restart keeps the log and subscribers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .console import ConsoleTarget
from .vmtypes import CONSOLE_HISTORY_BYTES, CONSOLE_INPUT_MAX, ConsoleSubscription

log = logging.getLogger(__name__)


class ConsoleHub:
    """Output fan-out, history and queued input of one VM's console."""

    def __init__(self, vm_id: int, log_path: Path | None, echo: Callable[[int, bytes], object] | None = None) -> None:
        self.vm_id = vm_id
        self.log_path = log_path
        self._echo = echo
        self._lock = threading.Lock()
        self._history = bytearray()
        self._subscribers: tuple[ConsoleSubscription, ...] = ()
        self._log = open(log_path, "ab") if log_path is not None else None  # closed by close()
        self._pending = bytearray()
        self.tx_bytes = 0
        """Bytes the guest wrote to its console since the last ``mark_boot``."""
        self.rx_bytes = 0
        """Bytes of input the guest's console took since the last ``mark_boot``."""
        self.dropped_input = 0
        self.log_errors = 0
        self.boot_ns = 0
        self.first_byte_ns: int | None = None

    def mark_boot(self) -> None:
        """A start or reset begins a boot: the boot timer and the byte counters start again."""
        self.boot_ns = time.monotonic_ns()
        self.first_byte_ns = None
        self.tx_bytes = self.rx_bytes = 0

    # -- output (vCPU threads) -------------------------------------------------------------------

    def output(self, data: bytes) -> None:
        """The console sink the VM is built with."""
        if not data:
            return
        if self.first_byte_ns is None:
            self.first_byte_ns = time.monotonic_ns()
        with self._lock:
            self.tx_bytes += len(data)
            self._history += data
            if len(self._history) > CONSOLE_HISTORY_BYTES:
                del self._history[: len(self._history) - CONSOLE_HISTORY_BYTES]
            if self._log is not None:
                try:
                    self._log.write(data)
                    self._log.flush()
                except (OSError, ValueError):  # a full disk loses log bytes, never the VM
                    self.log_errors += 1
        for subscription in self._subscribers:
            try:
                subscription.callback(data)
            except Exception:  # a broken subscriber is dropped, the guest goes on
                log.exception("VM %d: a console subscriber failed; it is dropped", self.vm_id)
                subscription.close()
        if self._echo is not None:
            try:
                self._echo(self.vm_id, data)
            except Exception:
                log.exception("VM %d: the console echo failed", self.vm_id)

    def history(self) -> bytes:
        with self._lock:
            return bytes(self._history)

    def subscribe(self, callback: Callable[[bytes], object]) -> ConsoleSubscription:
        subscription = ConsoleSubscription(self.vm_id, callback, self._unsubscribe)
        with self._lock:
            self._subscribers = (*self._subscribers, subscription)
        return subscription

    def _unsubscribe(self, subscription: ConsoleSubscription) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not subscription)

    # -- input -------------------------------------------------------------------------------------

    def queue_input(self, data: bytes) -> int:
        """Queue what fits under CONSOLE_INPUT_MAX; how many bytes were queued."""
        with self._lock:
            room = max(0, CONSOLE_INPUT_MAX - len(self._pending))
            taken = data[:room]
            self._pending += taken
            self.dropped_input += len(data) - len(taken)
            return len(taken)

    @property
    def has_input(self) -> bool:
        return bool(self._pending)

    def drop_input(self) -> None:
        with self._lock:
            self.dropped_input += len(self._pending)
            self._pending.clear()

    def push_input(self, target: ConsoleTarget) -> None:
        """Push queued input into the console ``target`` names (input thread); what the guest
        does not take yet stays queued; a VM without a console drops it."""
        with self._lock:
            data = bytes(self._pending)
        if not data:
            return
        where = target()
        if where is None:
            self.drop_input()
            return
        port, device_lock = where
        with device_lock:
            accepted = port.push_input(data)
        with self._lock:
            del self._pending[:accepted]
            self.rx_bytes += accepted

    # -- teardown ----------------------------------------------------------------------------------

    def close(self, remove_log: bool = False) -> None:
        """End every subscription and close the log (deleting it with ``remove_log``)."""
        for subscription in self._subscribers:
            subscription.close()
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None
        if remove_log and self.log_path is not None:
            try:
                self.log_path.unlink()
            except FileNotFoundError:
                pass
            except OSError as error:
                log.warning("VM %d: cannot remove its console log %s: %s", self.vm_id, self.log_path, error)
