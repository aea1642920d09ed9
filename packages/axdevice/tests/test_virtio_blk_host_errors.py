"""Host-side disk failures (EIO, ENOSPC, an image truncated under the VM): the guest gets IOERR,
the host gets one log line per kind and disk, and the device counts them by kind."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest
from test_virtio_blk import header, request, start
from test_virtio_driver import VirtioDriver

from axdevice.virtio import RawFileBackend, VirtioBlk, VirtioBlkState
from axdevice.virtio.blk import request as r
from axdevice.virtio.serialize import from_dict, to_dict

SECTORS = 64
LOGGER = "axdevice.virtio.blk.host_error"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(i % 251 for i in range(SECTORS * 512)))
    return path


def start_from(state: VirtioBlkState, image: Path) -> VirtioDriver:
    driver = VirtioDriver(VirtioBlk.from_state(state, RawFileBackend(image)))
    driver.init()
    return driver


def failing(code: int):
    def call(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    return call


def host_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def test_eio_on_read_is_ioerr_logged_once_and_counted(
    image: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    driver = start(RawFileBackend(image))
    monkeypatch.setattr(os, "preadv", failing(errno.EIO))
    for sector in (0, 8, 16):
        assert request(driver, [header(r.T_IN, sector)], [512])[:2] == (r.S_IOERR, 0)
    assert driver.device.host_errors == {"EIO": 3}
    assert driver.device.io_errors == 3
    (line,) = host_lines(caplog)
    assert str(image) in line and "EIO" in line and "read of 512 bytes at byte 0" in line and "IOERR" in line


def test_enospc_on_write_and_eio_on_flush_are_separate_kinds(
    image: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    driver = start(RawFileBackend(image))
    monkeypatch.setattr(os, "pwritev", failing(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", failing(errno.EIO))
    for _ in range(2):
        assert request(driver, [header(r.T_OUT, 2), b"w" * 512])[0] == r.S_IOERR
        assert request(driver, [header(r.T_FLUSH)])[0] == r.S_IOERR
    assert driver.device.host_errors == {"ENOSPC": 2, "EIO": 2}
    lines = host_lines(caplog)
    assert len(lines) == 2
    assert "ENOSPC" in lines[0] and "write of 512 bytes at byte 1024" in lines[0]
    assert "EIO" in lines[1] and "flush" in lines[1]


def test_each_disk_reports_its_own_first_error(
    tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    other = tmp_path / "other.img"
    other.write_bytes(bytes(SECTORS * 512))
    drivers = [start(RawFileBackend(image)), start(RawFileBackend(other))]
    monkeypatch.setattr(os, "preadv", failing(errno.EIO))
    for driver in drivers * 2:
        assert request(driver, [header(r.T_IN, 0)], [512])[0] == r.S_IOERR
    lines = host_lines(caplog)
    assert len(lines) == 2 and str(image) in lines[0] and str(other) in lines[1]


def test_an_image_truncated_under_the_vm_gives_ioerr_and_a_report(
    image: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    driver = start(RawFileBackend(image))
    os.truncate(image, SECTORS * 512 // 2)
    assert request(driver, [header(r.T_IN, 0)], [512])[:2] == (r.S_OK, 513)  # still inside the file
    status, used, _ = request(driver, [header(r.T_IN, SECTORS - 2)], [1024])
    assert (status, used) == (r.S_IOERR, 0)
    assert driver.device.host_errors == {"short-read": 1}
    (line,) = host_lines(caplog)
    assert str(image) in line and "moved only 0 bytes" in line and "truncated" in line


def test_guest_mistakes_are_not_host_errors(image: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    driver = start(RawFileBackend(image))
    assert request(driver, [header(r.T_IN, SECTORS)], [512])[0] == r.S_IOERR  # past the end of the disk
    assert request(driver, [header(r.T_IN, 0)], [100])[0] == r.S_IOERR  # not whole sectors
    assert driver.device.io_errors == 2 and driver.device.host_errors == {}
    assert host_lines(caplog) == []


def test_a_backend_without_errno_is_reported_by_its_exception_class(
    image: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(RawFileBackend):
        def readv(self, offset: int, views) -> int:
            raise ValueError("descriptor table went away")

    caplog.set_level(logging.WARNING, LOGGER)
    driver = start(Broken(image))
    assert request(driver, [header(r.T_IN, 0)], [512])[0] == r.S_IOERR
    assert driver.device.host_errors == {"ValueError": 1}
    assert "descriptor table went away" in host_lines(caplog)[0]


def test_host_error_counts_are_saved_and_restored(
    image: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    driver = start(RawFileBackend(image))
    monkeypatch.setattr(os, "preadv", failing(errno.EIO))
    request(driver, [header(r.T_IN, 0)], [512])
    saved = from_dict(VirtioBlkState, to_dict(driver.device.state()))
    assert saved.host_errors == {"EIO": 1}
    driver.device.backend.close()
    resumed = start_from(saved, image)
    assert request(resumed, [header(r.T_IN, 0)], [512])[0] == r.S_IOERR
    assert resumed.device.host_errors == {"EIO": 2}
    assert len(host_lines(caplog)) == 1  # a kind already reported stays quiet after a resume
    saved.host_errors = {"EIO": -1}
    resumed.device.backend.close()
    with pytest.raises(ValueError, match=r"host_errors\['EIO'\]"):
        VirtioBlk.from_state(saved, RawFileBackend(image))
    with pytest.raises(ValueError, match="host_errors"):
        from_dict(VirtioBlkState, {"host_errors": {"EIO": "many"}})
