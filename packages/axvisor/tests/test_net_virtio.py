"""Two virtio-net devices joined by a DgramBackend pair, driven by axdevice's test driver: a frame
sent while the peer has no receive buffer waits and arrives once the peer's driver posts one."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from axdevice.virtio import RxResult, VirtioNet
from axdevice.virtio.net.device import RECEIVEQ, TRANSMITQ
from axvisor.net import DgramBackend

DRIVER_PATH = Path(__file__).resolve().parents[2] / "axdevice" / "tests" / "test_virtio_driver.py"
HDR = bytes(12)
FRAME = bytes.fromhex("ffffffffffff525400123456 0806") + b"arp payload"


def load_driver_double():
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


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Vm:
    """One side: a virtio-net device, its guest driver, its device lock and its host link."""

    def __init__(self, driver_class, link: DgramBackend) -> None:
        self.link = link
        self.lock = threading.Lock()
        self.driver = driver_class(VirtioNet(link, on_rx_buffers=link.rx_ready))
        self.driver.init()
        device = self.driver.device

        def deliver(frame: bytes) -> RxResult:
            with self.lock:
                return device.receive_frame(frame)

        link.start(deliver)

    def used(self, index: int) -> list[tuple[int, int]]:
        with self.lock:
            return self.driver.used(index)


@pytest.fixture
def vms() -> Iterator[tuple[Vm, Vm]]:
    driver_class = load_driver_double()
    probe = DgramBackend(("127.0.0.1", 0), ("127.0.0.1", 9))
    port_a = probe.bound_address[1]
    probe.close()
    link_b = DgramBackend(("127.0.0.1", 0), ("127.0.0.1", port_a))
    link_a = DgramBackend(("127.0.0.1", port_a), ("127.0.0.1", link_b.bound_address[1]))
    a, b = Vm(driver_class, link_a), Vm(driver_class, link_b)
    yield a, b
    link_a.close()
    link_b.close()


def test_a_frame_waits_for_a_receive_buffer_then_arrives(vms: tuple[Vm, Vm]) -> None:
    a, b = vms
    with a.lock:  # the guest's transmit kick, as a vCPU makes it: under the device lock
        a.driver.post(TRANSMITQ, [HDR + FRAME])
        a.driver.kick(TRANSMITQ)
    wait_until(lambda: b.link.backlog == 1)
    assert b.driver.device.rx_dropped == 0  # it had no buffer (NO_BUFFER): the link keeps the frame
    with b.lock:
        _, (buffer,) = b.driver.post(RECEIVEQ, writable=[1600])
        b.driver.kick(RECEIVEQ)  # on_rx_buffers -> rx_ready, called under the lock
    wait_until(lambda: b.link.rx_frames == 1)
    ((_, length),) = b.used(RECEIVEQ)
    assert length == len(HDR) + len(FRAME)
    with b.lock:
        assert b.driver.memory.read(buffer + len(HDR), len(FRAME)) == FRAME
    assert b.link.backlog == 0 and a.link.tx_frames == 1 and a.driver.device.tx_frames == 1
