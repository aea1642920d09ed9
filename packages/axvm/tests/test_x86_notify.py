"""x86 virtio queue notifications handed to a backend that serves them without exits (KVM
ioeventfd), tested on a scripted backend that records the registrations."""

from __future__ import annotations

from collections.abc import Callable

from axaddrspace import AccessWidth
from axvm import AxVM, BackendCapabilities, ScriptedBackend, parse_config

CONFIG = """
[base]
id = 9
name = "notify86"
vm_type = 1
cpu_num = 1
arch = "x86_64"

[kernel]
entry_point = 0x10_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x10_0000
memory_regions = [[0x0, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [
  ["virtio-rng", 0xD000_0000, 0x1000, 5, 0xE4, []],
  ["virtio-console", 0xD000_1000, 0x1000, 6, 0xE3, []],
]
"""
QUEUE_NOTIFY = 0x50


class EventBackend(ScriptedBackend):
    """A scripted backend with ``WriteEvents``: what KVM's ioeventfds would be asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[tuple[int, AccessWidth, int], Callable[[], object]] = {}
        self.stopped = 0

    def notify_on_write(self, addr: int, width: AccessWidth, value: int, callback: Callable[[], object]) -> None:
        self.events[(addr, width, value)] = callback

    def stop_write_events(self) -> None:
        self.stopped += 1


def test_each_virtio_queue_notify_goes_to_the_backend_and_reaches_the_device() -> None:
    backend = EventBackend()
    vm = AxVM(parse_config(CONFIG), backend)
    transports = {device.base: device for device in vm.devices.buses.mmio.devices if hasattr(device, "queues")}
    expected = {
        (base + QUEUE_NOTIFY, AccessWidth.DWORD, q) for base, t in transports.items() for q in range(len(t.queues))
    }
    assert set(backend.events) == expected and len(expected) >= 3  # rng 1 queue, console at least 2
    seen: list[tuple[int, int, int]] = []
    transport = transports[0xD000_0000]
    transport.handle_write = lambda addr, width, value: seen.append((addr, width, value))  # type: ignore[method-assign]
    backend.events[(0xD000_0000 + QUEUE_NOTIFY, AccessWidth.DWORD, 0)]()  # the backend's thread, on a guest kick
    assert seen == [(0xD000_0000 + QUEUE_NOTIFY, AccessWidth.DWORD, 0)]
    vm.stop()
    assert backend.stopped == 1


def test_write_events_is_a_capability_only_backends_with_it_have() -> None:
    backend = EventBackend()
    assert BackendCapabilities.of(backend).write_events is backend
    assert BackendCapabilities.of(ScriptedBackend()).write_events is None
    vm = AxVM(parse_config(CONFIG), ScriptedBackend())  # notify stays on the exit path
    vm.stop()
