"""``axvisor run`` imports only what the VMs it runs need: start-up time is module imports.

Each check runs in a fresh interpreter (this one has imported everything the other tests use)
and reads ``sys.modules`` there.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
from pathlib import Path

SERVER_AND_SHELL = (
    "aiohttp",
    "prometheus_client",
    "websockets",
    "rich",
    "prompt_toolkit",
    "hypothesis",
    "elftools",
    "axvisor.api",
    "axvisor.shell",
    "axvisor.vmctl",
    "axvisor.manager",
)
"""The API server, the shell and the test tools: only ``serve``, ``shell`` and ``ctl`` need them."""

NOT_FOR_A_RISCV_VM = (
    "importlib.metadata",  # --version only
    "email",  # importlib.metadata's
    "platform",
    "tomli_w",  # generate only
    "socket",  # a VM with a UDP netdev only
    "axvisor.net.tap",
    "zstandard",  # bzImage kernels (x86) only
    "axvisor.loaders.bzimage",
    "axvisor.loaders.x86",
    "axvm.machines.x86",
    "axvm.machines.arm",
    "axvcpu.backends.soft.aarch64",  # the aarch64 soft vCPU
    "axvcpu.backends.soft.aarch64_backend",
    "axvcpu.backends.kvm",
    "axvcpu.x86",
    "axvm.snapshot",  # run --restore only
    # building a C extension only (axvcpu.cffi_build): a start whose extensions are cached loads them
    "cffi",
    "subprocess",
    "shlex",
    "sysconfig",
    "hashlib",  # its OpenSSL load, for one SHA-256 the interpreter has built in
    # devices this VM does not have (it has a sifive_test; the machine adds UART, PLIC, CLINT)
    "axdevice.virtio.device",
    "axdevice.virtio.mmio",
    "axdevice.virtio.blk.device",
    "axdevice.virtio.console",
    "axdevice.virtio.net",
    "axdevice.virtio.rng",
    "axdevice.gicv2",
    "axdevice.pl011",
    "axdevice.pl031",
    "axdevice.i8042",
    "axdevice.pci_host",
)

NOT_BEFORE_A_VM = ("unicorn", "pyfdt", "axvm.machines.riscv", "axvcpu.backends.soft")
"""What only building a VM needs: importing the CLI (``--help``, a bad flag) does without."""

# riscv64 (RISC-V unprivileged ISA: LUI, ADDI, SW, JAL): sifive_test PASS (0x5555 to 0x10_0000), then spin.
POWER_OFF_GUEST = struct.pack("<5I", 0x00100537, 0x000055B7, 0x55558593, 0x00B52023, 0x0000006F)

CONFIG = """
[base]
id = 1
name = "imports"
vm_type = 1
cpu_num = 1
arch = "riscv64"
backend = "soft"

[kernel]
entry_point = 0x8000_0000
bios_path = "guest.bin"
bios_load_addr = 0x8000_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x8020_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [["test", 0x10_0000, 0x1000, 0, 0x82, []]]
"""


def loaded_after(code: str) -> tuple[int, set[str]]:
    """Run ``code`` (it sets ``status``) in a fresh interpreter: its status and the modules it loaded."""
    script = f"import json, sys\n{code}\nprint(json.dumps([status, sorted(sys.modules)]))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    status, modules = json.loads(done.stdout.splitlines()[-1])
    return status, set(modules)


def imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(name for name in names if any(m == name or m.startswith(name + ".") for m in modules))


def test_importing_the_cli_loads_no_vm_machinery_server_or_shell() -> None:
    _, modules = loaded_after("import axvisor.cli\nstatus = 0")
    assert imported(modules, SERVER_AND_SHELL + NOT_FOR_A_RISCV_VM + NOT_BEFORE_A_VM) == []


def test_running_a_riscv_vm_loads_only_what_it_needs(tmp_path: Path) -> None:
    (tmp_path / "guest.bin").write_bytes(POWER_OFF_GUEST)
    config = tmp_path / "vm.toml"
    config.write_text(CONFIG)
    status, modules = loaded_after(f"from axvisor.cli import main\nstatus = main(['run', {str(config)!r}])")
    assert status == 0  # the guest powered off with PASS: the run path really ran
    assert {"unicorn", "pyfdt", "axvm.machines.riscv.machine"} <= modules
    assert imported(modules, SERVER_AND_SHELL + NOT_FOR_A_RISCV_VM) == []


def test_the_parser_built_for_one_command_reads_as_the_whole_one() -> None:
    """main() builds only the arguments of the command it runs; --help and usage must not change."""
    from axvisor.cli import COMMANDS, build_parser

    def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return action.choices[name]

    whole = build_parser()
    for command in COMMANDS:
        part = build_parser(command)
        assert part.format_help() == whole.format_help(), command
        assert subparser(part, command).format_help() == subparser(whole, command).format_help(), command


def test_python_m_axvisor_collects_no_garbage_until_its_vms_are_built(tmp_path: Path) -> None:
    """``python -m axvisor run`` starts with the cyclic collector off (startup_gc); by the time the
    guest runs it is on again, with what start-up made frozen. Another command turns it on at once."""
    (tmp_path / "guest.bin").write_bytes(POWER_OFF_GUEST)
    config = tmp_path / "vm.toml"
    config.write_text(CONFIG)
    probe = (
        "import gc, runpy, sys\n"
        "import axvisor.session as session\n"
        "real = session.run_session\n"
        "def run_session(*args):\n"
        "    print('session', gc.isenabled(), gc.get_freeze_count() > 0, flush=True)\n"
        "    return real(*args)\n"
        "session.run_session = run_session\n"
        "import axvisor.cli as cli\n"
        "cli.run_session = run_session\n"
        "real_load = cli.load_config\n"
        "def load_config(path):\n"
        "    print('config', gc.isenabled(), flush=True)\n"
        "    return real_load(path)\n"
        "cli.load_config = load_config\n"
        "real_check = cli.cmd_check\n"
        "def cmd_check(paths):\n"
        "    print('check', gc.isenabled(), flush=True)\n"
        "    return real_check(paths)\n"
        "cli.cmd_check = cmd_check\n"
        "runpy.run_module('axvisor', run_name='__main__', alter_sys=True)\n"
    )
    for argv, expected in (
        (["run", str(config)], ["config False", "session True True"]),
        (["check", str(config)], ["check True", "config True"]),
    ):
        done = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.argv = ['axvisor', *{argv!r}]\n{probe}"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        marks = [line for line in done.stdout.splitlines() if line.split()[0] in ("config", "session", "check")]
        assert marks == expected


def test_main_called_in_process_leaves_the_callers_collector_alone(tmp_path: Path) -> None:
    """Tests and embedders call cli.main(): no pause was asked for, so nothing is frozen or turned on."""
    (tmp_path / "guest.bin").write_bytes(POWER_OFF_GUEST)
    config = tmp_path / "vm.toml"
    config.write_text(CONFIG)
    code = (
        "import gc\n"
        "gc.disable()\n"
        "from axvisor.cli import main\n"
        f"assert main(['run', {str(config)!r}]) == 0\n"
        "status = [gc.isenabled(), gc.get_freeze_count()]"
    )
    status, _ = loaded_after(code)
    assert status == [False, 0]
