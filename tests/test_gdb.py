"""The gdb stub against a real guest: Debian's gdb-multiarch in batch mode debugging U-Boot
(riscv64, the software CPU) through ``VmManager.gdb_serve``, and the protocol's Ctrl-C and
detach over a raw socket.

U-Boot has no symbols here (Debian strips uboot.elf), so the breakpoint is its entry point,
0x8020_0000, where OpenSBI enters it in S mode with a0 = hart id and a1 = the device tree
(fw_jump's 0x8220_0000): an address it runs once, before it relocates itself."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from axvisor.gdb.protocol import PacketReader, frame
from axvisor.manager import VmManager
from axvm import VMState

from .host_tools import require

ROOT = Path(__file__).parent.parent
UBOOT = ROOT / "configs" / "vms" / "uboot-riscv64-virt-smp1.toml"
UBOOT_ENTRY = 0x8020_0000
SCRATCH = 0x8400_0000
"""Guest RAM U-Boot leaves alone (it relocates itself near the top of RAM)."""


@pytest.fixture(scope="module")
def images() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True, timeout=1200
    )


@pytest.fixture
def console() -> bytearray:
    return bytearray()


@pytest.fixture
def manager(images: None, console: bytearray) -> Iterator[VmManager]:
    with VmManager(console_echo=lambda _id, data: console.extend(data)) as made:
        yield made


def wait_for(condition: object, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def gdb_batch(port: str, commands: list[str], architecture: str = "riscv:rv64") -> str:
    require("gdb-multiarch", why="install gdb-multiarch to test the gdb stub with gdb itself")
    args = ["gdb-multiarch", "-nx", "-batch", "-ex", "set pagination off", "-ex", f"set architecture {architecture}"]
    args += ["-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        args += ["-ex", command]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def value(output: str, name: str) -> int:
    match = re.search(rf"^\${name} = (\S+)$", output, re.MULTILINE)
    assert match is not None, output
    return int(match.group(1), 0)


def test_gdb_breaks_at_uboot_entry_reads_registers_steps_writes_memory_watches_and_detaches(
    manager: VmManager, console: bytearray
) -> None:
    vm = manager.create(UBOOT)
    port = manager.gdb_serve(vm.id, "tcp:0").rsplit(":", 1)[1]
    out = gdb_batch(port, [
        "p/x $pc",  # a Ready VM is started paused: nothing has run yet
        f"break *{UBOOT_ENTRY:#x}",
        "continue",
        "p/x $pc", "p/x $a0", "p/x $a1", "p $priv",
        "info registers pc sp a0 a1",
        "stepi",
        "p/x $pc",
        f"set {{unsigned int}}{SCRATCH:#x} = 0x12345678",
        f"p/x *(unsigned int *){SCRATCH:#x}",
        "set $t6 = 0x5a5a",
        "p/x $t6",
        "delete",
        "rwatch *(unsigned int *)0x82200000",  # U-Boot reads the device tree's magic
        "continue",
        "delete",
        "detach",
    ])  # fmt: skip
    assert value(out, "1") == 0x8000_0000  # OpenSBI's first instruction: the VM started paused
    assert f"Breakpoint 1, 0x{UBOOT_ENTRY:016x}" in out
    assert value(out, "2") == UBOOT_ENTRY
    assert value(out, "3") == 0  # hart id
    assert value(out, "4") == 0x8220_0000  # the device tree fw_jump hands on
    assert value(out, "5") == 1  # S mode
    assert re.search(rf"^pc\s+0x{UBOOT_ENTRY:x}\s", out, re.MULTILINE), out
    assert value(out, "6") in (UBOOT_ENTRY + 2, UBOOT_ENTRY + 4)  # one instruction (RVC or not)
    assert value(out, "7") == 0x12345678
    assert value(out, "8") == 0x5A5A
    assert "Hardware read watchpoint 2: *(unsigned int *)0x82200000\n\nValue = 3992849872" in out  # d00dfeed
    assert "detached" in out
    assert manager.read_memory(vm.id, SCRATCH, 4) == (0x12345678).to_bytes(4, "little")
    # detached: breakpoints gone, the VM runs on to U-Boot's countdown
    wait_for(lambda: b"Hit any key to stop autoboot" in console, "U-Boot's autoboot countdown")
    assert manager.get(vm.id).state is VMState.RUNNING


class RawGdb:
    """A minimal peer: send packets, read replies (acks skipped)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.reader = PacketReader()
        self.pending: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.sock.sendall(frame(payload))

    def reply(self) -> bytes:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "the stub closed the connection"
            events, _ = self.reader.feed(data)
            self.pending += [event.payload for event in events if hasattr(event, "payload")]
        return self.pending.pop(0)

    def ask(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.reply()


def test_ctrl_c_pauses_the_running_guest_and_detach_resumes_it(manager: VmManager, console: bytearray) -> None:
    vm = manager.create(UBOOT)
    manager.start(vm.id)
    wait_for(lambda: b"Hit any key" in console, "U-Boot's countdown")
    port = int(manager.gdb_serve(vm.id, "tcp:0").rsplit(":", 1)[1])
    peer = RawGdb(port)
    assert peer.ask(b"?") == b"T05thread:1;"  # a connection stops the VM
    assert manager.get(vm.id).state is VMState.PAUSED
    peer.send(b"c")
    wait_for(lambda: manager.get(vm.id).state is VMState.RUNNING, "the VM to run again")
    peer.sock.sendall(b"\x03")
    assert peer.reply() == b"T02thread:1;"
    assert manager.get(vm.id).state is VMState.PAUSED
    pc = int.from_bytes(bytes.fromhex(peer.ask(b"p20").decode()), "little")
    assert pc > UBOOT_ENTRY  # somewhere in U-Boot, relocated near the top of RAM
    assert peer.ask(b"D") == b"OK"
    assert manager.get(vm.id).state is VMState.RUNNING
    console.clear()
    wait_for(lambda: b"Hit any key" in console or b"=>" in console or b"\x08" in console, "U-Boot to go on")


def test_gdb_stub_started_through_the_api(manager: VmManager, tmp_path: Path) -> None:
    from axvisor.api import listen
    from axvisor.api.server import ApiServer
    from axvisor.client import ApiError, Client

    vm = manager.create(UBOOT)
    sock = tmp_path / "api.sock"
    with ApiServer(manager, [listen.bind_unix(sock)], unix_path=sock), Client.unix(sock, timeout=60) as api:
        address = api.gdb_serve(vm.id, "tcp:0")
        assert address.startswith("tcp:127.0.0.1:")
        with pytest.raises(ApiError, match="address"):
            api.gdb_serve(vm.id, "carrier-pigeon:1")
        peer = RawGdb(int(address.rsplit(":", 1)[1]))
        assert peer.ask(b"?") == b"T05thread:1;"
        assert api.get(vm.id).state is VMState.PAUSED  # started paused by the connection
        assert peer.ask(b"p20") == (0x8000_0000).to_bytes(8, "little").hex().encode()
        assert peer.ask(b"D") == b"OK"
        wait_for(lambda: api.get(vm.id).state is VMState.RUNNING, "the VM to run after the detach")


def test_axvisor_run_gdb_paused(images: None, tmp_path: Path) -> None:
    """``axvisor run CONFIG --gdb unix:PATH --paused``: nothing runs until gdb continues; gdb's
    ``kill`` stops the VM and the run ends."""
    sock = tmp_path / "gdb.sock"
    run = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "axvisor"), "run", str(UBOOT), "--gdb", f"unix:{sock}", "--paused"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: sock.exists() or run.poll() is not None, "the gdb socket")
        peer = RawGdbUnix(sock)
        assert peer.ask(b"p20") == (0x8000_0000).to_bytes(8, "little").hex().encode()  # paused at the entry
        assert peer.ask(b"Z0,%x,4" % UBOOT_ENTRY) == b"OK"
        peer.send(b"c")
        assert peer.reply() == b"T05thread:1;"
        assert peer.ask(b"p20") == UBOOT_ENTRY.to_bytes(8, "little").hex().encode()
        peer.send(b"k")
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert b"gdb stub on unix:" in stderr and b"paused before its first instruction" in stderr
    assert b"OpenSBI" in stdout and b"U-Boot" not in stdout  # stopped at U-Boot's first instruction
    assert run.returncode == 0, stderr


