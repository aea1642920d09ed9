"""virtio-blk (virtio 1.2, 5.2): a block device with one request queue, served inline.

Theory of operation. The driver reads the configuration space (capacity in 512-byte sectors,
the segment limits, the block size, discard limits), then puts requests on queue 0 and kicks
it. Each kick drains the queue: ``request.handle_request`` reads the header, has the injected
``BlockBackend`` move the data straight between the image and guest memory, and writes the
status byte; the chain is returned and one interrupt covers the whole batch (subject to the
driver's EVENT_IDX / NO_INTERRUPT suppression).

Features offered: VERSION_1, INDIRECT_DESC, EVENT_IDX, SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH, RO
(read-only backends), DISCARD and WRITE_ZEROES (backends that have them). SIZE_MAX x SEG_MAX
keeps the largest request a driver may build (254 MiB) inside ``MAX_CHAIN_BYTES``, so a
well-behaved driver never trips the chain bound.

Counters: ``requests``, ``io_errors`` (every IOERR status, the guest's mistakes included),
``unsupported``, and ``host_errors``: requests the host failed, by kind (errno name, or
``short-read`` / ``short-write``); the first of each kind is logged (``host_error``).
"""

from __future__ import annotations

import dataclasses
import struct

from ...types import EmuDeviceType
from ..constants import VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, DeviceId, bit
from ..device import DEFAULT_QUEUE_MAX_SIZE, VirtioDevice, restore_counters
from .backend import BlockBackend, supports_discard, supports_write_zeroes
from .host_error import HostErrorLog
from .request import MAX_DWZ_SECTORS, MAX_DWZ_SEGMENTS, S_IOERR, S_UNSUPP, SECTOR_SIZE, Disk, handle_request
from .state import VirtioBlkState

VIRTIO_BLK_F_SIZE_MAX = 1
VIRTIO_BLK_F_SEG_MAX = 2
VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_BLK_SIZE = 6
VIRTIO_BLK_F_FLUSH = 9
VIRTIO_BLK_F_DISCARD = 13
VIRTIO_BLK_F_WRITE_ZEROES = 14

# Data segments per request: the queue size less the header and status descriptors (as QEMU),
# so a driver without indirect descriptors can still fit a full request in the ring.
SEG_MAX = DEFAULT_QUEUE_MAX_SIZE - 2
# Largest data segment: with SEG_MAX it caps a request at 254 MiB, under MAX_CHAIN_BYTES.
SIZE_MAX = 1 << 20
DISCARD_ALIGNMENT_SECTORS = 8  # 4 KiB: holes are punched in whole host filesystem blocks

# virtio_blk_config up to write_zeroes_may_unmap (5.2.4): capacity, size_max, seg_max,
# geometry (4 bytes), blk_size, topology (8 bytes), writeback, unused0, num_queues,
# max_discard_sectors, max_discard_seg, discard_sector_alignment, max_write_zeroes_sectors,
# max_write_zeroes_seg, write_zeroes_may_unmap, unused1[3].
_CONFIG = struct.Struct("<QIIIIQBBHIIIIIB3x")


