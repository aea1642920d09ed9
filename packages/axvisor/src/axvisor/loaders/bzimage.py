"""Linux bzImage files (Documentation/arch/x86/boot.rst): the setup header and the payload.

The compressed kernel inside (``payload_offset``/``payload_length``, protocol 2.08+) can be
decompressed here on the host, which turns minutes of in-guest decompression on an emulating
KVM (PVM) into a second; the result is the vmlinux ELF, entered directly.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass

import zstandard

HDRS_MAGIC = b"HdrS"
SETUP_HEADER = 0x1F1
XLF_KERNEL_64 = 1 << 0
MIN_PROTOCOL = 0x0208
HEADER_FIELDS_END = 0x264
"""The end of the last setup-header field read here (init_size at 0x260)."""
"""2.08 added payload_offset/length; 2.12 added xloadflags. Debian's kernels speak 2.15."""


class BzImageError(ValueError):
    pass


@dataclass(frozen=True)
class BzImage:
    setup_header: bytes
    protocol: int
    protected_mode_kernel: bytes
    payload: bytes
    pref_address: int
    init_size: int
    supports_64bit_entry: bool

    def decompress_payload(self) -> bytes:
        """The vmlinux ELF inside, for the compressions Python's standard library reads."""
        payload = self.payload
        try:
            if payload.startswith(b"\x1f\x8b"):
                return gzip.decompress(payload)
            if payload.startswith(b"\xfd7zXZ\x00"):
                return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
            if payload.startswith(b"\x5d\x00\x00"):
                return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
            if payload.startswith(b"BZh"):
                return bz2.decompress(payload)
            if payload.startswith(b"\x28\xb5\x2f\xfd"):  # zstd, Debian's choice since trixie
                return _zstd_decompress(payload)
        except (OSError, lzma.LZMAError, EOFError, zlib.error, zstandard.ZstdError) as error:
            raise BzImageError(f"the kernel payload does not decompress: {error}") from None
        raise BzImageError(f"the kernel payload's compression (magic {payload[:4].hex()}) is not one of "
                           "gzip, xz, lzma, bzip2, zstd; boot it with in-guest decompression instead")


def _zstd_decompress(payload: bytes) -> bytes:
    """One zstd frame (zstd --ultra -22: a 128 MiB window, beyond the library's default limit, and
    no recorded content size), followed by the 4-byte size the kernel build appends."""
    return zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj().decompress(payload)


def is_bzimage(data: bytes) -> bool:
    return len(data) > 0x206 and data[0x202:0x206] == HDRS_MAGIC


def parse_bzimage(data: bytes) -> BzImage:
    if not is_bzimage(data):
        raise BzImageError("no 'HdrS' setup header at 0x202")
    if len(data) < HEADER_FIELDS_END:
        raise BzImageError(f"the setup header is cut short at {len(data):#x} bytes (truncated bzImage?)")
    protocol = struct.unpack_from("<H", data, 0x206)[0]
    if protocol < MIN_PROTOCOL:
        raise BzImageError(f"boot protocol {protocol >> 8}.{protocol & 0xFF:02d} is older than 2.08")
    setup_sects = data[SETUP_HEADER] or 4
    header_end = 0x202 + data[0x201]
    pm_offset = (setup_sects + 1) * 512
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    xloadflags = struct.unpack_from("<H", data, 0x236)[0]
    pref_address = struct.unpack_from("<Q", data, 0x258)[0]
    init_size = struct.unpack_from("<I", data, 0x260)[0]
    kernel = data[pm_offset:]
    if pm_offset + payload_offset + payload_length > len(data):
        raise BzImageError("the payload runs past the end of the file (truncated bzImage?)")
    payload = kernel[payload_offset: payload_offset + payload_length]
    return BzImage(data[SETUP_HEADER:header_end], protocol, kernel, payload, pref_address, init_size,
                   bool(xloadflags & XLF_KERNEL_64))
