"""``KvmX86Backend``: what a VM needs from KVM, as one object (axvm's VmBackend, structurally).

It owns /dev/kvm and one KVM VM; the VM is the stage-2 mapper, makes the vCPUs and the
interrupt lines. It imports neither axvm nor axdevice: they only need its shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from axaddrspace import AccessWidth

from . import state
from .kick import install_kick_signal
from .system import Kvm
from .vcpu import KvmVCpu
from .vm import KvmIrqLine, KvmVm


class KvmX86Backend:
    """One x86_64 KVM VM with (by default) the in-kernel PIC/IOAPIC/LAPIC and PIT."""

    name = "kvm"

    def __init__(self, irqchip: bool = True) -> None:
        install_kick_signal()  # now, so the first kick never races the installation
        self._paused_clock: int | None = None
        self._kvm = Kvm()
        try:
            self._vm = KvmVm(self._kvm, irqchip=irqchip, pit=irqchip)
        except BaseException:
            self._kvm.close()
            raise

    @property
    def stage2(self) -> KvmVm:
        return self._vm

    @property
    def vm(self) -> KvmVm:
        return self._vm

    @property
    def kind(self) -> str:
        """"hardware (vmx)", "hardware (svm)", "pvm (software nested virtualization)" or "unknown"."""
        return self._kvm.kind

    def create_vcpu(self, vcpu_id: int) -> KvmVCpu:
        return self._vm.create_vcpu(vcpu_id)

    def irq_line(self, irq: int) -> KvmIrqLine:
        return self._vm.irq_line(irq)

    def notify_on_write(self, addr: int, width: AccessWidth, value: int, callback: Callable[[], object]) -> None:
        """Guest MMIO writes of ``value`` at ``width`` to ``addr`` call ``callback`` on the VM's
        eventfd thread instead of exiting (KVM_IOEVENTFD; axvm's ``WriteEvents``)."""
        self._vm.notify_on_write(addr, int(width), callback, datamatch=value)

    def set_quiet_ports(self, bitmap: bytes, sink: Callable[[int, int], object]) -> None:
        """Port accesses no device answers served inside the vCPU's run loop in C after the first
        (KvmVm.set_quiet_ports; axvm's ``QuietPorts``)."""
        self._vm.set_quiet_ports(bitmap, sink)

    def stop_write_events(self) -> None:
        """No more ``notify_on_write`` callbacks from now on (the one in progress finishes first)."""
        self._vm.stop_notifications()

    def pause_clock(self) -> None:
        """Remember the kvmclock now (axvm's GuestClock); call with every vCPU out of KVM_RUN."""
        if self._paused_clock is None:
            self._paused_clock = self._vm.get_clock()

    def resume_clock(self) -> None:
        """Set the kvmclock back to the value it had at ``pause_clock``, so a guest reading it
        sees no time pass while paused. (The TSC is not rewound: guests that keep time with it
        alone, as our test guests do not, see the pause.)"""
        if self._paused_clock is not None:
            self._vm.set_clock(self._paused_clock)
            self._paused_clock = None

    def save_machine_state(self) -> dict[str, Any]:
        """The in-kernel PIC/IOAPIC/PIT and the kvmclock (the paused value while paused), for a
        snapshot (``state.save_vm``)."""
        vm = self._vm
        clock = self._paused_clock if self._paused_clock is not None else vm.get_clock()
        return state.save_vm(vm.ffi, vm.lib, vm._ioctl_ptr, vm.irqchip, clock)

    def restore_machine_state(self, saved: Mapping[str, Any]) -> None:
        """Put ``save_machine_state``'s result back, the kvmclock last; KvmStateError naming a
        bad part."""
        vm = self._vm
        clock = state.load_vm(vm.ffi, vm.lib, vm._ioctl_ptr, vm.irqchip, saved)
        vm.set_clock(clock)

    def close(self) -> None:
        """Close the vCPUs, the VM and /dev/kvm (guest RAM belongs to the caller)."""
        self._vm.close()
        self._kvm.close()

    def __enter__(self) -> KvmX86Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
