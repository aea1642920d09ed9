from __future__ import annotations

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import ArchVCpu, AxVCpuExitReason, Halt, IoRead, ScriptedVCpu, SystemDown

from .arch_contract import ArchVCpuContract


class StrictScriptedVCpu(ScriptedVCpu):
    """The scripted backend with a fixed register file, so unknown names are rejected."""

    NAMES = ("pc", "sp", "a0")

    def get_register(self, name: str) -> int:
        if name not in self.NAMES:
            raise KeyError(name)
        return super().get_register(name)


class TestScriptedContract(ArchVCpuContract):
    register_names = StrictScriptedVCpu.NAMES

    def make_vcpu(self) -> ArchVCpu:
        vcpu = StrictScriptedVCpu([IoRead(0x3F8, AccessWidth.BYTE), Halt()])
        vcpu.setup(GuestPhysAddr(0x1000), None)
        return vcpu

    def exit_after_read(self, value: int) -> AxVCpuExitReason:
        return Halt()  # the script's next exit; the answer is kept in completed_reads


def test_script_is_replayed_in_order_then_system_down() -> None:
    vcpu = ScriptedVCpu([Halt(), IoRead(0x60, AccessWidth.BYTE)])
    vcpu.setup(GuestPhysAddr(0x8000), None)
    assert vcpu.get_register("pc") == 0x8000
    assert vcpu.run() == Halt()
    assert vcpu.run() == IoRead(0x60, AccessWidth.BYTE)
    vcpu.complete_read(7)
    assert vcpu.completed_reads == [7]
    assert vcpu.exits_left == 0
    assert vcpu.run() == SystemDown(0)
