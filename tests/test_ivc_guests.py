"""Two guests of one VMM process talk through an inter-VM channel (AxVisor's IVC): an x86_64
guest on KVM (tests/guests/ivc.c) publishes it through the x86 hypercall doorbell and writes a
message, a riscv64 bare-metal guest on the soft CPU (tests/guests/riscv/ivc_peer.S) subscribes,
prints the message and writes a reply, which the x86 guest prints."""

from __future__ import annotations

import queue
import subprocess
from pathlib import Path

import pytest

from axvisor import VmOutcome, VmSupervisor, build_vm, start_vms
from axvisor.backends import select_backend
from axvm import AxVM, load_config

from .host_tools import require

GUESTS = Path(__file__).parent / "guests"
X86_ID, RISCV_ID = 60, 61
pytestmark = pytest.mark.usefixtures("kvm")

X86_CONFIG = f"""
[base]
id = {X86_ID}
name = "ivc-x86_64"
vm_type = 1
cpu_num = 1
arch = "x86_64"
backend = "kvm"

[kernel]
entry_point = 0x10_0000
image_location = "fs"
kernel_path = "{{guests}}/ivc.bin"
kernel_load_addr = 0x10_0000
memory_regions = [[0x0, 0x400_0000, 0x7, 0]]

[devices]
emu_devices = [["ivc", 0x4000_0000, 0x1_0000, 11, 0xA, []]]
passthrough_devices = []
interrupt_mode = "emulated"
"""

RISCV_CONFIG = f"""
[base]
id = {RISCV_ID}
name = "ivc-riscv64"
vm_type = 1
cpu_num = 1
arch = "riscv64"
backend = "soft"

[kernel]
entry_point = 0x8000_0000
image_location = "fs"
kernel_path = "{{peer}}"
kernel_load_addr = 0x8000_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [["ivc", 0x6000_0000, 0x1_0000, 12, 0xA, []]]
passthrough_devices = []
interrupt_mode = "emulated"
"""


def riscv_peer(folder: Path) -> Path:
    tools = ("riscv64-linux-gnu-as", "riscv64-linux-gnu-ld", "riscv64-linux-gnu-objcopy")
    require(*tools, why="assembles the riscv64 IVC peer guest")
    run = {"check": True, "capture_output": True}
    source = GUESTS / "riscv" / "ivc_peer.S"
    subprocess.run([tools[0], "--defsym", f"PUBLISHER={X86_ID}", "-o", str(folder / "peer.o"), str(source)], **run)
    subprocess.run([tools[1], "-Ttext=0x80000000", "-o", str(folder / "peer.elf"), str(folder / "peer.o")], **run)
    subprocess.run([tools[2], "-O", "binary", str(folder / "peer.elf"), str(folder / "peer.bin")], **run)
    return folder / "peer.bin"


def run_to_the_end(vms: list[AxVM]) -> list[VmOutcome]:
    """Run the VMs together; when one fails the other is stopped (it would wait for its peer forever)."""
    ended: queue.Queue[VmSupervisor] = queue.Queue()
    supervisors = start_vms(vms, on_end=ended.put)
    for _ in supervisors:
        outcome = ended.get().outcome
        if outcome is None or outcome.exit_code:
            for supervisor in supervisors:
                supervisor.stop(1, f"the peer VM failed: {outcome}")
    return [supervisor.join() for supervisor in supervisors]


def test_an_x86_and_a_riscv_guest_exchange_messages_through_a_channel(guests: Path, tmp_path: Path) -> None:
    peer = riscv_peer(tmp_path)
    (tmp_path / "x86.toml").write_text(X86_CONFIG.replace("{guests}", str(guests)))
    (tmp_path / "riscv.toml").write_text(RISCV_CONFIG.replace("{peer}", str(peer)))
    outputs: dict[str, list[bytes]] = {"x86": [], "riscv": []}
    vms = []
    for name in ("x86", "riscv"):
        config = load_config(tmp_path / f"{name}.toml")
        vms.append(build_vm(config, select_backend(config).factory(config), outputs[name].append))
    x86_outcome, riscv_outcome = run_to_the_end(vms)
    x86_out, riscv_out = (b"".join(outputs[name]).decode(errors="replace") for name in ("x86", "riscv"))
    detail = f"x86 ({x86_outcome.reason}): {x86_out!r}\nriscv ({riscv_outcome.reason}): {riscv_out!r}"
    assert "riscv read the message: ping from x86 over IVC\n" in riscv_out, detail
    assert "x86 read the reply: pong from riscv over IVC\n" in x86_out, detail
    assert (x86_outcome.exit_code, riscv_outcome.exit_code) == (0, 0), detail
    assert vms[0].hypercalls.counts == {3: 1}  # one publish through the doorbell
    assert vms[1].hypercalls.counts.get(4, 0) >= 1
