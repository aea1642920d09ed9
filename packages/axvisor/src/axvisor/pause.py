"""``PauseGate``: the barrier where a paused VM's vCPU threads wait, outside the guest.

Theory of operation. A pause holds the gate, then asks the VM to let its vCPUs go
(``AxVM.request_pause`` kicks each one out of the guest; ``run_vcpu`` returns Nothing). Each
vCPU thread, at the top of the VMM's vCPU loop, sees the gate held and parks here; the manager
waits until every live vCPU thread of the current run has parked (``wait_parked``), and only
then stops the guest clock. Releasing the gate lets them re-enter the guest. A stop while
paused needs no release: a parked thread also leaves when its VM has an exit request (a stop or
a reset), checked at every wake-up, so the one shutdown path joins it as usual.

While parked, a thread runs the calls queued for its vCPU (``call``): register reads, page
walks. Each backend's vCPU is then touched only by its own thread, as when it runs.

The gate belongs to the managed VM, not to one build of it: a reset that rebuilds the VM while
the gate is held starts the new vCPU threads parked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

PARK_POLL_SECONDS = 0.1
"""How often a parked thread looks at its VM's exit request without being woken (a guest
reset requested by another vCPU just before the pause does not wake the gate)."""


class PauseGate:
    """Held while a VM is (being) paused; parked vCPU threads wait in ``park``."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._parked: set[int] = set()
        self._calls: dict[int, list[tuple[Callable[[], Any], Future[Any]]]] = {}

    @property
    def held(self) -> bool:
        """Read without the lock on every pass of the vCPU loop: a stale False costs one more
        guest entry, which the kick that follows every hold ends."""
        return self._held

    def hold(self) -> None:
        with self._cond:
            self._held = True

    def release(self) -> None:
        """Let parked threads re-enter the guest (also fails queued calls nobody will run)."""
        with self._cond:
            self._held = False
            self._fail_calls("the VM is no longer paused")
            self._cond.notify_all()

    def wake(self) -> None:
        """Make parked threads look at their VM's exit request now (after a stop or reset)."""
        with self._cond:
            self._cond.notify_all()

    def parked(self) -> frozenset[int]:
        with self._cond:
            return frozenset(self._parked)

    # -- on a vCPU thread ---------------------------------------------------------------------

    def park(self, vcpu_id: int, leave: Callable[[], bool]) -> None:
        """Wait here while the gate is held and ``leave()`` is False (the VM has no exit
        request), running the calls queued for ``vcpu_id``."""
        with self._cond:
            self._parked.add(vcpu_id)
            self._cond.notify_all()
            try:
                while self._held and not leave():
                    calls = self._calls.pop(vcpu_id, None)
                    if calls:
                        self._cond.release()
                        try:
                            _run_calls(calls)
                        finally:
                            self._cond.acquire()
                        continue
                    self._cond.wait(PARK_POLL_SECONDS)
            finally:
                self._parked.discard(vcpu_id)
                self._fail_calls_of(vcpu_id, "the vCPU left the pause")
                self._cond.notify_all()

    # -- on the manager's thread ----------------------------------------------------------------

    def wait_parked(self, expected: Callable[[], set[int] | None], timeout: float, abort: Callable[[], bool]) -> bool:
        """Wait until every vCPU in ``expected()`` (the live vCPU threads of the current run;
        None while there is no run) has parked: True; False when ``abort()`` says the VM is
        ending or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if abort():
                    return False
                wanted = expected()
                if wanted is not None and wanted <= self._parked:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, PARK_POLL_SECONDS / 2))

    def call(self, vcpu_id: int, function: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``function`` on the parked thread of ``vcpu_id`` and return its result (or raise
        its exception). RuntimeError when that vCPU is not parked or leaves first."""
        future: Future[T] = Future()
        with self._cond:
            if not self._held or vcpu_id not in self._parked:
                raise RuntimeError(f"vCPU {vcpu_id} is not parked")
            self._calls.setdefault(vcpu_id, []).append((function, future))
            self._cond.notify_all()
        return future.result(timeout)

    def _fail_calls(self, reason: str) -> None:
        for vcpu_id in list(self._calls):
            self._fail_calls_of(vcpu_id, reason)

    def _fail_calls_of(self, vcpu_id: int, reason: str) -> None:
        for _, future in self._calls.pop(vcpu_id, ()):
            future.set_exception(RuntimeError(reason))


def _run_calls(calls: list[tuple[Callable[[], Any], Future[Any]]]) -> None:
    for function, future in calls:
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(function())
        except BaseException as error:  # handed to the caller, never out of the vCPU thread
            future.set_exception(error)
