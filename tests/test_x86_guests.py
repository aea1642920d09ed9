"""The x86_64 test guests, end to end on KVM through `axvisor run`: output, exit status, SMP,
interrupts, MMIO devices, memory, the interactive console, and failures named by RIP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from axaddrspace import GuestPhysAddr
from axvcpu import SystemDown
from axvm import load_config

from .vmm_watch import watch, watch_result

ROOT = Path(__file__).parent.parent
CONFIGS = ROOT / "configs" / "vms"
pytestmark = pytest.mark.usefixtures("kvm", "guests")


def axvisor(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return watch_result(subprocess.run([sys.executable, "-m", "axvisor", *args], capture_output=True, text=True,
                                       timeout=timeout, stdin=subprocess.DEVNULL, cwd=ROOT))


def test_hello_prints_and_powers_off_with_status_0() -> None:
    result = axvisor("run", str(CONFIGS / "hello-x86_64-kvm-smp1.toml"))
    assert result.returncode == 0, result.stderr
    assert "Hello from an x86_64 guest at CPL3\ncmdline: greeting=hello\n" in result.stdout


def test_a_config_written_elsewhere_is_honoured(tmp_path: Path, guests: Path) -> None:
    """A config from `axvisor generate` (not one of ours): its load address, entry point, memory
    regions and command line are taken as written; the guest's debug-exit status comes back."""
    config = tmp_path / "mine.toml"
    generated = axvisor("generate", "-a", "x86_64", "-n", "mine", "-k", str(guests / "hello.bin"),
                        "-l", "0x100000", "-e", "0x100000", "-m", "0x0:0x1000000", "-m", "0x2000000:0x100000",
                        "--cmdline", "exit=5", "--backend", "kvm", "-O", str(config))
    assert generated.returncode == 0, generated.stderr
    result = axvisor("run", str(config))
    assert "cmdline: exit=5" in result.stdout
    assert result.returncode == (5 << 1) | 1


def test_mmio_device_reads_back_what_the_guest_wrote() -> None:
    result = axvisor("run", str(CONFIGS / "mmio-x86_64-kvm-smp1.toml"))
    assert "mmio ok" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0


def test_interrupts_from_the_lapic_timer_and_the_uart() -> None:
    result = axvisor("run", str(CONFIGS / "irq-x86_64-kvm-smp1.toml"), timeout=300)
    assert "irq ok" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0


def test_every_vcpu_reports_its_apic_id() -> None:
    result = axvisor("run", str(CONFIGS / "smp-x86_64-kvm-smp4.toml"))
    lines = sorted(line for line in result.stdout.splitlines() if line.startswith("cpu "))
    assert lines == [f"cpu {i} apic {i} lapic {i}" for i in range(4)], result.stdout + result.stderr
    assert "all 4 cpus reported" in result.stdout
    assert result.returncode == 0


def test_memory_pattern_is_visible_from_the_host() -> None:
    from axvcpu.backends.kvm import KvmX86Backend
    from axvisor import build_vm

    config = load_config(CONFIGS / "memory-x86_64-kvm-smp1.toml")
    output: list[bytes] = []
    vm = build_vm(config, KvmX86Backend(), output.append)
    vm.boot()
    try:
        while not isinstance(exit_reason := vm.run_vcpu(0), SystemDown):
            pass
        assert exit_reason == SystemDown(0), b"".join(output)
        assert b" 0 bad" in b"".join(output)
        memory = vm.addrspace.memory
        for addr in (0x40_0000, 0x200_0000, 0x3FF_FFF8, 0x1_0000_0000, 0x1_01FF_FFF8):
            expected = (addr * 0x9E3779B97F4A7C15 ^ 0xA5A5A5A5A5A5A5A5) & (1 << 64) - 1
            assert memory.read_u64(GuestPhysAddr(addr)) == expected, hex(addr)
    finally:
        vm.stop()


def test_triple_fault_is_one_line_naming_rip(tmp_path: Path) -> None:
    image = tmp_path / "ud2.bin"
    image.write_bytes(b"\x0f\x0b")  # ud2 with no IDT: #UD -> #GP -> double fault -> triple fault
    text = (CONFIGS / "hello-x86_64-kvm-smp1.toml").read_text()
    text = text.replace('"../../build/guests/hello.bin"', f'"{image}"')
    config = tmp_path / "ud2.toml"
    config.write_text(text)
    result = axvisor("run", str(config))
    assert result.returncode == 1
    assert "triple fault" in result.stderr and "RIP 0x100000" in result.stderr.replace("0x0000000000100000", "0x100000")
    assert "Traceback" not in result.stderr


def test_console_input_reaches_the_guest_and_ctrl_a_x_quits() -> None:
    child = watch(pexpect.spawn(sys.executable, ["-m", "axvisor", "run", str(CONFIGS / "echo-x86_64-kvm-smp1.toml")],
                                cwd=str(ROOT), timeout=60, encoding="utf-8"))
    try:
        child.expect("echo ready")
        child.send("hello")
        child.expect("HELLO")
        child.send("\x01x")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_console_dot_line_powers_off() -> None:
    child = watch(pexpect.spawn(sys.executable, ["-m", "axvisor", "run", str(CONFIGS / "echo-x86_64-kvm-smp1.toml")],
                                cwd=str(ROOT), timeout=60, encoding="utf-8"))
    try:
        child.expect("echo ready")
        child.send("ok\r.\r")
        child.expect("bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_port_writes_no_device_answers_stay_in_kvm_after_the_first(tmp_path: Path, guests: Path) -> None:
    """500 writes to port 0x80 (no device): one exits (the bus logs it), the rest are answered in
    the KVM backend's C run loop, and all 500 are in the port bus's unhandled count."""
    from axvcpu import IoWrite
    from axvcpu.backends.kvm import KvmX86Backend
    from axvisor import build_vm
    from axvm import BusKind

    config = tmp_path / "post.toml"
    config.write_text(f"""
[base]
id = 1
name = "post"
vm_type = 1
cpu_num = 1
arch = "x86_64"
backend = "kvm"

[kernel]
entry_point = 0x10_0000
kernel_path = "{guests / 'bench.bin'}"
kernel_load_addr = 0x10_0000
cmdline = "n=500 port=128"
memory_regions = [[0x0, 0x100_0000, 0x7, 0]]
""")
    vm = build_vm(load_config(config), KvmX86Backend())
    vm.boot()
    try:
        assert vm.run_vcpu(0) == SystemDown(0)
        assert vm.devices.unhandled()[BusKind.PORT].writes == 500
        assert vm.exit_counts[0][IoWrite] == 2  # the first write to 0x80, and the power-off at 0x604
    finally:
        vm.stop()
