"""Turning the kvm_run page after KVM_RUN into axvcpu exits, and answering reads into it.

Theory of operation (Documentation/virt/kvm/api.rst, "The kvm_run structure"). After KVM_RUN
returns, ``exit_reason`` says which member of the exit union is valid. Port I/O leaves its data
in the same mapping at ``io.data_offset``: ``count`` elements of ``size`` bytes (``count > 1``
for string I/O such as ``rep outsb``). MMIO leaves up to 8 bytes in ``mmio.data``. For reads,
KVM takes the answer from those same bytes when KVM_RUN is entered again.

The common exits (a single IN/OUT, an MMIO access of 1/2/4/8 bytes) are decoded in C, by the
same call that runs KVM_RUN (``axv_run`` in _ffi.py): it hands back one integer (kind, size,
port, data) and the MMIO address and data in a two-word buffer, so the hot path reads no
kvm_run field through cffi. Exits are frozen, so the same exit (same port, width and data) is
reused from a bounded cache instead of being built again. Everything else is decoded here, in
Python, from the page.

String I/O is reported one element at a time without re-entering KVM: the decoder keeps a
cursor and the vCPU asks ``next_io()`` until the elements run out. Each IN element is answered
into its own slot. Before any read is answered its bytes are set to all-ones, the defined value
of a read nobody answers.

Every number here comes from the kernel on the guest's behalf, so each is checked before it is
used as an offset: widths must be 1/2/4 (port) or 1/2/4/8 (MMIO), and the data of a string I/O
must lie inside the mapping (KVM keeps it within one page); anything else is ``Unsupported``.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from typing import Any

from axaddrspace import AccessWidth, GuestPhysAddr

from ...errors import PendingReadError
from ...exits import (
    AxVCpuExitReason,
    FailEntry,
    Halt,
    IoRead,
    IoWrite,
    MmioRead,
    MmioWrite,
    Nothing,
    SystemDown,
    Unsupported,
)

_PIO_WIDTHS = {1: AccessWidth.BYTE, 2: AccessWidth.WORD, 4: AccessWidth.DWORD}
_MMIO_WIDTHS = {**_PIO_WIDTHS, 8: AccessWidth.QWORD}
_HALT = Halt()
_NOTHING = Nothing()
_CACHE_LIMIT = 4096
"""Most distinct exits kept for reuse: the guest chooses ports and data, so the cache is bounded."""

VMX_ENTRY_FAILURES = {33: "invalid guest state", 34: "MSR loading", 41: "machine-check event"}
"""Basic exit reasons Intel reports for a failed VM entry (SDM vol. 3, appendix C)."""


def constant_names(lib: Any, prefix: str, exclude: tuple[str, ...] = ()) -> dict[int, str]:
    """Map the values of the header constants starting with ``prefix`` to their names."""
    names: dict[int, str] = {}
    for name in dir(lib):
        if name.startswith(prefix) and name not in exclude:
            names.setdefault(int(getattr(lib, name)), name)
    return names


class ExitDecoder:
    """Decodes one vCPU's exits; ``where()`` describes the guest's RIP (and code) for failures."""

    def __init__(self, ffi: Any, lib: Any, run: Any, raw: mmap.mmap | bytearray, where: Callable[[bool], str]) -> None:
        self._ffi = ffi
        self._lib = lib
        self._run = run
        self._raw = raw
        self._size = len(raw)
        self._where = where
        self._exit_names = constant_names(lib, "KVM_EXIT_", ("KVM_EXIT_IO_IN", "KVM_EXIT_IO_OUT"))
        flag = ("KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES",)
        self._internal_names = constant_names(lib, "KVM_INTERNAL_ERROR_", flag)
        self._pending: tuple[int, int] | None = None  # (offset into the mapping, bytes) of the unanswered read
        # String I/O cursor: port, width, direction, offset of the next element, elements left.
        self._io_port = 0
        self._io_width = AccessWidth.BYTE
        self._io_out = False
        self._io_offset = 0
        self.io_left = 0
        self._mmio_data = ffi.offsetof("struct kvm_run", "mmio") + ffi.offsetof("axv_exit_mmio", "data")
        # Two words axv_decode fills for MMIO (address, written data), read as a memoryview.
        self.mmio_out: Any = ffi.new("uint64_t[2]")
        self._mmio_words = memoryview(ffi.buffer(self.mmio_out)).cast("Q")
        self._cache: dict[Any, AxVCpuExitReason] = {}
        self._pio_out, self._pio_in = lib.AXV_EXIT_PIO_OUT, lib.AXV_EXIT_PIO_IN
        self._mmio_write, self._mmio_read = lib.AXV_EXIT_MMIO_WRITE, lib.AXV_EXIT_MMIO_READ
        self._exit_io = lib.KVM_EXIT_IO
        self._io_out_code = lib.KVM_EXIT_IO_OUT
        self._decoders: dict[int, Callable[[], AxVCpuExitReason]] = {
            lib.KVM_EXIT_MMIO: self._mmio,
            lib.KVM_EXIT_HLT: lambda: _HALT,
            lib.KVM_EXIT_INTR: lambda: _NOTHING,
            lib.KVM_EXIT_IRQ_WINDOW_OPEN: lambda: _NOTHING,
            lib.KVM_EXIT_SHUTDOWN: self._shutdown,
            lib.KVM_EXIT_SYSTEM_EVENT: self._system_event,
            lib.KVM_EXIT_FAIL_ENTRY: self._fail_entry,
            lib.KVM_EXIT_INTERNAL_ERROR: self._internal_error,
        }

    def exit_name(self, code: int) -> str:
        return self._exit_names.get(code, f"KVM exit reason {code}")

    # -- reads -----------------------------------------------------------------------------------

    def complete_read(self, value: int) -> None:
        """Put ``value`` (little-endian, cut to the access width) where KVM picks up the read."""
        if self._pending is None:
            raise PendingReadError("no MmioRead or IoRead is waiting for a value")
        offset, size = self._pending
        self._raw[offset : offset + size] = (value & ((1 << (size * 8)) - 1)).to_bytes(size, "little")
        self._pending = None

    def _expect_read(self, offset: int, size: int) -> None:
        self._raw[offset : offset + size] = b"\xff" * size
        self._pending = (offset, size)

    # -- decoding --------------------------------------------------------------------------------

    def decode(self) -> AxVCpuExitReason:
        """The exit KVM_RUN just reported (what ``axv_run`` does after KVM_RUN, then ``decode_packed``)."""
        return self.decode_packed(self._lib.axv_decode(self._run, self._size, self.mmio_out))

    def decode_packed(self, packed: int) -> AxVCpuExitReason:
        """The exit ``axv_decode`` packed into ``packed`` (see _ffi.py), from the page where it says OTHER."""
        self._pending = None  # an unanswered earlier read went to the guest as all-ones
        kind = packed & 7
        if kind == self._pio_out:
            exit_reason = self._cache.get(packed)
            if exit_reason is None:
                exit_reason = self._keep(packed, IoWrite((packed >> 8) & 0xFFFF, _MMIO_WIDTHS[(packed >> 3) & 15],
                                                         packed >> 24))
            return exit_reason
        if kind == self._pio_in:
            size = (packed >> 3) & 15
            self._pending = (packed >> 24, size)
            key = packed & 0xFFFFFF  # not the data offset
            exit_reason = self._cache.get(key)
            if exit_reason is None:
                exit_reason = self._keep(key, IoRead((packed >> 8) & 0xFFFF, _MMIO_WIDTHS[size]))
            return exit_reason
        if kind == self._mmio_write:
            words = self._mmio_words
            write_key = (words[0], words[1], packed)
            exit_reason = self._cache.get(write_key)
            if exit_reason is None:
                width = _MMIO_WIDTHS[packed >> 3]
                exit_reason = self._keep(write_key, MmioWrite(GuestPhysAddr(words[0]), width, words[1]))
            return exit_reason
        if kind == self._mmio_read:
            size = packed >> 3
            self._pending = (self._mmio_data, size)
            read_key = (self._mmio_words[0], packed)
            exit_reason = self._cache.get(read_key)
            if exit_reason is None:
                exit_reason = self._keep(read_key, MmioRead(GuestPhysAddr(self._mmio_words[0]), _MMIO_WIDTHS[size]))
            return exit_reason
        return self._decode_other()

    def _keep(self, key: Any, exit_reason: AxVCpuExitReason) -> AxVCpuExitReason:
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[key] = exit_reason
        return exit_reason

    def _decode_other(self) -> AxVCpuExitReason:
        run = self._run
        code = run.exit_reason
        if code == self._exit_io:  # string I/O or sizes C left alone
            return self._io(run.io)
        decoder = self._decoders.get(code)
        if decoder is None:
            return self._unsupported(code)
        return decoder()

    def _unsupported(self, code: int, detail: str = "") -> Unsupported:
        extra = {}
        if code == self._lib.KVM_EXIT_UNKNOWN:
            extra["hardware_exit_reason"] = int(self._run.hw.hardware_exit_reason)
        elif code == self._lib.KVM_EXIT_EXCEPTION:
            extra = {"exception": int(self._run.ex.exception), "error_code": int(self._run.ex.error_code)}
        return Unsupported(code, detail or self.exit_name(code), extra)

    def _io(self, io: Any) -> AxVCpuExitReason:
        size, count, offset = io.size, io.count, io.data_offset
        width = _PIO_WIDTHS.get(size)
        if width is None or count == 0 or offset + size * count > self._size:
            detail = f"KVM_EXIT_IO port {io.port:#x}: size {size} x count {count} at offset {offset:#x} is not usable"
            return self._unsupported(self._exit_io, detail)
        if count == 1:  # plain IN/OUT: no cursor
            if io.direction == self._io_out_code:
                raw = self._raw
                data = raw[offset] if size == 1 else int.from_bytes(raw[offset : offset + size], "little")
                return IoWrite(io.port, width, data)
            self._expect_read(offset, size)
            return IoRead(io.port, width)
        self._io_port = io.port
        self._io_width = width
        self._io_out = io.direction == self._io_out_code
        self._io_offset = offset
        self.io_left = count
        return self.next_io()

    def next_io(self) -> AxVCpuExitReason:
        """The next element of the current port I/O (the only one unless it is string I/O)."""
        offset = self._io_offset
        size = int(self._io_width)
        self._io_offset = offset + size
        self.io_left -= 1
        self._pending = None
        if self._io_out:
            data = self._raw[offset] if size == 1 else int.from_bytes(self._raw[offset : offset + size], "little")
            return IoWrite(self._io_port, self._io_width, data)
        self._expect_read(offset, size)
        return IoRead(self._io_port, self._io_width)

    def _mmio(self) -> AxVCpuExitReason:
        mmio = self._run.mmio
        width = _MMIO_WIDTHS.get(mmio.len)
        if width is None:
            return self._unsupported(self._lib.KVM_EXIT_MMIO, f"KVM_EXIT_MMIO at {mmio.phys_addr:#x}: "
                                                               f"length {mmio.len} is not 1, 2, 4 or 8")
        addr = GuestPhysAddr(mmio.phys_addr)
        start = self._mmio_data
        if mmio.is_write:
            return MmioWrite(addr, width, int.from_bytes(self._raw[start : start + int(width)], "little"))
        self._expect_read(start, int(width))
        return MmioRead(addr, width)

    def _shutdown(self) -> AxVCpuExitReason:
        return FailEntry(0, f"triple fault (KVM_EXIT_SHUTDOWN) {self._where(True)}")

    def _system_event(self) -> AxVCpuExitReason:
        lib, kind = self._lib, self._run.system_event.type
        if kind == lib.KVM_SYSTEM_EVENT_SHUTDOWN:
            return SystemDown(0)
        if kind == lib.KVM_SYSTEM_EVENT_RESET:
            return SystemDown(0, reset=True)
        if kind == lib.KVM_SYSTEM_EVENT_CRASH:
            return FailEntry(0, f"the guest reported a crash (KVM_SYSTEM_EVENT_CRASH) {self._where(False)}")
        return self._unsupported(lib.KVM_EXIT_SYSTEM_EVENT, f"KVM_EXIT_SYSTEM_EVENT type {kind}")

    def _fail_entry(self) -> AxVCpuExitReason:
        reason = int(self._run.fail_entry.hardware_entry_failure_reason)
        name = VMX_ENTRY_FAILURES.get(reason & 0xFFFF, "see the CPU vendor's VM-entry failure codes")
        return FailEntry(reason, f"KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {reason:#x} ({name}) "
                                 f"on host CPU {self._run.fail_entry.cpu} {self._where(False)}")

    def _internal_error(self) -> AxVCpuExitReason:
        lib, internal = self._lib, self._run.internal
        suberror = int(internal.suberror)
        name = self._internal_names.get(suberror, f"suberror {suberror}")
        failure = self._run.emulation_failure
        flag = lib.KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES
        if suberror == lib.KVM_INTERNAL_ERROR_EMULATION and failure.flags & flag and 0 < failure.insn_size <= 15:
            code = bytes(self._ffi.buffer(failure.insn_bytes))[: failure.insn_size]
            return FailEntry(suberror, f"KVM_EXIT_INTERNAL_ERROR {name} {self._where(False)}, "
                                       f"instruction bytes {code.hex(' ')}")
        where = self._where(True)
        words = [int(internal.data[i]) for i in range(min(int(internal.ndata), 16))]
        data = f", data {' '.join(f'{w:#x}' for w in words)}" if words else ""
        return FailEntry(suberror, f"KVM_EXIT_INTERNAL_ERROR {name} {where}{data}")
