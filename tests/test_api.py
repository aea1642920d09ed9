"""The management API against real VMs: a real server (aiohttp on a Unix socket in a temp dir)
in front of a real ``VmManager``, driven through ``axvisor.client``. One U-Boot VM (riscv64,
software CPU) serves the whole module, so there are few boots: it is typed into through the
console WebSocket, its RAM is written through the API and read back by the guest, and it goes
through every lifecycle route; wrong states are 409s naming the state, bad input 400s naming
the field, unknown ids 404s. The HTTP layer alone (malformed requests, the token, the OpenAPI
document) is tested in packages/axvisor/tests/test_api_http.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from axvisor.api import listen
from axvisor.api.server import ApiServer
from axvisor.client import ApiError, Client, ConsoleConnection
from axvisor.manager import VmManager
from axvm import VMState

ROOT = Path(__file__).parent.parent
UBOOT = ROOT / "configs" / "vms" / "uboot-riscv64-virt-smp1.toml"
PROMPT = b"=> "
SCRATCH = 0x8100_0000
"""Guest RAM U-Boot leaves alone: it runs at 0x8020_0000 and relocates itself near the top of RAM."""


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[VmManager, Path]]:
    subprocess.run(
        [str(ROOT / "scripts" / "fetch-debian-images.sh"), "opensbi", "u-boot-qemu"], check=True, timeout=1200
    )
    work = Path(tempfile.mkdtemp(prefix="axapi-"))
    manager = VmManager(log_dir=work / "logs")
    sock = work / "api.sock"
    try:
        with ApiServer(manager, [listen.bind_unix(sock)], unix_path=sock):
            yield manager, sock
    finally:
        manager.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def api(served: tuple[VmManager, Path]) -> Iterator[Client]:
    with Client.unix(served[1], timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def uboot(api: Client) -> int:
    """The module's U-Boot VM, started and stopped at its prompt."""
    vm = api.create(UBOOT)
    assert (vm.name, vm.state, vm.arch, vm.backend) == ("uboot-riscv64", VMState.READY, "riscv64", "soft")
    assert api.start(vm.id).state is VMState.RUNNING
    with api.console(vm.id) as console:
        console.read_until(b"Hit any key to stop autoboot", timeout=120)
        console.send(b" ")
        console.read_until(PROMPT, timeout=60)
    return vm.id


def command(console: ConsoleConnection, line: str, until: bytes = PROMPT) -> str:
    """Type a line at U-Boot's prompt; what it printed up to the next prompt."""
    console.send(line.encode() + b"\r")
    return console.read_until(until, timeout=60).decode(errors="replace")


def test_console_websocket_types_into_uboot(api: Client, uboot: int) -> None:
    with api.console(uboot, history=False) as console:
        answer = command(console, "version")
    assert "U-Boot 20" in answer


def test_memory_written_through_the_api_is_read_by_the_guest(api: Client, uboot: int) -> None:
    api.write_memory(uboot, SCRATCH, bytes.fromhex("78563412efbeadde"))
    assert api.read_memory(uboot, SCRATCH, 8) == bytes.fromhex("78563412efbeadde")
    with api.console(uboot, history=False) as console:
        answer = command(console, f"md.l {SCRATCH:x} 2")
    assert f"{SCRATCH:08x}: 12345678 deadbeef" in answer
    with api.console(uboot, history=False) as console:  # and the other way: the guest writes, the API reads
        command(console, f"mw.l {SCRATCH + 16:x} cafef00d")
    assert api.read_memory(uboot, SCRATCH + 16, 4) == bytes.fromhex("0df0feca")


def test_pause_inspect_resume(api: Client, uboot: int) -> None:
    with pytest.raises(ApiError) as caught:
        api.registers(uboot, 0)
    assert caught.value.http_status == 409 and caught.value.state is VMState.RUNNING
    assert api.pause(uboot).state is VMState.PAUSED
    try:
        with pytest.raises(ApiError) as caught:
            api.pause(uboot)
        assert caught.value.http_status == 409 and "is Paused" in str(caught.value)
        registers = api.registers(uboot, 0)
        assert {"pc", "sp", "satp", "priv"} <= set(registers)
        walk = api.translate(uboot, 0, registers["pc"])
        assert walk.mode == "bare" and walk.gpa == registers["pc"]  # U-Boot runs without paging
        with pytest.raises(ApiError) as caught:
            api.registers(uboot, 1)
        assert (caught.value.http_status, caught.value.field) == (400, "vcpu")
        assert api.get(uboot).state is VMState.PAUSED
    finally:
        assert api.resume(uboot).state is VMState.RUNNING
    with api.console(uboot, history=False) as console:
        assert "U-Boot 20" in command(console, "version")  # it goes on


