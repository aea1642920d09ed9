"""Random datagrams from a network peer into a host link and on into virtio-net's receive path.

A peer picks every datagram's size (0 bytes, a byte, a full frame, over 64 KiB) and contents,
and the guest picks how many receive buffers it posts and how big. Whatever arrives, every
datagram ends up counted exactly once (delivered, dropped or still waiting), frames reach the
guest whole and in order, nothing raises on the reader thread, and the device keeps running.
UDP cannot carry more than 65507 bytes, so the link here reads a Unix datagram socket: the same
FrameLink reader as DgramBackend's, with datagrams past 64 KiB possible.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axdevice.virtio import DeviceStatus, RxResult, VirtioNet
from axdevice.virtio.net.device import RECEIVEQ
from axdevice.virtio.net.request import HEADER_SIZE, MAX_FRAME_SIZE
from axvisor.net import DgramBackend
from axvisor.net.link import READ_SIZE, FrameLink

DRIVER_PATH = Path(__file__).resolve().parents[2] / "axdevice" / "tests" / "test_virtio_driver.py"
SIZES = st.one_of(
    st.sampled_from([0, 1, 13, 14, 60, 1514, 1515, 9000, 65507, MAX_FRAME_SIZE, MAX_FRAME_SIZE + 1, 70000]),
    st.integers(0, 2000),
)


def frame_of(size: int, tag: int) -> bytes:
    """``size`` bytes starting with ``tag``, so frames of one size tell apart."""
    pattern = bytes([tag & 0xFF]) + bytes(range(256))
    return (pattern * (size // len(pattern) + 1))[:size]


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll for an event the reader thread makes happen (a liveness bound, not a timing check)."""
    deadline = time.monotonic() + 20
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


class PairLink(FrameLink):
    """FrameLink over one end of a Unix datagram socket pair; ``peer`` is the other end."""

    def __init__(self) -> None:
        self.peer, self._sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (self.peer, self._sock):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.setblocking(False)
        super().__init__(self._sock.fileno(), "pair")

    def _recv(self) -> bytes | None:
        return self._sock.recv(READ_SIZE)  # as DgramBackend: one datagram, cut at READ_SIZE

    def _transmit(self, frame: bytes) -> None:
        self._sock.send(frame)

    def _release_io(self) -> None:
        self._sock.close()
        self.peer.close()


def accounted(link: FrameLink) -> int:
    return link.rx_frames + link.rx_dropped + link.rx_errors + link.backlog


@settings(max_examples=40)
@given(
    sizes=st.lists(SIZES, min_size=1, max_size=12),
    answers=st.lists(st.sampled_from(["take", "take", "refuse", "drop", "raise"]), max_size=12),
)
def test_every_datagram_is_counted_once_and_frames_arrive_whole_in_order(sizes: list[int], answers: list) -> None:
    """``deliver`` plays the device: it takes, refuses (no buffer yet), drops or raises, as scripted."""
    sent = [frame_of(size, i) for i, size in enumerate(sizes)]
    taken: list[bytes] = []
    offered: list[bytes] = []
    dropped_at: list[int] = []  # where in ``offered`` a frame was dropped
    script = iter(answers)
    results = {"take": RxResult.DELIVERED, "refuse": RxResult.NO_BUFFER, "drop": RxResult.DROPPED}

    def deliver(frame: bytes) -> RxResult:
        offered.append(frame)
        answer = next(script, "take")
        if answer == "raise":
            raise RuntimeError("device bug")
        if answer == "take":
            taken.append(frame)
        if answer == "drop":
            dropped_at.append(len(offered) - 1)
        return results[answer]

    link = PairLink()
    try:
        link.start(deliver)
        for frame in sent:
            link.peer.send(frame)
        wait_until(lambda: accounted(link) == len(sent), "every datagram to be read")
        while link.backlog:  # the guest posts buffers until every waiting frame is taken or given up
            link.rx_ready()
            time.sleep(0.002)
            assert accounted(link) == len(sent)
    finally:
        link.close()
    assert all(1 <= len(frame) <= MAX_FRAME_SIZE for frame in offered), sorted({len(f) for f in offered})
    assert is_subsequence(taken, sent) and link.rx_frames == len(taken)
    assert link.rx_errors == answers[: len(offered)].count("raise")
    assert link.rx_dropped >= len(dropped_at) and accounted(link) == len(sent)
    for at in dropped_at:  # a frame the device dropped is never offered again
        assert offered[at] not in offered[at + 1 :]


def is_subsequence(part: list[bytes], whole: list[bytes]) -> bool:
    rest = iter(whole)
    return all(any(item == candidate for candidate in rest) for item in part)


# -- on into a virtio-net device and the guest's buffers ----------------------------------------


