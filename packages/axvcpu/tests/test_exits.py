from __future__ import annotations

import dataclasses
import typing

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr, MappingFlags
from axvcpu import (
    AxVCpuExitReason,
    IoWrite,
    MmioRead,
    NestedPageFault,
    Unsupported,
)

AXVISOR_EXIT_NAMES = {
    "MmioRead", "MmioWrite", "IoRead", "IoWrite", "SysRegRead", "SysRegWrite", "Hypercall", "Halt",
    "CpuUp", "CpuDown", "SystemDown", "Nothing", "FailEntry", "ExternalInterrupt", "NestedPageFault",
    "SendIpi",
}


def test_every_axvisor_exit_reason_exists_plus_unsupported() -> None:
    names = {cls.__name__ for cls in typing.get_args(AxVCpuExitReason)}
    assert names == AXVISOR_EXIT_NAMES | {"Unsupported"}


@pytest.mark.parametrize("cls", typing.get_args(AxVCpuExitReason))
def test_exits_are_frozen_dataclasses(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_exit_values_compare_and_cannot_change() -> None:
    a = MmioRead(GuestPhysAddr(0x1000_0000), AccessWidth.BYTE)
    assert a == MmioRead(GuestPhysAddr(0x1000_0000), AccessWidth.BYTE)
    assert a != MmioRead(GuestPhysAddr(0x1000_0001), AccessWidth.BYTE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.addr = GuestPhysAddr(0)  # type: ignore[misc]
    assert IoWrite(0xF4, AccessWidth.BYTE, 3) != IoWrite(0xF4, AccessWidth.BYTE, 4)  # the data is compared too
    assert len({a, MmioRead(GuestPhysAddr(0x1000_0000), AccessWidth.BYTE)}) == 1  # equal values hash alike
    fault = NestedPageFault(GuestPhysAddr(0x2000), MappingFlags.WRITE)
    assert fault != NestedPageFault(GuestPhysAddr(0x2000), MappingFlags.READ)


def test_unsupported_keeps_the_raw_code() -> None:
    exit_reason = Unsupported(code=42, detail="KVM_EXIT_X86_BUS_LOCK")
    assert exit_reason.code == 42 and "BUS_LOCK" in exit_reason.detail
