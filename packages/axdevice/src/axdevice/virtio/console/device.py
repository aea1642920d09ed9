"""virtio-console (virtio 1.2, 5.3): one console port, receiveq 0 and transmitq 1.

Theory of operation. Only port 0 exists (MULTIPORT, SIZE and EMERG_WRITE are not offered), so
Linux's virtio_console binds it as hvc0 without control messages. A kick on the transmitq
sends every pending chain's bytes to the injected output sink and returns the chains; a sink
that raises loses those bytes (counted in ``lost_output_bytes``), as the 16550's does. Host
input arrives through ``push_input(data)``, which fills the receive buffers the driver posted
and returns how many bytes fit; the caller keeps the rest and retries, for instance from the
optional ``on_rx_buffers`` callback, which runs when the driver kicks the receiveq (new
buffers). Like every host-side entry point, ``push_input`` is called under the VM's device lock.

The configuration space (cols, rows, max_nr_ports, emerg_wr) reads as zeros: none of the
features that give it meaning are offered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from axaddrspace import GuestMemoryError

from ...types import EmuDeviceType
from ..constants import VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, DeviceId, bit
from ..device import VirtioDevice, call_host_hook, restore_counters
from ..queue import QueueError
from .request import receive, transmit
from .state import VirtioConsoleState

RECEIVEQ = 0
TRANSMITQ = 1

_CONFIG = struct.Struct("<HHII")  # cols, rows, max_nr_ports, emerg_wr


class VirtioConsole(VirtioDevice):
    """A virtio console whose output goes to ``output`` and whose input comes from push_input."""

    queue_max_size = 128  # Linux posts one page-sized receive buffer per entry

    def __init__(
        self,
        output: Callable[[bytes], object] | None = None,
        on_rx_buffers: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self._output = output
        self._on_rx_buffers = on_rx_buffers
        self.bytes_sent = 0
        self.lost_output_bytes = 0
        self.bytes_received = 0

    @classmethod
    def from_state(
        cls,
        state: VirtioConsoleState,
        output: Callable[[bytes], object] | None = None,
        on_rx_buffers: Callable[[], object] | None = None,
    ) -> VirtioConsole:
        device = cls(output, on_rx_buffers)
        restore_counters(device, state, ("bytes_sent", "lost_output_bytes", "bytes_received"))
        return device

    def restore(self, state: VirtioConsoleState) -> None:
        """Take saved counters in place (a VM snapshot restored); ValueError for a non-count."""
        restore_counters(self, state, ("bytes_sent", "lost_output_bytes", "bytes_received"))

    def state(self) -> VirtioConsoleState:
        return VirtioConsoleState(self.bytes_sent, self.lost_output_bytes, self.bytes_received)

    @property
    def device_id(self) -> int:
        return DeviceId.CONSOLE

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.VirtioConsole

    @property
    def features(self) -> int:
        return bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX)

    @property
    def num_queues(self) -> int:
        return 2

    def config_space(self) -> bytes:
        return _CONFIG.pack(0, 0, 0, 0)

    def queue_notify(self, index: int) -> None:
        if index == RECEIVEQ:
            call_host_hook(self._on_rx_buffers)
            return
        queue = self.queue(TRANSMITQ)
        served = False
        while (chain := queue.pop()) is not None:
            sent, lost = transmit(chain, queue.memory, self._output)
            self.bytes_sent += sent
            self.lost_output_bytes += lost
            queue.push_used(chain.head, 0)
            served = True
        if served:
            self.interrupt(TRANSMITQ)

    def push_input(self, data: bytes | bytearray | memoryview) -> int:
        """Host -> guest bytes; returns how many the posted receive buffers took.

        At most one queue's worth of chains is consumed per call, so a driver posting empty
        buffers cannot keep the caller here.
        """
        if not self.active:
            return 0
        queue = self.queue(RECEIVEQ)
        if not queue.ready:
            return 0
        with memoryview(data) as raw, raw.cast("B") as src:
            done = 0
            used = False
            try:
                for _ in range(queue.size):
                    if done >= src.nbytes:
                        break
                    chain = queue.pop()
                    if chain is None:
                        break
                    n = receive(chain, queue.memory, src[done:])
                    queue.push_used(chain.head, n)
                    used = True
                    done += n
            except (QueueError, GuestMemoryError) as error:
                self.fail(error)
                used = False  # the device is stopped; the driver learns of it by NEEDS_RESET
        self.bytes_received += done
        if used:
            self.interrupt(RECEIVEQ)
        return done