def test_axvisor_run_gdb_bad_address_is_one_line(images: None) -> None:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "axvisor"), "run", str(UBOOT), "--gdb", "carrier-pigeon:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "expected tcp:PORT" in result.stderr


class RawGdbUnix(RawGdb):
    def __init__(self, path: Path) -> None:  # as RawGdb, over a Unix socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(path))
        self.reader = PacketReader()
        self.pending = []


HELLO_X86 = ROOT / "configs" / "vms" / "hello-x86_64-kvm-smp1.toml"


@pytest.mark.usefixtures("kvm", "guests")
def test_gdb_steps_an_x86_kvm_guest_reads_registers_and_memory_and_detaches() -> None:
    """On KVM through KVM_SET_GUEST_DEBUG: the hello guest's first instructions run at CPL0,
    which PVM emulates, so single steps reach the VMM there too (breakpoints need hardware KVM)."""
    console = bytearray()
    with VmManager(console_echo=lambda _id, data: console.extend(data)) as manager:
        vm = manager.create(HELLO_X86)
        port = manager.gdb_serve(vm.id, "tcp:0").rsplit(":", 1)[1]
        out = gdb_batch(port, [
            "p/x $rip",
            "stepi", "p/x $rip",
            "stepi", "p/x $rip",
            "info registers rip eflags",
            "p/x *(unsigned char *)0x100000",
            "set {unsigned int}0x200000 = 0xcafe",
            "p/x *(unsigned int *)0x200000",
            "detach",
        ], "i386:x86-64")  # fmt: skip
        assert value(out, "1") == 0x10_0000  # the entry point: started paused
        first, second = value(out, "2"), value(out, "3")
        assert 0x10_0000 < first < second < 0x10_0100, out  # one instruction each
        assert re.search(rf"^rip\s+0x{second:x}\s", out, re.MULTILINE), out
        assert value(out, "4") == (HELLO_X86.parent.parent.parent / "build" / "guests" / "hello.bin").read_bytes()[0]
        assert value(out, "5") == 0xCAFE
        wait_for(lambda: manager.get(vm.id).state is VMState.STOPPED, "the guest to power off")
        assert b"Hello from an x86_64 guest at CPL3" in console
        assert manager.get(vm.id).exit_code == 0


