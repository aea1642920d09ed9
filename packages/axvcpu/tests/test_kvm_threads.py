"""KVM_RUN and threads: the GIL is released while the guest runs, and kicks bring a vCPU back."""

from __future__ import annotations

import threading
import time

import pytest

from axaddrspace import AccessWidth
from axvcpu import Halt, IoWrite, Nothing

from . import kvm_programs as prog
from .kvm_guest import kvm_guest

LOOPS = 300_000_000
"""Guest loop iterations: ~0.1 s at CPL3 on PVM (native speed), about the same on hardware."""


def test_kvm_run_releases_the_gil() -> None:
    with kvm_guest(prog.COUNT_DOWN_RCX, user=True) as guest:
        guest.vcpu.set_register("rcx", LOOPS)
        progress = 0
        stop = threading.Event()

        def count() -> None:
            nonlocal progress
            while not stop.is_set():
                progress += 1

        worker = threading.Thread(target=count)
        worker.start()
        try:
            time.sleep(0.01)  # let the worker get going
            before = progress
            started = time.perf_counter()
            exit_reason = guest.vcpu.run()  # returns only when the guest loop is done
            elapsed = time.perf_counter() - started
            during = progress - before
        finally:
            stop.set()
            worker.join()
        assert exit_reason == IoWrite(0x3F8, AccessWidth.BYTE, 0)
        assert elapsed > 0.02, "the guest loop was too short to tell"
        # With the GIL held for the whole call, the worker could not run at all meanwhile.
        assert during > 10_000, f"the worker advanced only {during} times in {elapsed:.3f} s of KVM_RUN"


@pytest.mark.timeout(20)
def test_kick_from_another_thread_ends_a_run() -> None:
    with kvm_guest(prog.SPIN, user=True) as guest:
        for _ in range(3):  # a kick is consumed; the next one works as well
            timer = threading.Timer(0.05, guest.vcpu.kick)
            timer.start()
            started = time.perf_counter()
            assert guest.vcpu.run() == Nothing()
            timer.join()
            assert time.perf_counter() - started >= 0.04  # the guest really ran until the kick


@pytest.mark.timeout(20)
def test_a_kick_before_the_run_is_not_lost() -> None:
    with kvm_guest(prog.SPIN, user=True) as guest:
        guest.vcpu.kick()
        assert guest.vcpu.run() == Nothing()  # returns at once instead of spinning
        timer = threading.Timer(0.05, guest.vcpu.kick)
        timer.start()
        started = time.perf_counter()
        assert guest.vcpu.run() == Nothing()
        timer.join()
        assert time.perf_counter() - started >= 0.04  # the first kick was consumed, not left pending


def test_inject_from_another_thread_wakes_wait_for_interrupt() -> None:
    with kvm_guest(prog.STI_HLT, handler=prog.HANDLER_OUT_I) as guest:
        vcpu = guest.vcpu
        assert vcpu.run() == Halt()
        timer = threading.Timer(0.05, vcpu.inject_interrupt, (0x21,))
        timer.start()
        started = time.perf_counter()
        vcpu.wait_for_interrupt(10.0)
        assert time.perf_counter() - started < 5.0
        timer.join()
        assert vcpu.run() == IoWrite(0x3F8, AccessWidth.BYTE, ord("I"))
