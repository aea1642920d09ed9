"""KVM_GET_CLOCK / KVM_SET_CLOCK, and the backend's pause of the guest clock built on them."""

from __future__ import annotations

import time

from axvcpu.backends.kvm import KvmX86Backend

from .kvm_guest import require_kvm


def test_set_clock_moves_the_kvmclock_and_it_counts_on() -> None:
    require_kvm()
    with KvmX86Backend() as backend:
        backend.vm.set_clock(5_000_000_000)
        after = backend.vm.get_clock()
        assert 5_000_000_000 <= after < 6_000_000_000  # set, then counting from there
        later = backend.vm.get_clock()
        assert later >= after


def test_a_paused_kvmclock_does_not_count_the_pause() -> None:
    """Measured, not timed: the clock's advance across a pause is compared with the pause's own
    length on the host's clock; it must be a small fraction of it (only the ioctl round trips)."""
    require_kvm()
    with KvmX86Backend() as backend:
        before = backend.vm.get_clock()
        host_before = time.monotonic_ns()
        backend.pause_clock()
        time.sleep(0.3)
        backend.resume_clock()
        advance = backend.vm.get_clock() - before
        paused = time.monotonic_ns() - host_before
        assert advance < paused // 4, (advance, paused)
