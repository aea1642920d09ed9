"""virtio-blk against a real image file: data lands in the file, errors land in the status byte."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_virtio_driver import VirtioDriver

from axaddrspace import AccessWidth
from axdevice.virtio import DeviceStatus, RawFileBackend, VirtioBlk, VirtioBlkState
from axdevice.virtio import mmio as m
from axdevice.virtio.blk import MAX_DWZ_SECTORS, file_backend
from axdevice.virtio.blk import device as blk
from axdevice.virtio.blk import request as r
from axdevice.virtio.constants import VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit
from axdevice.virtio.serialize import from_dict, to_dict

SECTORS = 64


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(i % 251 for i in range(SECTORS * 512)))
    return path


def header(req_type: int, sector: int = 0) -> bytes:
    return struct.pack("<IIQ", req_type, 0, sector)


def start(backend) -> VirtioDriver:
    driver = VirtioDriver(VirtioBlk(backend))
    driver.init()
    return driver


def request(
    driver: VirtioDriver, readable: Sequence[bytes], data_sizes: Sequence[int] = (), indirect: bool = False
) -> tuple[int, int, list[int]]:
    """Post one request, kick, and return (status, used length, data buffer addresses)."""
    _, bufs = driver.post(0, readable, [*data_sizes, 1], indirect=indirect)
    driver.kick(0)
    ((_, used),) = driver.used(0)
    return driver.memory.read_u8(bufs[-1]), used, bufs[:-1]


def test_config_space_and_features(image: Path) -> None:
    driver = VirtioDriver(VirtioBlk(RawFileBackend(image)))
    assert driver.read(m.DEVICE_ID) == 2
    assert driver.config(0, AccessWidth.QWORD) == SECTORS
    assert driver.config(0, AccessWidth.DWORD) == SECTORS and driver.config(4, AccessWidth.DWORD) == 0
    assert driver.config(8, AccessWidth.DWORD) == blk.SIZE_MAX
    assert driver.config(12, AccessWidth.DWORD) == blk.SEG_MAX == 254
    assert driver.config(20, AccessWidth.DWORD) == 512
    assert driver.config(34, AccessWidth.WORD) == 1
    features = driver.device_features()
    for feature in (blk.VIRTIO_BLK_F_FLUSH, blk.VIRTIO_BLK_F_BLK_SIZE, blk.VIRTIO_BLK_F_SEG_MAX, VIRTIO_F_EVENT_IDX):
        assert features & bit(feature)
    assert not features & bit(blk.VIRTIO_BLK_F_RO)
    if features & bit(blk.VIRTIO_BLK_F_DISCARD):  # Linux: hole punching through fallocate
        assert driver.config(36, AccessWidth.DWORD) == MAX_DWZ_SECTORS
        assert driver.config(40, AccessWidth.DWORD) == 1
        assert driver.config(44, AccessWidth.DWORD) == blk.DISCARD_ALIGNMENT_SECTORS
    assert features & bit(blk.VIRTIO_BLK_F_WRITE_ZEROES)
    assert driver.config(48, AccessWidth.DWORD) == MAX_DWZ_SECTORS


def test_write_lands_in_the_file_and_reads_back(image: Path) -> None:
    driver = start(RawFileBackend(image))
    payload = os.urandom(3 * 512)
    status, used = request(driver, [header(r.T_OUT, 5), payload[:512], payload[512:]])[:2]
    assert (status, used) == (r.S_OK, 1)
    assert image.read_bytes()[5 * 512 : 8 * 512] == payload
    status, used, bufs = request(driver, [header(r.T_IN, 5)], [1024, 512])
    assert (status, used) == (r.S_OK, 3 * 512 + 1)
    assert driver.memory.read(bufs[0], 1024) + driver.memory.read(bufs[1], 512) == payload
    assert driver.device.requests == 2


def test_indirect_requests(image: Path) -> None:
    driver = start(RawFileBackend(image))
    status, used, bufs = request(driver, [header(r.T_IN, 1)], [512] * 8, indirect=True)
    assert (status, used) == (r.S_OK, 8 * 512 + 1)
    expected = image.read_bytes()[512 : 9 * 512]
    assert b"".join(driver.memory.read(b, 512) for b in bufs) == expected


def test_flush_and_get_id(image: Path) -> None:
    driver = start(RawFileBackend(image, serial="disk-serial-0123456789-long"))
    assert request(driver, [header(r.T_FLUSH)])[:2] == (r.S_OK, 1)
    status, used, (buf,) = request(driver, [header(r.T_GET_ID)], [20])
    assert (status, used) == (r.S_OK, 21)
    assert driver.memory.read(buf, 20) == b"disk-serial-01234567"
    driver.device.backend.close()  # the image is locked while its first backend is open
    driver2 = start(RawFileBackend(image, serial="vda"))
    _, _, (buf,) = request(driver2, [header(r.T_GET_ID)], [20])
    assert driver2.memory.read(buf, 20) == b"vda".ljust(20, b"\0")


@pytest.mark.parametrize(
    "readable, sizes",
    [
        ([header(r.T_IN, SECTORS)], [512]),  # one past the end
        ([header(r.T_IN, SECTORS - 1)], [1024]),  # runs past the end
        ([header(r.T_IN, 2**64 - 1)], [512]),  # sector arithmetic must not wrap
        ([header(r.T_IN, 0)], [100]),  # not a whole sector
        ([header(r.T_OUT, SECTORS), b"x" * 512], []),
        ([header(r.T_OUT, 0), b"x" * 513], []),
    ],
)
def test_out_of_range_or_partial_sectors_are_ioerr(image: Path, readable, sizes) -> None:
    before = image.read_bytes()
    driver = start(RawFileBackend(image))
    status, used, _ = request(driver, readable, sizes)
    assert status == r.S_IOERR
    assert used == (0 if sizes else 1)
    assert image.read_bytes() == before and driver.device.io_errors == 1


def test_read_only_disk(image: Path) -> None:
    before = image.read_bytes()
    driver = VirtioDriver(VirtioBlk(RawFileBackend(image, read_only=True)))
    features = driver.device_features()
    assert features & bit(blk.VIRTIO_BLK_F_RO)
    assert not features & (bit(blk.VIRTIO_BLK_F_DISCARD) | bit(blk.VIRTIO_BLK_F_WRITE_ZEROES))
    driver.init()
    assert request(driver, [header(r.T_OUT, 0), b"y" * 512])[0] == r.S_IOERR
    assert request(driver, [header(r.T_IN, 0)], [512])[0] == r.S_OK
    assert request(driver, [header(r.T_WRITE_ZEROES), struct.pack("<QII", 0, 1, 0)])[0] == r.S_UNSUPP
    assert image.read_bytes() == before


def test_unsupported_request_types(image: Path) -> None:
    driver = start(RawFileBackend(image))
    for req_type in (2, 10, 14, 0xFFFF_FFFF):
        assert request(driver, [header(req_type)])[:2] == (r.S_UNSUPP, 1)
    assert driver.device.unsupported == 4


def test_discard_and_write_zeroes(image: Path) -> None:
    driver = start(RawFileBackend(image))
    dwz = struct.Struct("<QII")
    assert request(driver, [header(r.T_WRITE_ZEROES), dwz.pack(2, 3, 0)])[0] == r.S_OK
    assert image.read_bytes()[2 * 512 : 5 * 512] == bytes(3 * 512)
    assert request(driver, [header(r.T_WRITE_ZEROES), dwz.pack(8, 8, r.DWZ_FLAG_UNMAP)])[0] == r.S_OK
    assert image.read_bytes()[8 * 512 : 16 * 512] == bytes(8 * 512)
    assert os.path.getsize(image) == SECTORS * 512
    if driver.device.disk.discard:
        assert request(driver, [header(r.T_DISCARD), dwz.pack(16, 8, 0)])[0] == r.S_OK
        assert request(driver, [header(r.T_DISCARD), dwz.pack(16, 8, r.DWZ_FLAG_UNMAP)])[0] == r.S_UNSUPP
    assert request(driver, [header(r.T_WRITE_ZEROES), dwz.pack(0, 1, 2)])[0] == r.S_UNSUPP
    assert request(driver, [header(r.T_WRITE_ZEROES), dwz.pack(SECTORS - 1, 2, 0)])[0] == r.S_IOERR
    assert request(driver, [header(r.T_WRITE_ZEROES), dwz.pack(0, MAX_DWZ_SECTORS + 1, 0)])[0] == r.S_IOERR
    two = dwz.pack(0, 1, 0) * 2
    assert request(driver, [header(r.T_WRITE_ZEROES), two])[0] == r.S_IOERR
    assert request(driver, [header(r.T_WRITE_ZEROES), b"short"])[0] == r.S_IOERR
    assert os.path.getsize(image) == SECTORS * 512


def test_write_zeroes_without_hole_punching(image: Path) -> None:
    backend = RawFileBackend(image)
    backend._punch = False
    backend.write_zeroes(512, 3 * 512, unmap=True)
    assert image.read_bytes()[512 : 4 * 512] == bytes(3 * 512)
    assert image.read_bytes()[4 * 512] == (4 * 512) % 251


class FailingBackend:
    size_bytes = 8 * 512
    read_only = False
    serial = "bad"

    def __init__(self, short: bool = False) -> None:
        self.short = short
        self.flushes = 0

    def readv(self, offset: int, views) -> int:
        if self.short:
            return 0
        raise OSError(errno.EIO, "media error")

    def writev(self, offset: int, views) -> int:
        raise RuntimeError("backend bug")

    def flush(self) -> None:
        self.flushes += 1
        raise OSError(errno.EIO, "flush failed")


@pytest.mark.parametrize("short", [False, True])
def test_backend_failures_are_ioerr(short: bool) -> None:
    backend = FailingBackend(short)
    driver = start(backend)
    features = driver.device.features
    assert not features & (bit(blk.VIRTIO_BLK_F_DISCARD) | bit(blk.VIRTIO_BLK_F_WRITE_ZEROES))
    assert request(driver, [header(r.T_IN, 0)], [512])[:2] == (r.S_IOERR, 0)
    assert request(driver, [header(r.T_OUT, 0), b"z" * 512])[:2] == (r.S_IOERR, 1)
    assert request(driver, [header(r.T_FLUSH)])[:2] == (r.S_IOERR, 1)
    assert backend.flushes == 1 and driver.device.io_errors == 3
    assert driver.status & DeviceStatus.DRIVER_OK and not driver.status & DeviceStatus.DEVICE_NEEDS_RESET


@pytest.mark.parametrize("readable, sizes", [([b"short"], [0]), ([header(r.T_IN)], [])])
def test_request_without_header_or_status_needs_reset(image: Path, readable, sizes) -> None:
    driver = start(RawFileBackend(image))
    driver.post(0, readable, sizes)
    driver.kick(0)
    assert driver.status & DeviceStatus.DEVICE_NEEDS_RESET
    assert driver.read(m.INTERRUPT_STATUS) & m.INT_CONFIG_CHANGE


def test_event_idx_batches_interrupts(image: Path) -> None:
    driver = start(RawFileBackend(image))
    driver.set_used_event(0, 2)  # interrupt once the third request is used
    for i in range(3):
        driver.post(0, [header(r.T_IN, i)], [512, 1])
        driver.kick(0)
        assert driver.irq.level == (i == 2)
    assert driver.avail_event(0) == 3  # the device wants a kick for the next one


def test_no_interrupt_flag_without_event_idx(image: Path) -> None:
    driver = VirtioDriver(VirtioBlk(RawFileBackend(image)))
    driver.init(features=bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC))
    driver.set_avail_flags(0, 1)
    driver.post(0, [header(r.T_FLUSH)], [1])
    driver.kick(0)
    assert not driver.irq.level and len(driver.used(0)) == 1
    driver.set_avail_flags(0, 0)
    driver.post(0, [header(r.T_FLUSH)], [1])
    driver.kick(0)
    assert driver.irq.level


def test_state_identifies_the_disk(image: Path, tmp_path: Path) -> None:
    device = VirtioBlk(RawFileBackend(image))
    saved = from_dict(VirtioBlkState, to_dict(device.state()))
    device.backend.close()  # the image is locked while a backend has it open
    assert VirtioBlk.from_state(saved, RawFileBackend(image)).state() == device.state()
    other = tmp_path / "other.img"
    other.write_bytes(bytes(512))
    with pytest.raises(ValueError, match="sectors"):
        VirtioBlk.from_state(saved, RawFileBackend(other))
    saved.requests = -1
    with pytest.raises(ValueError, match="count"):
        VirtioBlk.from_state(saved, RawFileBackend(image))


def test_raw_file_backend_batches_beyond_iov_max(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_backend, "_IOV_MAX", 3)
    with RawFileBackend(image) as backend:
        bufs = [bytearray(100) for _ in range(10)]
        assert backend.readv(7, [memoryview(b) for b in bufs]) == 1000
        assert b"".join(bufs) == image.read_bytes()[7:1007]
        assert backend.writev(0, [memoryview(b"ab")] * 5) == 10
        assert backend.readv(SECTORS * 512 - 4, [memoryview(bytearray(8))]) == 4  # the file ends
    assert image.read_bytes()[:10] == b"ab" * 5
    with RawFileBackend(image, read_only=True) as backend, pytest.raises(OSError):
        backend.writev(0, [memoryview(b"x")])
