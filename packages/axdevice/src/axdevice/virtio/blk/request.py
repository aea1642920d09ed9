"""virtio-blk request handling (virtio 1.2, 5.2.6): one descriptor chain in, a status byte out.

A request is a 16-byte header the device reads (type, reserved, sector), then data (read by
the device for OUT, DISCARD and WRITE_ZEROES; written by it for IN and GET_ID), then one status
byte the device writes: the last writable byte of the chain. A chain too short to hold a header
and a status byte cannot be answered at all, so it is a queue violation (``QueueError``, as
QEMU treats it); every other problem is answered in the status byte:

- IN / OUT: data a whole number of 512-byte sectors, ``[sector, sector + n)`` inside the disk,
  else IOERR; OUT on a read-only disk is IOERR; a backend that raises or moves fewer bytes than
  asked gives IOERR, and is reported to the host (``Disk.on_host_error``, see ``host_error``),
  as are failures of the backend's flush, discard and write-zeroes.
- FLUSH: the backend's flush; GET_ID: up to 20 bytes of the serial, NUL padded.
- DISCARD / WRITE_ZEROES (only when offered): whole 16-byte segments (sector, num_sectors,
  flags), at most ``MAX_DWZ_SEGMENTS`` and ``MAX_DWZ_SECTORS`` each, inside the disk, else
  IOERR; an unmap flag on DISCARD or any other flag bit is UNSUPP.
- Any other type is UNSUPP.

The used length reported is a lower bound of what was written from the first writable byte
(2.7.8: the driver may rely on that many bytes): all data plus the status byte when the data
was written in full, else only the data actually written (0 after an error).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from axaddrspace import GuestMemory

from ..queue import DescriptorChain, QueueError
from .backend import BlockBackend
from .host_error import HostError

SECTOR_SIZE = 512
ID_BYTES = 20  # VIRTIO_BLK_ID_BYTES

T_IN = 0
T_OUT = 1
T_FLUSH = 4
T_GET_ID = 8
T_DISCARD = 11
T_WRITE_ZEROES = 13

S_OK = 0
S_IOERR = 1
S_UNSUPP = 2

DWZ_FLAG_UNMAP = 1

# One discard/write-zeroes range per request, as QEMU: Linux sends one per request anyway when
# told so, and each range is one host call.
MAX_DWZ_SEGMENTS = 1
# 16 MiB per discard or write-zeroes range: without punching, write-zeroes writes every byte on
# the vCPU's thread, so this bounds how long one request can hold it (QEMU's vhost-user-blk
# export uses the same figure).
MAX_DWZ_SECTORS = 32768

_HEADER = struct.Struct("<IIQ")  # type, reserved, sector
_DWZ_SEGMENT = struct.Struct("<QII")  # sector, num_sectors, flags


def _ignore(failure: HostError) -> None:
    """Where nobody listens for host errors (a Disk built by hand in a test)."""


@dataclass(frozen=True)
class Disk:
    """What request handling needs to know about the disk, fixed when the device is built."""

    backend: BlockBackend
    capacity_sectors: int
    read_only: bool
    discard: bool
    write_zeroes: bool
    serial: bytes
    on_host_error: Callable[[HostError], None] = _ignore

    def in_range(self, sector: int, num_sectors: int) -> bool:
        return sector + num_sectors <= self.capacity_sectors


def handle_request(chain: DescriptorChain, memory: GuestMemory, disk: Disk) -> tuple[int, int]:
    """Serve one request chain; returns (status, used length). QueueError if it has no frame."""
    if chain.readable_len < _HEADER.size or chain.writable_len < 1:
        raise QueueError(f"virtio-blk request of {chain.readable_len}+{chain.writable_len} bytes has no header/status")
    req_type, _reserved, sector = _HEADER.unpack(chain.read_bytes(memory, _HEADER.size))
    data_len = chain.writable_len - 1  # device-writable bytes before the status byte
    status, written = _dispatch(req_type, sector, chain, memory, disk)
    chain.write_bytes(memory, bytes((status,)), data_len)
    return status, written + 1 if written == data_len else written


def _dispatch(req_type: int, sector: int, chain: DescriptorChain, memory: GuestMemory, disk: Disk) -> tuple[int, int]:
    """(status, data bytes written at the start of the writable buffers)."""
    if req_type == T_IN:
        return _read(sector, chain, memory, disk)
    if req_type == T_OUT:
        return _write(sector, chain, memory, disk), 0
    if req_type == T_FLUSH:
        return _call(disk, HostError("flush", 0, 0), disk.backend.flush), 0
    if req_type == T_GET_ID:
        ident = disk.serial[:ID_BYTES].ljust(ID_BYTES, b"\0")[: chain.writable_len - 1]
        return S_OK, chain.write_bytes(memory, ident)
    if req_type == T_DISCARD and disk.discard:
        return _ranges(req_type, chain, memory, disk), 0
    if req_type == T_WRITE_ZEROES and disk.write_zeroes:
        return _ranges(req_type, chain, memory, disk), 0
    return S_UNSUPP, 0


def _call(disk: Disk, what: HostError, func: object, *args: object) -> int:
    """Run a backend call; any failure of the backend is the request's IOERR, reported as ``what``."""
    try:
        func(*args)  # type: ignore[operator]
    except Exception as error:
        return _failed(disk, HostError(what.operation, what.offset, what.length, error))
    return S_OK


