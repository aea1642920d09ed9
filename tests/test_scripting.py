"""axvisor.VM, the in-process scripting API, on a real guest: Debian's U-Boot on the soft riscv
CPU reads and writes a device made of two Python functions (U-Boot's md/mw), an exit observer
sees the vCPU's exits, a paused VM's registers and memory are read, and hooks come back after a
reset rebuilds the VM. Waits are bounded only so that a hang fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from axvisor import VM
from axvisor.manager import BadRequest, VMState

from .host_tools import require

CONFIG = Path(__file__).parent.parent / "configs" / "vms" / "uboot-riscv64-virt-smp1.toml"
PROMPT = "=> "
PROBE = 0x2000_0000  # nothing of the riscv virt machine sits here
pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def vm() -> VM:
    machine = VM.from_config(CONFIG)
    yield machine
    machine.close()


def test_a_python_device_answers_u_boot_and_sees_its_writes(vm: VM) -> None:
    writes: list[tuple[int, int, int]] = []
    vm.on_mmio(
        PROBE,
        0x1000,
        read=lambda offset, size: 0xA5000000 | offset,
        write=lambda offset, size, value: writes.append((offset, size, value)),
    )
    vm.start()
    vm.expect(PROMPT, timeout=300)
    vm.send(f"md.l {PROBE + 0x10:#x} 2\n")
    vm.expect(r"a5000010 a5000014", timeout=60)
    vm.expect(PROMPT, timeout=60)
    vm.send(f"mw.l {PROBE + 0x8:#x} 0x1234abcd\n")
    vm.expect(PROMPT, timeout=60)
    assert writes == [(0x8, 4, 0x1234ABCD)]


def test_hooks_survive_a_reset_and_can_be_removed(vm: VM) -> None:
    exits: list[tuple[int, str]] = []
    observer = vm.on_exit(None, lambda vcpu, exit: exits.append((vcpu, type(exit).__name__)))
    vm.on_mmio(PROBE, 0x1000, read=lambda offset, size: 0x600D)
    vm.start()
    vm.expect(PROMPT, timeout=300)
    assert exits and {vcpu for vcpu, _ in exits} == {0}
    vm.reset()
    vm.expect(PROMPT, timeout=300)
    vm.send(f"md.l {PROBE:#x} 1\n")
    vm.expect("0000600d", timeout=60)
    vm.expect(PROMPT, timeout=60)
    observer.remove()
    seen = len(exits)
    vm.send("version\n")
    vm.expect(PROMPT, timeout=60)
    assert len(exits) == seen


def test_a_paused_vms_registers_and_memory(vm: VM) -> None:
    vm.start()
    vm.expect(PROMPT, timeout=300)
    vm.pause()
    assert vm.state is VMState.PAUSED
    registers = vm.vcpus[0].registers
    assert 0x8000_0000 <= registers["pc"] < 0x8800_0000
    vm.memory[0x8700_0000:0x8700_0010] = bytes(range(16))
    assert vm.memory[0x8700_0000:0x8700_0010] == bytes(range(16))
    vm.resume()
    vm.send("md.b 0x87000000 4\n")
    vm.expect("00 01 02 03", timeout=60)


def test_a_device_over_ram_or_a_bad_slice_is_refused_naming_the_field(vm: VM) -> None:
    with pytest.raises(BadRequest, match="overlaps guest RAM") as error:
        vm.on_mmio(0x8000_0000, 0x1000)
    assert error.value.field == "base"
    with pytest.raises(BadRequest) as error:
        vm.memory[0x8000_0010:0x8000_0000]
    assert error.value.field == "size"


def test_the_readme_example_runs_on_riscv_linux() -> None:
    """The README's scripting example, run as written: Linux's devmem reads and writes a device
    the script adds to the running VM."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Scripting a VM from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def hvc_program_disk(folder: Path) -> Path:
    """An ext4 disk holding /hvc, the riscv64 program making AxVisor hypercalls (guests/riscv/hvc.S)."""
    require("riscv64-linux-gnu-as", "riscv64-linux-gnu-ld", why="assembles the riscv64 hypercall program")
    require("mke2fs", "debugfs", why="builds the ext4 disk holding the program")
    guests = Path(__file__).parent / "guests" / "riscv"
    run = {"check": True, "capture_output": True, "timeout": 300}
    subprocess.run(
        ["riscv64-linux-gnu-as", "-I", str(guests), "-o", str(folder / "hvc.o"), str(guests / "hvc.S")], **run
    )
    subprocess.run(
        ["riscv64-linux-gnu-ld", "-static", "--no-relax", "-o", str(folder / "hvc"), str(folder / "hvc.o")], **run
    )
    disk = folder / "disk.ext4"
    builder = Path(__file__).parent.parent / "scripts" / "build-disk-image.py"
    subprocess.run([sys.executable, str(builder), "--size", "8M", "--bench-size", "0", "--output", str(disk),
                    "--extra-file", f"{folder / 'hvc'}:/hvc"], **run)  # fmt: skip
    return disk


def test_a_linux_program_calls_axvisors_hypercalls(tmp_path: Path) -> None:
    """A static program in a riscv Linux guest makes AxVisor hypercalls: Debug is served by the
    VMM, a code a Python hook serves answers its value, an unserved code NOT_SUPPORTED."""
    disk = hvc_program_disk(tmp_path)
    config = tmp_path / "linux-hvc.toml"
    text = (CONFIG.parent / "linux-riscv64-virt-smp1.toml").read_text()
    text = text.replace('disk_path = "~/.cache/axvisor/riscv64/disk-vm.ext4"', f'disk_path = "{disk}"')
    config.write_text(text.replace('"~/', f'"{Path.home()}/'))
    calls: list[tuple[int, tuple[int, ...]]] = []
    with VM.from_config(config) as vm:
        vm.on_hypercall(0x40, lambda vcpu, args: calls.append((vcpu, args)) or args[0] * 2)
        vm.start()
        vm.expect("axvisor# ", timeout=600)
        vm.send("mount -o ro /dev/vda /mnt && /mnt/hvc\n")
        line = vm.expect(r"hvc:( [0-9a-f]{16}){4}", timeout=120).decode().rsplit("hvc:", 1)[1].split()
    assert [int(word, 16) for word in line] == [0, 0, 42, (1 << 64) - 2]
    assert [(vcpu, args[0], len(args)) for vcpu, args in calls] == [(0, 21, 6)]  # a0..a5 as the guest left them
