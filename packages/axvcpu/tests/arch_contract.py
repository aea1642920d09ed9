"""The contract every ArchVCpu backend honours; backend test modules subclass it.

A subclass provides ``make_vcpu()`` returning a set-up vCPU whose first exit is a read
(MmioRead, IoRead or SysRegRead), ``exit_after_read(value)``: the exit its program reaches next
once that read is answered with ``value``, and ``register_names`` it can round-trip.
"""

from __future__ import annotations

import typing

import pytest

from axvcpu import READ_EXITS, ArchVCpu, AxVCpuExitReason


class ArchVCpuContract:
    register_names: tuple[str, ...] = ()

    def make_vcpu(self) -> ArchVCpu:
        raise NotImplementedError

    def exit_after_read(self, value: int) -> AxVCpuExitReason:
        raise NotImplementedError

    @pytest.fixture
    def vcpu(self) -> typing.Iterator[ArchVCpu]:
        vcpu = self.make_vcpu()
        yield vcpu
        vcpu.close()

    def test_registers_round_trip(self, vcpu: ArchVCpu) -> None:
        for index, name in enumerate(self.register_names):
            value = 0x1000 + index * 0x10
            vcpu.set_register(name, value)
            assert vcpu.get_register(name) == value, name

    def test_run_returns_a_decoded_exit(self, vcpu: ArchVCpu) -> None:
        exit_reason = vcpu.run()
        assert isinstance(exit_reason, typing.get_args(AxVCpuExitReason))

    def test_first_exit_is_a_read_that_can_be_completed(self, vcpu: ArchVCpu) -> None:
        exit_reason = vcpu.run()
        assert isinstance(exit_reason, READ_EXITS)
        vcpu.complete_read(0x5A)
        assert vcpu.run() == self.exit_after_read(0x5A)  # the guest went on with the answer

    def test_unknown_register_is_rejected(self, vcpu: ArchVCpu) -> None:
        with pytest.raises((KeyError, ValueError)):
            vcpu.get_register("no-such-register")