LINUX = ROOT / "configs" / "vms" / "linux-riscv64-virt-smp1.toml"
LINUX_SHELL = b"axvisor# "


@pytest.mark.timeout(1200)
def test_linux_kernel_interrupted_at_its_shell_breakpoint_at_a_virtual_address(tmp_path: Path) -> None:
    """Debian's riscv64 kernel (paging on): Ctrl-C at the shell stops it in the kernel; memory
    at the PC is read through the hart's page tables (the bytes the hart fetches); a breakpoint
    at that virtual address is hit on continue; after the detach the shell still answers.
    (Debian ships no System.map: the PC Ctrl-C found is the kernel address used.)"""
    out = subprocess.run(
        [str(ROOT / "scripts" / "prepare-riscv-linux.sh")], check=True, capture_output=True, text=True, timeout=1800
    ).stdout
    images = {line.split()[0]: line.split()[1] for line in out.splitlines() if len(line.split()) == 2}
    disk = tmp_path / "disk.ext4"
    subprocess.run(["cp", "--sparse=always", images["disk"], str(disk)], check=True)  # never the shared image
    text = LINUX.read_text().replace('"~/.cache/axvisor/riscv64/disk-vm.ext4"', f'"{disk}"')
    config = tmp_path / "linux.toml"
    config.write_text(text.replace('"~/', f'"{Path.home()}/'))
    console = bytearray()
    with VmManager(console_echo=lambda _id, data: console.extend(data)) as manager:
        vm = manager.create(config)
        manager.start(vm.id)
        wait_for(lambda: LINUX_SHELL in console, "the kernel's shell", 900)
        port = int(manager.gdb_serve(vm.id, "tcp:0").rsplit(":", 1)[1])
        peer = RawGdb(port)
        assert peer.ask(b"?") == b"T05thread:1;"
        for _ in range(20):  # until the interrupt finds the hart in the kernel, not in OpenSBI
            peer.send(b"c")
            wait_for(lambda: manager.get(vm.id).state is VMState.RUNNING, "the VM to run again")
            time.sleep(0.2)  # let the idle kernel run a little before the interrupt
            peer.sock.sendall(b"\x03")
            assert peer.reply() == b"T02thread:1;"
            pc = int.from_bytes(bytes.fromhex(peer.ask(b"p20").decode()), "little")
            priv = int.from_bytes(bytes.fromhex(peer.ask(b"p%x" % (65 + 4096)).decode()), "little")
            if priv == 1:
                break
        satp = int.from_bytes(bytes.fromhex(peer.ask(b"p%x" % (65 + 0x180)).decode()), "little")
        assert satp >> 60 in (8, 9, 10)  # paging on (Debian's kernel picks Sv57 where the CPU has it)
        assert priv == 1, "every interrupt found the hart in M mode"
        assert pc >> 63 == 1  # a kernel virtual address
        code = bytes.fromhex(peer.ask(b"m%x,4" % pc).decode())
        fetched = manager.debug_call(vm.id, 0, lambda vm, n: vm.vcpus[n].arch._regs.read_virtual(pc, 4, 4))
        assert code == fetched  # what the stub read is what the hart fetches there (UC_PROT_EXEC)
        assert peer.ask(b"Z0,%x,2" % pc) == b"OK"
        peer.send(b"c")
        assert peer.reply() == b"T05thread:1;"
        assert int.from_bytes(bytes.fromhex(peer.ask(b"p20").decode()), "little") == pc
        assert peer.ask(b"z0,%x,2" % pc) == b"OK"
        assert peer.ask(b"D") == b"OK"
        console.clear()
        manager.console_input(vm.id, b"echo gdb-was-here-$((6*7))\n")
        wait_for(lambda: b"gdb-was-here-42" in console, "the shell to answer after the detach", 120)