def driver_class():
    if not DRIVER_PATH.exists():
        pytest.skip(f"needs the monorepo's virtio driver double at {DRIVER_PATH}")
    spec = importlib.util.spec_from_file_location("axdevice_test_virtio_driver", DRIVER_PATH)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up while being built
        spec.loader.exec_module(module)
    return module.VirtioDriver


@settings(max_examples=30)
@given(
    sizes=st.lists(SIZES, min_size=1, max_size=8),
    buffers=st.lists(
        st.sampled_from([HEADER_SIZE, 60 + HEADER_SIZE, 1526, 2048, MAX_FRAME_SIZE + HEADER_SIZE]), max_size=6
    ),
)
def test_peer_frames_reach_the_guest_buffers_whole(sizes: list[int], buffers: list[int]) -> None:
    sent = [frame_of(size, i) for i, size in enumerate(sizes)]
    link = PairLink()
    lock = threading.Lock()
    driver = driver_class()(VirtioNet(link, on_rx_buffers=link.rx_ready))
    driver.init()
    device = driver.device
    with lock:
        posted = {}
        for size in buffers:
            head, (addr,) = driver.post(RECEIVEQ, writable=[size])
            posted[head] = (addr, size)
        driver.kick(RECEIVEQ)

    def deliver(frame: bytes) -> RxResult:
        with lock:  # as axvm's deliver: receive_frame under the VM's device lock
            return device.receive_frame(frame)

    try:
        link.start(deliver)
        for frame in sent:
            link.peer.send(frame)
        wait_until(lambda: accounted(link) == len(sent), "every datagram to be read")
    finally:
        link.close()
    assert link.rx_errors == 0  # the device never raised
    assert link.rx_dropped >= device.rx_dropped  # what the device dropped, the link counted
    used = driver.used(RECEIVEQ)
    assert len(used) <= len(sent)  # a frame costs the guest at most one buffer
    assert not driver.status & DeviceStatus.DEVICE_NEEDS_RESET
    arrived = []
    for head, length in used:
        addr, size = posted[head]
        assert length == 0 or HEADER_SIZE < length <= size
        if length:
            data = driver.memory.read(addr, length)
            assert data[:HEADER_SIZE] == bytes(10) + b"\x01\x00"  # no offloads, num_buffers = 1
            arrived.append(data[HEADER_SIZE:])
    assert is_subsequence(arrived, sent) and all(1 <= len(frame) <= MAX_FRAME_SIZE for frame in arrived)
    assert link.rx_frames == device.rx_frames == len(arrived)


def test_an_empty_udp_datagram_is_dropped_not_delivered() -> None:
    """A 0-byte datagram carries no frame: it went to the guest as a buffer holding only the
    virtio header (Linux counts a length error for it)."""
    probe = DgramBackend(("127.0.0.1", 0), ("127.0.0.1", 9))
    port = probe.bound_address[1]
    probe.close()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    link = DgramBackend(("127.0.0.1", port), peer.getsockname())
    offered: list[bytes] = []
    try:
        link.start(lambda frame: offered.append(frame) or RxResult.DELIVERED)
        peer.sendto(b"", ("127.0.0.1", port))
        peer.sendto(b"\x01" * 60, ("127.0.0.1", port))
        wait_until(lambda: accounted(link) == 2, "both datagrams to be read")
    finally:
        link.close()
        peer.close()
    assert offered == [b"\x01" * 60] and (link.rx_frames, link.rx_dropped) == (1, 1)


def test_a_frame_too_big_for_the_guest_buffers_costs_one_buffer() -> None:
    """Regression: a 9000-byte frame and five 1526-byte buffers. The device returned the buffer it
    took empty and said "not taken", so the link offered the frame again and again, each offer
    costing a buffer, until none was left for the 100-byte frame behind it."""
    big, small = frame_of(9000, 1), frame_of(100, 2)
    link = PairLink()
    lock = threading.Lock()
    driver = driver_class()(VirtioNet(link, on_rx_buffers=link.rx_ready))
    driver.init()
    device = driver.device
    with lock:
        heads = [driver.post(RECEIVEQ, writable=[1526]) for _ in range(5)]
        driver.kick(RECEIVEQ)

    def deliver(frame: bytes) -> RxResult:
        with lock:
            return device.receive_frame(frame)

    try:
        link.start(deliver)
        link.peer.send(big)
        link.peer.send(small)
        wait_until(lambda: link.rx_frames == 1 and link.rx_dropped == 1, "the small frame to arrive")
    finally:
        link.close()
    (first, (_,)), (second, (addr,)) = heads[:2]
    assert driver.used(RECEIVEQ) == [(first, 0), (second, HEADER_SIZE + len(small))]
    assert driver.memory.read(addr + HEADER_SIZE, len(small)) == small
    assert (device.rx_frames, device.rx_dropped, link.backlog) == (1, 1, 0)
