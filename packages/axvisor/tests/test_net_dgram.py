"""UDP network backends: two links on 127.0.0.1 as one Ethernet segment, backlog and shutdown."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from axdevice.virtio import RxResult
from axvisor.net import RX_BACKLOG_FRAMES, RX_HEAD_ATTEMPTS, DgramBackend, NetBackendError

WAIT = 5.0


class Receiver:
    """A ``deliver`` callback: takes frames while ``accepting``, counts every offer."""

    def __init__(self, accepting: bool = True) -> None:
        self.accepting = accepting
        self.frames: list[bytes] = []
        self.offers = 0
        self._cond = threading.Condition()

    def __call__(self, frame: bytes) -> RxResult:
        with self._cond:
            self.offers += 1
            if self.accepting:
                self.frames.append(frame)
            self._cond.notify_all()
            return RxResult.DELIVERED if self.accepting else RxResult.NO_BUFFER

    def wait_for(self, predicate: Callable[[Receiver], bool]) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self), WAIT), "timed out"


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def frame(n: int, size: int = 60) -> bytes:
    return bytes([0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x88, 0xB5]) + n.to_bytes(4, "big") * (size // 4)


@pytest.fixture
def pair() -> Iterator[tuple[DgramBackend, DgramBackend]]:
    port_a, port_b = free_ports(2)
    a = DgramBackend(("127.0.0.1", port_a), ("127.0.0.1", port_b))
    b = DgramBackend(("127.0.0.1", port_b), ("127.0.0.1", port_a))
    yield a, b
    a.close()
    b.close()


def test_frames_cross_both_ways(pair) -> None:
    a, b = pair
    at_a, at_b = Receiver(), Receiver()
    a.start(at_a)
    b.start(at_b)
    a.send(frame(1))
    a.send(frame(2, 1500))
    b.send(frame(3))
    at_b.wait_for(lambda r: len(r.frames) == 2)
    at_a.wait_for(lambda r: len(r.frames) == 1)
    assert at_b.frames == [frame(1), frame(2, 1500)] and at_a.frames == [frame(3)]
    assert (a.tx_frames, a.rx_frames, b.tx_frames, b.rx_frames) == (2, 1, 1, 2)


def test_refused_frames_wait_and_go_in_order_on_rx_ready(pair) -> None:
    a, b = pair
    at_b = Receiver(accepting=False)
    b.start(at_b)
    for n in range(3):
        a.send(frame(n))
    wait_until(lambda: b.backlog == 3)
    at_b.accepting = True
    b.rx_ready()
    at_b.wait_for(lambda r: len(r.frames) == 3)
    assert at_b.frames == [frame(0), frame(1), frame(2)]
    assert b.backlog == 0 and b.rx_dropped == 0 and b.rx_frames == 3


def test_backlog_is_bounded_and_overflow_counted(pair) -> None:
    a, b = pair
    b.start(Receiver(accepting=False))
    extra = 5
    for n in range(RX_BACKLOG_FRAMES + extra):  # one at a time: a socket buffer overflowing drops silently
        a.send(frame(n))
        wait_until(lambda seen=n + 1: b.backlog + b.rx_dropped == seen)
    assert b.backlog == RX_BACKLOG_FRAMES and b.rx_dropped == extra


def test_a_frame_refused_despite_fresh_buffers_is_dropped(pair) -> None:
    a, b = pair
    at_b = Receiver(accepting=False)
    b.start(at_b)
    a.send(frame(1))
    wait_until(lambda: b.backlog == 1)
    for attempt in range(RX_HEAD_ATTEMPTS):
        offers = at_b.offers
        b.rx_ready()
        at_b.wait_for(lambda r, seen=offers: r.offers > seen)
        if attempt < RX_HEAD_ATTEMPTS - 1:
            assert b.backlog == 1
    wait_until(lambda: b.backlog == 0)
    assert b.rx_dropped == 1


def test_close_stops_the_thread_and_releases_the_socket(pair) -> None:
    a, b = pair
    b.start(Receiver())
    fd = b.fileno()
    assert b.running
    b.close()
    assert not b.running
    with pytest.raises(OSError):
        os.fstat(fd)
    b.close()  # idempotent
    b.send(frame(1))
    assert b.tx_errors == 1
    b.rx_ready()  # harmless after close


def test_close_without_start_releases_the_socket(pair) -> None:
    a, _ = pair
    a.close()
    with pytest.raises(RuntimeError, match="after close"):
        a.start(Receiver())


def test_datagrams_from_elsewhere_are_ignored(pair) -> None:
    a, b = pair
    at_b = Receiver()
    b.start(at_b)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.sendto(frame(9), b.bound_address)
    wait_until(lambda: b.rx_foreign == 1)
    a.send(frame(1))
    at_b.wait_for(lambda r: len(r.frames) == 1)
    assert at_b.frames == [frame(1)]


def test_a_failing_deliver_is_counted_and_the_link_goes_on(pair) -> None:
    a, b = pair
    at_b = Receiver()

    def deliver(data: bytes) -> RxResult:
        if data == frame(1):
            raise RuntimeError("bug in the device")
        return at_b(data)

    b.start(deliver)
    a.send(frame(1))
    a.send(frame(2))
    at_b.wait_for(lambda r: len(r.frames) == 1)
    assert at_b.frames == [frame(2)] and b.rx_errors == 1


def test_send_failures_are_counted_not_raised(pair) -> None:
    a, _ = pair
    a.send(b"x" * 70000)  # more than one UDP datagram carries
    assert (a.tx_frames, a.tx_errors) == (0, 1)


def test_a_busy_local_port_is_one_line_naming_it(pair) -> None:
    a, _ = pair
    port = a.bound_address[1]
    with pytest.raises(NetBackendError) as caught:
        DgramBackend(("127.0.0.1", port), ("127.0.0.1", 9))
    message = str(caught.value)
    assert "\n" not in message
    assert f"cannot bind the UDP local address 127.0.0.1:{port}" in message and "choose a free one" in message


def test_an_unresolvable_host_is_one_line() -> None:
    with pytest.raises(NetBackendError, match=r"cannot resolve the UDP remote address no\.such\.host\.invalid:5000"):
        DgramBackend(("127.0.0.1", 0), ("no.such.host.invalid", 5000))
