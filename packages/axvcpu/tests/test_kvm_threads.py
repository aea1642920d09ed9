"""KVM_RUN and threads: the GIL is released while the guest runs, and kicks bring a vCPU back."""

from __future__ import annotations

import threading

import pytest

from axaddrspace import AccessWidth
from axvcpu import Halt, IoWrite, Nothing

from . import kvm_programs as prog
from .kvm_guest import kvm_guest

FOREVER = 1 << 62
"""A countdown the guest never finishes: it spins until something stops the run."""
WORKER_STEPS = 100_000


@pytest.mark.timeout(60)
def test_kvm_run_releases_the_gil() -> None:
    """A Python thread watches the guest count in memory, counts itself, then kicks: every step
    needs the GIL while the vCPU thread is inside KVM_RUN, so if KVM_RUN held the GIL the run
    would never end and the test would time out."""
    with kvm_guest(prog.COUNT_IN_MEMORY, user=True) as guest:
        vcpu, memory = guest.vcpu, guest.memory
        counted = 0

        def watch_count_kick() -> None:
            nonlocal counted
            while memory.read_u64(prog.COUNTER) == 0:  # the guest is running: we are in KVM_RUN
                pass
            while counted < WORKER_STEPS:
                counted += 1
            vcpu.kick()

        worker = threading.Thread(target=watch_count_kick)
        worker.start()
        assert vcpu.run() == Nothing()
        worker.join()
        assert counted == WORKER_STEPS and memory.read_u64(prog.COUNTER) > 0


@pytest.mark.timeout(20)
def test_kick_from_another_thread_ends_a_run() -> None:
    with kvm_guest(prog.COUNT_DOWN_RCX, user=True) as guest:
        guest.vcpu.set_register("rcx", FOREVER)
        for _ in range(3):  # a kick is consumed; the next one works as well
            before = guest.vcpu.get_register("rcx")
            timer = threading.Timer(0.05, guest.vcpu.kick)
            timer.start()
            assert guest.vcpu.run() == Nothing()
            timer.join()
            assert guest.vcpu.get_register("rcx") < before  # the guest really ran until the kick


@pytest.mark.timeout(20)
def test_a_kick_before_the_run_is_not_lost() -> None:
    with kvm_guest(prog.COUNT_DOWN_RCX, user=True) as guest:
        guest.vcpu.set_register("rcx", FOREVER)
        guest.vcpu.kick()
        assert guest.vcpu.run() == Nothing()  # returns at once instead of spinning
        assert guest.vcpu.get_register("rcx") == FOREVER  # without entering the guest
        timer = threading.Timer(0.05, guest.vcpu.kick)
        timer.start()
        assert guest.vcpu.run() == Nothing()
        timer.join()
        assert guest.vcpu.get_register("rcx") < FOREVER  # the first kick was consumed, not left pending


def test_inject_from_another_thread_wakes_wait_for_interrupt() -> None:
    with kvm_guest(prog.STI_HLT, handler=prog.HANDLER_OUT_I) as guest:
        vcpu = guest.vcpu
        assert vcpu.run() == Halt()
        timer = threading.Timer(0.05, vcpu.inject_interrupt, (0x21,))
        timer.start()
        assert vcpu.wait_for_interrupt(10.0)  # woken by the injection; False: the 10 s timeout ended the wait
        timer.join()
        assert vcpu.run() == IoWrite(0x3F8, AccessWidth.BYTE, ord("I"))