def test_one_thread_per_vcpu_on_a_four_hart_uboot(manager: VmManager, console: bytearray) -> None:
    vm = manager.create(ROOT / "configs" / "vms" / "uboot-riscv64-virt-smp4.toml")
    port = manager.gdb_serve(vm.id, "tcp:0").rsplit(":", 1)[1]
    out = gdb_batch(port, [
        "info threads",
        f"break *{UBOOT_ENTRY:#x}",
        "continue",
        "p $_thread",
        "thread 3",
        "p/x $mhartid",
        "detach",
    ])  # fmt: skip
    for n in (1, 2, 3, 4):
        assert re.search(rf"^\*?\s+{n}\s+Thread {n}\b", out, re.MULTILINE), out
    assert f"Breakpoint 1, 0x{UBOOT_ENTRY:016x}" in out
    assert value(out, "2") == 2  # thread 3 is hart 2
    wait_for(lambda: b"Hit any key to stop autoboot" in console, "U-Boot's autoboot countdown")


@pytest.mark.usefixtures("kvm", "guests")
def test_a_guest_that_powers_off_while_gdb_waits_is_reported_exited() -> None:
    with VmManager() as manager:
        vm = manager.create(HELLO_X86)
        peer = RawGdb(int(manager.gdb_serve(vm.id, "tcp:0").rsplit(":", 1)[1]))
        assert peer.ask(b"?") == b"T05thread:1;"
        peer.send(b"c")
        assert peer.reply() == b"W00"  # exited with status 0
        assert manager.get(vm.id).state is VMState.STOPPED
