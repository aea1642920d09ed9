"""What ``VmManager`` reports and raises: plain dataclasses and a small error hierarchy.

They live apart from the manager so that the modules it is built from (inspection, the console
hub, the managed VM) can use them without importing it; ``axvisor.manager`` re-exports every
name, and is where clients should import them from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from axvm import VMState

__all__ = [
    "CONSOLE_HISTORY_BYTES",
    "CONSOLE_INPUT_MAX",
    "MEMORY_ACCESS_MAX",
    "BadRequest",
    "BootTimes",
    "ConsoleSubscription",
    "DeviceCounters",
    "HostError",
    "ManagerClosed",
    "ManagerError",
    "Translation",
    "VMState",
    "VcpuMetrics",
    "VmInfo",
    "VmMetrics",
    "VmNotFound",
    "VmStateError",
    "parse_size",
]

MEMORY_ACCESS_MAX = 1 << 20
"""The most bytes one read_memory/write_memory moves (1 MiB): a request is answered in one
piece, so this bounds the memory one API call can make the VMM allocate."""

CONSOLE_HISTORY_BYTES = 64 * 1024
"""How much of each VM's recent console output ``console_history`` keeps (a screenful or two of
context for a client that attaches late)."""

CONSOLE_INPUT_MAX = 64 * 1024
"""The most console input bytes waiting for one guest (its UART takes 16 at a time); more is
refused (``console_input`` returns how many it took), so a flood cannot grow the VMM."""


# -- errors ---------------------------------------------------------------------------------


class ManagerError(Exception):
    """Base of every error the manager raises; ``http_status`` is the API's answer to it."""

    http_status = 500


class VmNotFound(ManagerError):
    """No VM with this id (never created, or deleted)."""

    http_status = 404

    def __init__(self, vm_id: int) -> None:
        super().__init__(f"no VM with id {vm_id}")
        self.vm_id = vm_id


class VmStateError(ManagerError):
    """The call is not legal in the VM's current state; ``state`` is that state."""

    http_status = 409

    def __init__(self, vm_id: int, name: str, action: str, state: VMState, allowed: tuple[VMState, ...] = ()) -> None:
        hint = f" (allowed in {', '.join(s.name.title() for s in allowed)})" if allowed else ""
        super().__init__(f"VM {vm_id} {name!r} is {state.name.title()}: cannot {action}{hint}")
        self.vm_id = vm_id
        self.action = action
        self.state = state
        self.allowed = allowed


class BadRequest(ManagerError):
    """An argument is wrong; ``field`` names it (``config``, ``cpus``, ``mem``, ``name``, ``gpa``,
    ``size``, ``data``, ``vcpu``, ``gva``, ``graceful`` ...), ``message`` says what was expected."""

    http_status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class HostError(ManagerError):
    """The host refused what the VM needs (KVM_CREATE_VM, guest memory, a disk lock, a TAP):
    nothing about the request was wrong, the host must change."""

    http_status = 500


class ManagerClosed(ManagerError):
    """``close()`` has been called: the manager takes no more requests."""

    http_status = 503

    def __init__(self) -> None:
        super().__init__("the VM manager is shutting down")


# -- what the manager reports -----------------------------------------------------------------


@dataclass(frozen=True)
class VmInfo:
    """A snapshot of one VM, as ``vm list`` and ``GET /api/vms`` show it."""

    id: int
    name: str
    state: VMState
    arch: str
    """The guest architecture: ``x86_64`` or ``riscv64``."""
    backend: str
    """The execution backend running it: ``kvm`` or ``soft``."""
    cpus: int
    memory_bytes: int
    """Guest RAM, all regions together."""
    config_path: str | None
    """The config file it was created from; None when created from TOML text."""
    uptime_s: float
    """Seconds in Running or Paused since the last start (0 when not started or ended)."""
    resets: int
    """Guest-initiated and ``reset()`` rebuilds since the last start."""
    exit_code: int | None
    """How it last ended: the guest's power-off status, 1 for a failure; None while it has not ended."""
    reason: str | None
    """One line on how it last ended ("powered off with status 0", "vCPU 0: ..."), or None."""
    log_path: str | None
    """Its console log file, or None when the manager keeps no logs."""


@dataclass(frozen=True)
class BootTimes:
    """How long the last boot took to show life, in seconds; None until it happened.

    ``start_*`` count from the ``start()`` or ``reset()`` that began this boot (a reset the guest
    makes itself does not restart the timer); ``process_*`` from
    the start of this VMM process (what ``axvisor run`` users feel: interpreter start-up, config,
    build and load included).
    """

    start_to_first_instruction_s: float | None
    """Until the boot vCPU first entered the guest."""
    start_to_first_console_byte_s: float | None
    """Until the guest wrote its first console byte."""
    process_to_first_instruction_s: float | None
    process_to_first_console_byte_s: float | None


