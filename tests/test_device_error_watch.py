"""The device-error check reaches VMM processes: a device raising inside a VMM run as a process
shows in its log, where the workspace's autouse fixture (conftest.py) finds it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from . import vmm_watch

ROOT = Path(__file__).parent.parent

# A VMM process whose one VM reads twice from a device that raises, then powers off.
PROGRAM = textwrap.dedent("""
    import logging, sys
    from axaddrspace import AccessWidth, AddrRange, GuestPhysAddr
    from axdevice import BaseDeviceOps, EmuDeviceType
    from axvcpu import MmioRead, MmioWrite
    from axvisor import build_vm, run_vms
    from axvm import ScriptedBackend, parse_config

    class Faulty(BaseDeviceOps):
        emu_type = EmuDeviceType.Dummy
        address_range = AddrRange.from_start_size(0x2000_0000, 0x1000)
        def handle_read(self, addr, width):
            raise ZeroDivisionError("device bug")
        def handle_write(self, addr, width, value):
            pass

    logging.basicConfig(format="axvisor: %(levelname)s: %(message)s")
    config = parse_config('''
    [base]
    id = 1
    name = "faulty"
    vm_type = 1
    cpu_num = 1
    arch = "riscv64"
    [kernel]
    entry_point = 0x8000_0000
    kernel_path = "{image}"
    kernel_load_addr = 0x8000_0000
    memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]
    [devices]
    emu_devices = [["test", 0x10_0000, 0x1000, 0, 0x82, []]]
    ''')
    read = MmioRead(GuestPhysAddr(0x2000_0000), AccessWidth.DWORD)
    poweroff = MmioWrite(GuestPhysAddr(0x10_0000), AccessWidth.DWORD, 0x5555)
    vm = build_vm(config, ScriptedBackend({{0: [read, read, poweroff]}}))
    vm.buses.mmio.add(Faulty())
    sys.exit(run_vms([vm])[0].exit_code)
""")


@pytest.mark.device_errors_expected
def test_a_device_raising_in_a_vmm_process_is_found_in_its_output(tmp_path: Path) -> None:
    image = tmp_path / "image.bin"
    image.write_bytes(b"\x13\x00\x00\x00")
    command = [sys.executable, "-c", PROGRAM.format(image=image)]
    result = vmm_watch.watch_result(subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT))
    assert result.returncode == 0, result.stderr  # the guest went on: the bus answered both reads
    lines = vmm_watch.device_error_lines()
    assert len(lines) == 2, result.stderr  # the bus's first-failure line and the VMM's report
    assert "faulty: device errors: 2 guest accesses failed" in lines[1]
    assert "Faulty (Dummy) at [0x20000000, 0x20001000): 2" in lines[1]
