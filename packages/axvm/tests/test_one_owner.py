"""Facts that had two homes now have one, which every user takes them from."""

from __future__ import annotations

import pytest

import axaddrspace
import axvm
from axdevice import EmuDeviceType
from axvcpu import IllegalTransition, Lifecycle
from axvm import VM_TRANSITIONS, IllegalVMTransition, VMState, check_vm_transition
from axvm.lifecycle import VM_LIFECYCLE
from axvm.machines.x86 import layout


def test_the_vm_lifecycle_is_the_vcpu_lifecycles_helper_over_its_own_table() -> None:
    assert isinstance(VM_LIFECYCLE, Lifecycle) and VM_LIFECYCLE.table is VM_TRANSITIONS
    with pytest.raises(IllegalVMTransition, match="VM 'web': cannot go from STOPPED to RUNNING") as info:
        check_vm_transition("web", VMState.STOPPED, VMState.RUNNING)
    assert isinstance(info.value, IllegalTransition)
    assert info.value.current is VMState.STOPPED and info.value.wanted is VMState.RUNNING


def test_exit_dispatch_sign_extends_with_the_address_space_packages_function() -> None:
    assert axvm.sign_extend is axaddrspace.sign_extend
    assert axaddrspace.sign_extend(0x80, 8, 64) == (1 << 64) - 0x80


def test_the_virtio_types_are_said_once() -> None:
    virtio = {t for t in EmuDeviceType if t.is_virtio}
    assert virtio == {
        EmuDeviceType.VirtioBlk,
        EmuDeviceType.VirtioNet,
        EmuDeviceType.VirtioConsole,
        EmuDeviceType.VirtioRng,
    }


def test_the_x86_command_line_is_cut_and_terminated_in_one_place() -> None:
    assert layout.cmdline_image(b"console=ttyS0") == b"console=ttyS0\0"
    long = layout.cmdline_image(b"x" * layout.CMDLINE_MAX)
    assert len(long) == layout.CMDLINE_MAX and long.endswith(b"x\0")
