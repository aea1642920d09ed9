"""virtio-rng (virtio 1.2, 5.4): an entropy device with one request queue.

Theory of operation. Each kick on requestq 0 drains it: every chain's writable bytes (up to
``MAX_RNG_REQUEST``) are filled from the injected entropy source, a ``Callable[[int], bytes]``
(the VMM passes ``os.urandom``; tests pass something deterministic), and the chain is returned
with the count written. A source that raises or returns short is counted in
``source_failures`` and the guest gets what there was. No features beyond the transport's, no
configuration space.
"""

from __future__ import annotations

from collections.abc import Callable

from ...types import EmuDeviceType
from ..constants import VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, DeviceId, bit
from ..device import VirtioDevice, restore_counters
from .request import fill
from .state import VirtioRngState

REQUESTQ = 0


class VirtioRng(VirtioDevice):
    """A virtio entropy device drawing from ``source``."""

    queue_max_size = 64  # Linux keeps a single request outstanding

    def __init__(self, source: Callable[[int], bytes]) -> None:
        super().__init__()
        self._source = source
        self.bytes_served = 0
        self.source_failures = 0

    @classmethod
    def from_state(cls, state: VirtioRngState, source: Callable[[int], bytes]) -> VirtioRng:
        device = cls(source)
        restore_counters(device, state, ("bytes_served", "source_failures"))
        return device

    def restore(self, state: VirtioRngState) -> None:
        """Take saved counters in place (a VM snapshot restored); ValueError for a non-count."""
        restore_counters(self, state, ("bytes_served", "source_failures"))

    def state(self) -> VirtioRngState:
        return VirtioRngState(self.bytes_served, self.source_failures)

    @property
    def device_id(self) -> int:
        return DeviceId.ENTROPY

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.VirtioRng

    @property
    def features(self) -> int:
        return bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX)

    @property
    def num_queues(self) -> int:
        return 1

    def config_space(self) -> bytes:
        return b""

    def queue_notify(self, index: int) -> None:
        queue = self.queue(REQUESTQ)
        served = False
        while (chain := queue.pop()) is not None:
            written, failed = fill(chain, queue.memory, self._source)
            self.bytes_served += written
            self.source_failures += failed
            queue.push_used(chain.head, written)
            served = True
        if served:
            self.interrupt(REQUESTQ)