class VirtioBlk(VirtioDevice):
    """A virtio block device over an injected ``BlockBackend``."""

    def __init__(self, backend: BlockBackend) -> None:
        super().__init__()
        self.backend = backend
        size = backend.size_bytes
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"block backend size {size!r} is not a byte count")
        read_only = bool(backend.read_only)
        self.disk = Disk(
            backend=backend,
            capacity_sectors=size // SECTOR_SIZE,
            read_only=read_only,
            discard=supports_discard(backend),
            write_zeroes=supports_write_zeroes(backend),
            serial=str(backend.serial).encode("utf-8", "replace"),
        )
        features = (
            bit(VIRTIO_F_VERSION_1)
            | bit(VIRTIO_F_INDIRECT_DESC)
            | bit(VIRTIO_F_EVENT_IDX)
            | bit(VIRTIO_BLK_F_SIZE_MAX)
            | bit(VIRTIO_BLK_F_SEG_MAX)
            | bit(VIRTIO_BLK_F_BLK_SIZE)
            | bit(VIRTIO_BLK_F_FLUSH)
        )
        features |= bit(VIRTIO_BLK_F_RO) if read_only else 0
        features |= bit(VIRTIO_BLK_F_DISCARD) if self.disk.discard else 0
        features |= bit(VIRTIO_BLK_F_WRITE_ZEROES) if self.disk.write_zeroes else 0
        self._features = features
        self.requests = 0
        self.io_errors = 0
        self.unsupported = 0
        name = getattr(backend, "name", None)
        self._host_errors = HostErrorLog(str(name) if name else self.disk.serial.decode("utf-8", "replace"))
        self.disk = dataclasses.replace(self.disk, on_host_error=self._host_errors)

    @property
    def host_errors(self) -> dict[str, int]:
        """Host-side failures so far, by kind (a copy)."""
        return dict(self._host_errors.counts)

    @classmethod
    def from_state(cls, state: VirtioBlkState, backend: BlockBackend) -> VirtioBlk:
        """A device resumed over ``backend``; ValueError if it is not the disk that was saved."""
        device = cls(backend)
        device.restore(state)
        return device

    def restore(self, state: VirtioBlkState) -> None:
        """Take saved counters in place (a VM snapshot restored); ValueError if the disk is not
        the one that was saved (size, read-only) or a value is not a count."""
        if (state.capacity_sectors, bool(state.read_only)) != (self.disk.capacity_sectors, self.disk.read_only):
            raise ValueError(
                f"saved virtio-blk had {state.capacity_sectors} sectors (read_only={state.read_only}), "
                f"the backend has {self.disk.capacity_sectors} (read_only={self.disk.read_only})"
            )
        for kind, count in state.host_errors.items():
            if not isinstance(kind, str) or isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"VirtioBlkState.host_errors[{kind!r}] = {count!r} is not a count")
        restore_counters(self, state, ("requests", "io_errors", "unsupported"))
        self._host_errors.counts = dict(state.host_errors)  # kinds already seen stay quiet

    def state(self) -> VirtioBlkState:
        return VirtioBlkState(
            capacity_sectors=self.disk.capacity_sectors,
            read_only=self.disk.read_only,
            requests=self.requests,
            io_errors=self.io_errors,
            unsupported=self.unsupported,
            host_errors=self.host_errors,
        )

    @property
    def device_id(self) -> int:
        return DeviceId.BLOCK

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.VirtioBlk

    @property
    def features(self) -> int:
        return self._features

    @property
    def num_queues(self) -> int:
        return 1

    def config_space(self) -> bytes:
        disk = self.disk
        return _CONFIG.pack(
            disk.capacity_sectors,
            SIZE_MAX,
            SEG_MAX,
            0,  # geometry: not offered
            SECTOR_SIZE,
            0,  # topology: not offered
            0,  # writeback: CONFIG_WCE not offered (FLUSH means a write-back cache)
            0,
            1,  # num_queues: MQ not offered
            MAX_DWZ_SECTORS if disk.discard else 0,
            MAX_DWZ_SEGMENTS if disk.discard else 0,
            DISCARD_ALIGNMENT_SECTORS if disk.discard else 0,
            MAX_DWZ_SECTORS if disk.write_zeroes else 0,
            MAX_DWZ_SEGMENTS if disk.write_zeroes else 0,
            int(disk.write_zeroes and disk.discard),  # write_zeroes_may_unmap
        )

    def queue_notify(self, index: int) -> None:
        queue = self.queue(index)
        served = False
        while (chain := queue.pop()) is not None:
            status, used = handle_request(chain, queue.memory, self.disk)
            self.requests += 1
            self.io_errors += status == S_IOERR
            self.unsupported += status == S_UNSUPP
            queue.push_used(chain.head, used)
            served = True
        if served:
            self.interrupt(index)