def test_metrics_json_and_prometheus(api: Client, uboot: int) -> None:
    metrics = api.metrics(uboot)
    assert metrics.state is VMState.RUNNING and metrics.uptime_s > 0
    assert metrics.devices.uart_tx_bytes > 0 and metrics.boot.start_to_first_console_byte_s is not None
    assert len(metrics.vcpus) == 1
    text = api.prometheus_text()
    assert f'axvisor_vm_state{{name="uboot-riscv64",state="Running",vm="{uboot}"}} 1.0' in text
    assert f'axvisor_vm_uart_tx_bytes_total{{name="uboot-riscv64",vm="{uboot}"}}' in text


def test_bad_input_is_400_naming_the_field(api: Client, uboot: int, tmp_path: Path) -> None:
    cases = [
        (lambda: api.create(tmp_path / "missing.toml"), "config"),
        (lambda: api.create("[base]\nname = 3\n", text=True), "config"),
        (lambda: api.create(UBOOT, cpus=0), "cpus"),
        (lambda: api.create(UBOOT, mem="lots"), "mem"),
        (lambda: api.read_memory(uboot, 0x10, 4), "gpa"),
        (lambda: api.read_memory(uboot, 0x8000_0000, (1 << 20) + 1), "size"),
        (lambda: api.write_memory(uboot, 0x8000_0000 + (128 << 20) - 2, b"1234"), "gpa"),
    ]
    for call, field in cases:
        with pytest.raises(ApiError) as caught:
            call()
        assert (caught.value.http_status, caught.value.field) == (400, field), str(caught.value)
    assert [info.id for info in api.list(all=True)] == [uboot]  # nothing was left behind


def test_unknown_ids_are_404(api: Client) -> None:
    for call in (
        lambda: api.get(999),
        lambda: api.start(999),
        lambda: api.delete(999),
        lambda: api.metrics(999),
        lambda: api.console(999),
    ):
        with pytest.raises(ApiError) as caught:
            call()
        assert caught.value.http_status == 404 and "999" in str(caught.value)


def test_two_clients_at_once(served: tuple[VmManager, Path], uboot: int) -> None:
    failures: list[BaseException] = []

    def worker(pause: bool) -> None:
        try:
            with Client.unix(served[1]) as client:
                for _ in range(10):
                    if pause:
                        client.pause(uboot)
                        client.resume(uboot)
                    else:
                        assert client.get(uboot).id == uboot
                        assert client.metrics(uboot).id == uboot
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(pause,)) for pause in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_a_vm_from_toml_text_lives_and_is_deleted(api: Client) -> None:
    vm = api.create(UBOOT.read_text(), text=True, name="second", mem="64M")
    assert (vm.name, vm.memory_bytes, vm.config_path) == ("second", 64 << 20, None)
    with pytest.raises(ApiError) as caught:
        api.resume(vm.id)
    assert caught.value.http_status == 409 and caught.value.state is VMState.READY
    api.delete(vm.id)
    with pytest.raises(ApiError) as caught:
        api.get(vm.id)
    assert caught.value.http_status == 404


def test_reset_stop_start_delete(api: Client, uboot: int) -> None:
    """Last in the module: the VM is reset (rebuilt, booted again), stopped, cold-started and deleted."""
    info = api.reset(uboot)
    assert (info.state, info.resets) == (VMState.RUNNING, 1)
    with api.console(uboot, history=False) as console:
        console.read_until(b"Hit any key to stop autoboot", timeout=120)  # it booted again
    stopped = api.stop(uboot)
    assert stopped.state is VMState.STOPPED
    with pytest.raises(ApiError) as caught:
        api.pause(uboot)
    assert caught.value.http_status == 409 and caught.value.state is VMState.STOPPED
    assert [info.id for info in api.list()] == []  # Stopped VMs are listed with all only
    assert api.start(uboot).state is VMState.RUNNING
    with pytest.raises(ApiError) as caught:
        api.delete(uboot)
    assert caught.value.http_status == 409 and caught.value.state is VMState.RUNNING
    api.delete(uboot, force=True)
    assert api.list(all=True) == []
