"""A KVM x86 vCPU and VM saved mid-run (kvm/state.py) and restored into a new VM: a guest counting
down in RCX, kicked out of KVM_RUN part way, goes on counting from where it was in the new VM and
reaches its OUT; every saved part comes back byte for byte; the in-kernel PIC/IOAPIC/PIT and the
kvmclock travel with the VM's state; a saved part of the wrong size is refused naming it."""

from __future__ import annotations

import json
import threading

import pytest

from axvcpu import IoWrite, Nothing
from axvcpu.backends.kvm.state import VCPU_BLOBS, KvmStateError

from . import kvm_programs as prog
from .kvm_guest import kvm_guest

COUNT = 1 << 40
"""More iterations than the kick leaves time for: the count is part way when the guest is saved."""


def _kicked_mid_run(guest) -> int:  # type: ignore[no-untyped-def]
    guest.vcpu.set_register("rcx", COUNT)
    timer = threading.Timer(0.05, guest.vcpu.kick)
    timer.start()
    assert guest.vcpu.run() == Nothing()
    timer.join()
    left = guest.vcpu.get_register("rcx")
    assert 0 < left < COUNT
    return left


def test_a_counting_guest_saved_mid_run_counts_on_in_a_new_vm() -> None:
    with kvm_guest(prog.COUNT_DOWN_RCX, user=True, irqchip=True) as first:
        _kicked_mid_run(first)
        saved = json.loads(json.dumps(first.vcpu.save_state()))  # what a snapshot file holds
        machine = json.loads(json.dumps(first.backend.save_machine_state()))
        ram = first.memory.read(0, 0x40_0000)
        left = saved_rcx = first.vcpu.get_register("rcx")
    assert {key for key, *_ in VCPU_BLOBS} <= set(saved) and "0x10" in saved["msrs"]
    assert {"pic_master", "pic_slave", "ioapic", "pit"} <= set(machine)
    with kvm_guest(prog.SPIN, user=False, irqchip=True) as second:  # another program, another mode
        second.memory.write(0, ram)
        second.backend.restore_machine_state(machine)
        second.vcpu.load_state(saved)
        assert second.vcpu.get_register("rcx") == saved_rcx
        assert second.vcpu.save_state()["sregs"] == saved["sregs"]
        second.vcpu.set_register("rcx", min(left, 1000))  # the rest of the count, shortened to stay quick
        exit_reason = second.vcpu.run()
        while exit_reason == Nothing():
            exit_reason = second.vcpu.run()
        assert isinstance(exit_reason, IoWrite) and exit_reason.port == 0x3F8  # the OUT after the count
        assert second.vcpu.get_register("rcx") == 0


def test_the_count_left_is_the_count_saved() -> None:
    """Without shortening: the restored guest's RCX is exactly the saved one at its first run."""
    with kvm_guest(prog.COUNT_DOWN_RCX, user=True, irqchip=True) as first:
        left = _kicked_mid_run(first)
        saved = first.vcpu.save_state()
    with kvm_guest(prog.COUNT_DOWN_RCX, user=True, irqchip=True) as second:
        second.vcpu.load_state(saved)
        timer = threading.Timer(0.05, second.vcpu.kick)
        timer.start()
        assert second.vcpu.run() == Nothing()
        timer.join()
        assert 0 < second.vcpu.get_register("rcx") < left  # it counted on, down from the saved value


def test_a_part_of_the_wrong_size_is_refused_naming_it() -> None:
    with kvm_guest(prog.SPIN, user=True, irqchip=True) as guest:
        saved = guest.vcpu.save_state()
        saved["lapic"] = saved["lapic"][:-2]
        with pytest.raises(KvmStateError, match="lapic: .* bytes, this host's struct kvm_lapic_state has"):
            guest.vcpu.load_state(saved)
        machine = guest.backend.save_machine_state()
        machine["pit"] = "zz"
        with pytest.raises(KvmStateError, match="pit: not hex"):
            guest.backend.restore_machine_state(machine)