@dataclass(frozen=True)
class VcpuMetrics:
    """One vCPU of the current build (since the last start, or the last reset by the guest or
    ``reset()``): its exits by kind (the exit class names of
    ``axvcpu.exits``: ``MmioRead``, ``IoWrite``, ``Halt``, ``Nothing`` ...), and host CPU time."""

    vcpu: int
    exits: dict[str, int]
    host_cpu_s: float
    """CPU time the host spent on this vCPU's thread (guest and VMM together)."""


@dataclass(frozen=True)
class DeviceCounters:
    """Device counters summed over the devices of the current build (since the last start or reset;
    the console byte counts since the last start or ``reset()``)."""

    uart_tx_bytes: int
    """Bytes the guest wrote to its consoles (UARTs and virtio consoles)."""
    uart_rx_bytes: int
    """Bytes of host input the guest's consoles took."""
    virtio_requests: int
    """Requests virtio devices completed (block requests, network frames, entropy requests ...)."""
    virtio_bytes: int
    """Bytes those requests moved."""
    virtio_errors: int
    """Requests answered with an error (IOERR, malformed chains, host I/O failures)."""
    unmapped_accesses: int
    """Guest accesses that hit no device (reads answered all-ones, writes dropped)."""
    device_errors: int
    """Guest accesses that made a device raise (a device bug; the bus answered as for no device)."""
    per_device: dict[str, dict[str, int]] = field(default_factory=dict)
    """The same, per device name, for the counters each device keeps."""


@dataclass(frozen=True)
class VmMetrics:
    """``metrics(id)``: what ``vm show -s``, ``GET /api/vms/{id}/metrics`` and ``/metrics`` show."""

    id: int
    name: str
    state: VMState
    uptime_s: float
    """Seconds in Running or Paused since the last start; Paused time counts (the guest's clock
    does not move while paused, the host's does)."""
    paused_s: float
    """Of that uptime, seconds spent Paused."""
    boot: BootTimes
    vcpus: tuple[VcpuMetrics, ...]
    devices: DeviceCounters
    host_cpu_s: float
    """All vCPU threads of the current build together (since the last start or reset)."""
    resets: int


@dataclass(frozen=True)
class Translation:
    """``translate``: a guest virtual address walked through the guest's page tables."""

    gva: int
    gpa: int | None
    """The guest physical address, or None when the walk faulted (``fault`` says where)."""
    mode: str
    """The paging mode walked: ``bare`` (no translation), ``sv39``, ``sv48``, ``sv57``, ``x86-4level``."""
    levels: tuple[tuple[int, int], ...]
    """Each step of the walk: (address of the page-table entry read, the entry's value)."""
    page_size: int
    """The size of the page that mapped it (4 KiB, 2 MiB, 1 GiB ...); 0 when it faulted."""
    writable: bool
    user: bool
    executable: bool
    fault: str | None = None
    """Why the walk stopped without an address ("level 1 entry not present" ...), or None."""


class ConsoleSubscription:
    """A live subscription to one VM's console output, from ``console_subscribe``.

    The callback runs on the thread that produced the bytes (a vCPU thread): it must be quick
    and must not block or call the manager (put the bytes on a queue, or schedule them on an
    event loop with ``loop.call_soon_threadsafe``). A callback that raises is dropped (logged
    once). Subscriptions survive resets and restarts of the VM; ``close()`` (or the VM's
    deletion) ends one; ``closed`` tells which.
    """

    def __init__(
        self, vm_id: int, callback: Callable[[bytes], object], on_close: Callable[[ConsoleSubscription], None]
    ) -> None:
        self.vm_id = vm_id
        self.callback = callback
        self.closed = False
        self._on_close = on_close

    def close(self) -> None:
        """Stop delivering; idempotent."""
        if not self.closed:
            self.closed = True
            self._on_close(self)

    def __enter__(self) -> ConsoleSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "GIB": 1 << 30,
}


def parse_size(text: str, field: str = "mem") -> int:
    """A memory size as AxVisor's ``vm create -m`` takes it: ``512M``, ``1G``, ``0x2000_0000``,
    ``268435456`` (binary units; a bare number is bytes). BadRequest(field) when malformed."""
    cleaned = text.strip().replace("_", "").upper()
    if cleaned.startswith("0X"):  # hex is bytes: its digits may end in B
        try:
            return int(cleaned, 16)
        except ValueError:
            raise BadRequest(field, f"{text!r} is not a hexadecimal number of bytes") from None
    digits = cleaned.rstrip("KMGIB")
    unit = cleaned[len(digits) :]
    try:
        number = int(digits, 0) if digits else -1
    except ValueError:
        number = -1
    if number < 0 or unit not in _SIZE_UNITS:
        raise BadRequest(field, f"{text!r} is not a size; expected bytes or a number with K, M or G (e.g. 512M, 1G)")
    return number * _SIZE_UNITS[unit]
