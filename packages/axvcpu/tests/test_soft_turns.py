"""The soft backends' turn lock: FIFO turns, and a hart whose lines changed served first.

Why it matters: an IPI's target waiting behind every other hart's whole slice, while the sender
spins for its answer, is what made 4-hart Linux boots slow (issue 11).
"""

from __future__ import annotations

import threading
import time

from axvcpu.backends.soft import SoftRiscvBackend, TurnLock

IRQ_MSIP = 3


def _queued(lock: TurnLock, harts: tuple[int, ...]) -> None:
    """Wait (not a timed assertion: the deadline only bounds a hang) until ``harts`` wait, in that order."""
    give_up = time.monotonic() + 30
    while lock.waiting != harts:
        assert time.monotonic() < give_up, f"waiting {lock.waiting}, expected {harts}"
        time.sleep(0.001)


def _take_turn(lock: TurnLock, hart: int, order: list[int]) -> threading.Thread:
    def body() -> None:
        with lock.for_hart(hart):
            order.append(hart)

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def _start_in_order(lock: TurnLock, harts: list[int], order: list[int]) -> list[threading.Thread]:
    threads = []
    for n, hart in enumerate(harts):
        threads.append(_take_turn(lock, hart, order))
        _queued(lock, tuple(harts[: n + 1]))
    return threads


def test_waiting_harts_get_their_turns_in_arrival_order() -> None:
    lock = TurnLock()
    order: list[int] = []
    lock.acquire(0)
    threads = _start_in_order(lock, [2, 1, 3], order)
    lock.release()
    for thread in threads:
        thread.join()
    assert order == [2, 1, 3]


def test_a_hastened_waiting_hart_goes_first_and_ends_the_holders_slice() -> None:
    ended: list[int] = []
    lock = TurnLock(ended.append)
    order: list[int] = []
    lock.acquire(0)
    threads = _start_in_order(lock, [1, 2, 3], order)
    lock.hasten(3)
    assert ended == [0]  # the holder's slice ends at once: hart 3 waits
    lock.release()
    for thread in threads:
        thread.join()
    assert order == [3, 1, 2]
    assert lock.preemptions == 1


def test_a_hart_hastened_while_halted_ends_the_holders_slice_when_it_arrives() -> None:
    ended: list[int] = []
    lock = TurnLock(ended.append)
    order: list[int] = []
    lock.acquire(0)
    threads = _start_in_order(lock, [1], order)
    lock.hasten(2)  # hart 2 is not waiting (halted in wfi): nothing to end yet
    assert ended == []
    threads.append(_take_turn(lock, 2, order))
    _queued(lock, (1, 2))  # queued behind hart 1 ...
    assert ended == [0]  # ... and its arrival ended the holder's slice
    lock.release()
    for thread in threads:
        thread.join()
    assert order == [2, 1]


def test_hastening_is_used_up_by_one_turn() -> None:
    lock = TurnLock(lambda hart: None)
    order: list[int] = []
    lock.hasten(1)
    lock.acquire(1)  # free: hart 1 takes it, and its hastening with it
    threads = _start_in_order(lock, [2], order)
    lock.release()
    threads[0].join()
    lock.acquire(0)
    threads = _start_in_order(lock, [2, 1], order)
    lock.release()
    for thread in threads:
        thread.join()
    assert order == [2, 2, 1]


def test_the_holder_hastening_itself_ends_no_slice() -> None:
    ended: list[int] = []
    lock = TurnLock(ended.append)
    lock.acquire(1)
    lock.hasten(1)
    lock.release()
    assert ended == []


def test_an_ipi_to_a_waiting_hart_gives_it_the_next_turn() -> None:
    """The backend wires each hart's lines to the lock: MSIP raised for hart 2 while harts 1 and
    2 wait behind hart 0 gives hart 2 the next turn."""
    backend = SoftRiscvBackend(3, engine="python")
    try:
        lock = backend.turns
        assert lock is not None
        order: list[int] = []
        lock.acquire(0)
        threads = _start_in_order(lock, [1, 2], order)
        backend.hart_line(2, IRQ_MSIP).set_level(True)
        assert lock.preemptions == 1
        lock.release()
        for thread in threads:
            thread.join()
        assert order == [2, 1]
    finally:
        backend.close()
