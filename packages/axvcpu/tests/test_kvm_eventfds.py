"""Guest writes served by a host thread through KVM_IOEVENTFD, never as a vCPU exit."""

from __future__ import annotations

import os
import threading

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import MmioRead, MmioWrite
from axvcpu.backends.kvm.eventfds import EventfdWatcher

from . import kvm_programs as prog
from .kvm_guest import kvm_guest

WAIT = 30.0
"""A bound on waiting for the watcher thread, so a broken build fails instead of hanging."""


def test_a_matching_mmio_write_calls_back_on_the_eventfd_thread_without_an_exit() -> None:
    called: list[int] = []
    done = threading.Event()

    def notified() -> None:
        called.append(threading.get_ident())
        done.set()

    with kvm_guest(prog.MMIO) as guest:  # first: mov dword [0x10000000], 0x12345678
        guest.backend.notify_on_write(0x1000_0000, AccessWidth.DWORD, 0x1234_5678, notified)
        assert guest.vcpu.run() == MmioRead(GuestPhysAddr(0x1000_0008), AccessWidth.DWORD)  # the write never exited
        assert done.wait(WAIT)
        assert called and called[0] != threading.get_ident()


def test_another_value_still_exits_and_calls_nothing() -> None:
    called = threading.Event()
    with kvm_guest(prog.MMIO) as guest:
        guest.backend.notify_on_write(0x1000_0000, AccessWidth.DWORD, 7, called.set)
        assert guest.vcpu.run() == MmioWrite(GuestPhysAddr(0x1000_0000), AccessWidth.DWORD, 0x1234_5678)
        guest.backend.stop_write_events()
        assert not called.is_set()


def test_a_failing_callback_is_logged_and_the_thread_serves_on() -> None:
    watcher = EventfdWatcher("test-eventfds")
    bad, good = os.eventfd(0, os.EFD_NONBLOCK), os.eventfd(0, os.EFD_NONBLOCK)
    served = threading.Event()

    def fails() -> None:
        raise RuntimeError("device bug")

    try:
        watcher.watch(bad, fails)
        watcher.watch(good, served.set)
        os.eventfd_write(bad, 1)
        os.eventfd_write(good, 1)
        assert served.wait(WAIT)
    finally:
        watcher.close()
        watcher.close()  # idempotent
        os.close(bad)
        os.close(good)


def test_no_callback_after_stop() -> None:
    watcher = EventfdWatcher("test-eventfds")
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    called = threading.Event()
    try:
        watcher.watch(fd, called.set)
        watcher.close()  # joins the thread: nothing can call back after this returns
        os.eventfd_write(fd, 1)
        assert not called.is_set()
    finally:
        os.close(fd)
