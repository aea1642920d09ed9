"""x86 ports without a device handed to a backend that answers them itself (KVM's axv_run loop),
tested on a scripted backend that records what it is given."""

from __future__ import annotations

from collections.abc import Callable

from axvm import AxVM, BackendCapabilities, BusKind, ScriptedBackend, parse_config

CONFIG = """
[base]
id = 10
name = "quiet86"
vm_type = 1
cpu_num = 1
arch = "x86_64"

[kernel]
entry_point = 0x10_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x10_0000
memory_regions = [[0x0, 0x100_0000, 0x7, 0]]
"""


class QuietBackend(ScriptedBackend):
    def __init__(self) -> None:
        super().__init__()
        self.bitmap = b""
        self.sink: Callable[[int, int], object] | None = None

    def set_quiet_ports(self, bitmap: bytes, sink: Callable[[int, int], object]) -> None:
        self.bitmap, self.sink = bitmap, sink


def quiet(bitmap: bytes, port: int) -> bool:
    return bool(bitmap[port // 8] >> (port % 8) & 1)


def test_the_machine_names_every_port_without_a_device_and_counts_what_the_backend_answered() -> None:
    backend = QuietBackend()
    assert BackendCapabilities.of(backend).quiet_ports is backend
    vm = AxVM(parse_config(CONFIG), backend)
    vm.mark_loaded()
    vm.boot()
    assert len(backend.bitmap) == 8192
    assert quiet(backend.bitmap, 0x80) and quiet(backend.bitmap, 0xFFFF)
    assert not any(quiet(backend.bitmap, port) for port in range(0x3F8, 0x400))  # COM1
    assert not quiet(backend.bitmap, 0x70) and not quiet(backend.bitmap, 0x604)  # CMOS, ACPI PM1a
    assert backend.sink is not None
    before = vm.devices.unhandled()[BusKind.PORT]
    backend.sink(2, 5)
    after = vm.devices.unhandled()[BusKind.PORT]
    assert (after.reads - before.reads, after.writes - before.writes) == (2, 5)
    vm.stop()


def test_a_backend_without_quiet_ports_is_not_asked() -> None:
    assert BackendCapabilities.of(ScriptedBackend()).quiet_ports is None
