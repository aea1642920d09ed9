"""The VMM driving whole VMs on the scripted backend: threads, outcomes, isolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from axaddrspace import AccessWidth, GuestPhysAddr
from axvcpu import CpuUp, FailEntry, Halt, MmioRead, MmioWrite, ScriptedVCpu
from axvisor import UserError, build_vm, run_vms, summarise
from axvm import ScriptedBackend, parse_config

RISCV = """
[base]
id = 1
name = "{name}"
vm_type = 1
cpu_num = 2
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "{image}"
kernel_load_addr = 0x8000_0000
dtb_path = "{image}"
dtb_load_addr = 0x80f0_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [["uart", 0x1000_0000, 0x100, 10, 0x2, []], ["test", 0x10_0000, 0x1000, 0, 0x82, []]]
"""

POWEROFF = MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, 0x5555)


def config(tmp_path: Path, name: str = "vm", image: bytes = b"\x13\x00\x00\x00" * 4):
    path = tmp_path / f"{name}.bin"
    path.write_bytes(image)
    return parse_config(RISCV.format(name=name, image=path))


def test_images_are_loaded_and_the_guest_powers_off(tmp_path) -> None:
    output: list[bytes] = []
    backend = ScriptedBackend({0: [MmioWrite(GuestPhysAddr(0x1000_0000), AccessWidth.BYTE, ord("x")), POWEROFF]})
    vm = build_vm(config(tmp_path, image=b"IMAGE"), backend, output.append)
    assert vm.addrspace.memory.read(GuestPhysAddr(0x8000_0000), 5) == b"IMAGE"
    assert vm.addrspace.memory.read(GuestPhysAddr(0x80f0_0000), 5) == b"IMAGE"
    (outcome,) = run_vms([vm])
    assert outcome.exit_code == 0 and "powered off" in outcome.reason
    assert output == [b"x"]


def test_secondary_vcpu_starts_on_cpu_up_and_halts_are_waited_out(tmp_path) -> None:
    # vCPU 0 halts until vCPU 1's power-off stops it, so the outcome does not depend on timing.
    backend = ScriptedBackend({0: [CpuUp(1, GuestPhysAddr(0x8000_0000)), *[Halt()] * 10_000],
                               1: [Halt(), MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, (4 << 16) | 0x3333)]})
    vm = build_vm(config(tmp_path), backend)
    (outcome,) = run_vms([vm])
    assert outcome.exit_code == 4
    assert backend.vcpus[1].exits_left == 0


def test_one_failing_vm_does_not_stop_another(tmp_path) -> None:
    class Exploding(ScriptedVCpu):
        def run(self):
            raise OSError("KVM_RUN: Bad address")

    failing = build_vm(config(tmp_path, "bad"), ScriptedBackend(vcpu_factory=lambda i: Exploding([])))
    failed_entry = build_vm(config(tmp_path, "entry"), ScriptedBackend({0: [FailEntry(0x21, "invalid state")]}))
    healthy = build_vm(config(tmp_path, "good"), ScriptedBackend({0: [MmioRead(GuestPhysAddr(0x1000_0005),
                                                                               AccessWidth.BYTE), POWEROFF]}))
    outcomes = run_vms([failing, failed_entry, healthy])
    assert [o.exit_code for o in outcomes] == [1, 1, 0]
    assert "OSError" in outcomes[0].reason and "invalid state" in outcomes[1].reason
    assert summarise(outcomes) == 1
    assert summarise(outcomes[2:]) == 0


def test_image_that_does_not_fit_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="<config>: kernel.dtb_path: .*does not fit in guest RAM"):
        build_vm(config(tmp_path, image=b"\0" * 0x100_0001), ScriptedBackend())


def test_missing_image_is_a_user_error(tmp_path) -> None:
    cfg = config(tmp_path)
    cfg.kernel.kernel_path.unlink()
    with pytest.raises(UserError, match="kernel.kernel_path: .* does not exist"):
        build_vm(cfg, ScriptedBackend())
