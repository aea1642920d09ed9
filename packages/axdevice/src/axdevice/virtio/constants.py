"""Numbers from the virtio 1.2 specification shared by the transport, the queues and the devices.

Section numbers refer to "Virtual I/O Device (VIRTIO) Version 1.2" (OASIS, 2022). Device-specific
numbers (request types, config layouts) live with their device.
"""

from __future__ import annotations

import enum

# -- device status (2.1) -------------------------------------------------------------------------


class DeviceStatus(enum.IntFlag):
    """The Status register's bits, set by the driver in this order (3.1.1), except NEEDS_RESET."""

    ACKNOWLEDGE = 1
    DRIVER = 2
    DRIVER_OK = 4
    FEATURES_OK = 8
    DEVICE_NEEDS_RESET = 64  # set by the device only
    FAILED = 128


# -- device types (5) ----------------------------------------------------------------------------


class DeviceId(enum.IntEnum):
    """Virtio device IDs (5 "Device Types"); 0 means "no device" to a driver."""

    NET = 1
    BLOCK = 2
    CONSOLE = 3
    ENTROPY = 4


# -- reserved feature bits (6) -------------------------------------------------------------------

VIRTIO_F_INDIRECT_DESC = 28  # 2.7.5.3 indirect descriptor tables
VIRTIO_F_EVENT_IDX = 29  # 2.7.7 / 2.7.10 used_event and avail_event
VIRTIO_F_VERSION_1 = 32  # a non-legacy (1.x) device; required by a version 2 MMIO device
VIRTIO_F_ACCESS_PLATFORM = 33
VIRTIO_F_RING_PACKED = 34
VIRTIO_F_IN_ORDER = 35
VIRTIO_F_ORDER_PLATFORM = 36
VIRTIO_F_SR_IOV = 37
VIRTIO_F_NOTIFICATION_DATA = 38
VIRTIO_F_NOTIF_CONFIG_DATA = 39
VIRTIO_F_RING_RESET = 40

TRANSPORT_FEATURE_BITS = range(28, 42)
"""Bits 28..41 belong to the transport and queues, not to a device type (6)."""

SUPPORTED_TRANSPORT_FEATURES = (1 << VIRTIO_F_INDIRECT_DESC) | (1 << VIRTIO_F_EVENT_IDX) | (1 << VIRTIO_F_VERSION_1)
"""The reserved features this implementation has: split rings with indirect tables and event
indexes. A device offering any other transport bit is refused when the transport is built."""

# -- split virtqueue flags (2.7) -----------------------------------------------------------------

VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
VIRTQ_USED_F_NO_NOTIFY = 1


def bit(n: int) -> int:
    """The feature mask of feature bit ``n``."""
    return 1 << n