def _failed(disk: Disk, failure: HostError) -> int:
    """Tell the host about a request it failed; the guest gets IOERR."""
    disk.on_host_error(failure)
    return S_IOERR


def _sectors(sector: int, length: int, disk: Disk) -> int | None:
    """The sector count of ``length`` data bytes at ``sector``, or None if not a valid range."""
    if length % SECTOR_SIZE or not disk.in_range(sector, length // SECTOR_SIZE):
        return None
    return length // SECTOR_SIZE


def _read(sector: int, chain: DescriptorChain, memory: GuestMemory, disk: Disk) -> tuple[int, int]:
    length = chain.writable_len - 1
    if _sectors(sector, length, disk) is None:
        return S_IOERR, 0
    offset = sector * SECTOR_SIZE
    views = chain.writable_views(memory, 0, length)
    try:
        done = disk.backend.readv(offset, views)
    except Exception as error:
        return _failed(disk, HostError("read", offset, length, error)), 0
    finally:
        for view in views:
            view.release()
    if done != length:
        return _failed(disk, HostError("read", offset, length, done=done)), 0
    return S_OK, length


def _write(sector: int, chain: DescriptorChain, memory: GuestMemory, disk: Disk) -> int:
    length = chain.readable_len - _HEADER.size
    if disk.read_only or _sectors(sector, length, disk) is None:
        return S_IOERR
    offset = sector * SECTOR_SIZE
    views = chain.readable_views(memory, _HEADER.size, length)
    try:
        done = disk.backend.writev(offset, views)
    except Exception as error:
        return _failed(disk, HostError("write", offset, length, error))
    finally:
        for view in views:
            view.release()
    return S_OK if done == length else _failed(disk, HostError("write", offset, length, done=done))


def _ranges(req_type: int, chain: DescriptorChain, memory: GuestMemory, disk: Disk) -> int:
    """DISCARD or WRITE_ZEROES over the segments following the header."""
    length = chain.readable_len - _HEADER.size
    count = length // _DWZ_SEGMENT.size
    if length % _DWZ_SEGMENT.size or not 0 < count <= MAX_DWZ_SEGMENTS:
        return S_IOERR
    payload = chain.read_bytes(memory, length, _HEADER.size)
    segments = [_DWZ_SEGMENT.unpack_from(payload, i * _DWZ_SEGMENT.size) for i in range(count)]
    for sector, num_sectors, flags in segments:
        if flags & ~DWZ_FLAG_UNMAP or (req_type == T_DISCARD and flags & DWZ_FLAG_UNMAP):
            return S_UNSUPP
        if num_sectors > MAX_DWZ_SECTORS or not disk.in_range(sector, num_sectors):
            return S_IOERR
    for sector, num_sectors, flags in segments:
        offset, size = sector * SECTOR_SIZE, num_sectors * SECTOR_SIZE
        if req_type == T_DISCARD:
            what = HostError("discard", offset, size)
            status = _call(disk, what, getattr(disk.backend, "discard"), offset, size)  # noqa: B009 (optional member)
        else:
            what = HostError("write-zeroes", offset, size)
            unmap = bool(flags & DWZ_FLAG_UNMAP)
            status = _call(disk, what, getattr(disk.backend, "write_zeroes"), offset, size, unmap)  # noqa: B009
        if status != S_OK:
            return status
    return S_OK
