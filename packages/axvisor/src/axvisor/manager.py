"""``VmManager``: one VMM process holding many VMs, which it outlives.

Everything that operates VMs while they run is built on this class: the ``vm`` shell, the HTTP
API on a Unix socket, ``axvisor ctl`` and ``axvisor serve``. It is thread-safe: any number of
threads (request handlers, the shell, WebSocket pumps) may call it at once. Calls about one VM
are serialised by that VM's own lock, so a slow pause of one VM never holds up another; a VM
that fails (its backend raises, its guest crashes, its rebuild after a reset fails) ends in
state ``Failed`` and never stops the other VMs or the manager.

Lifecycle (``VMState``, AxVisor's names; the one table is ``axvm.lifecycle.VM_TRANSITIONS``)::

    create --> Ready --start--> Running --pause--> Pausing --> Paused --resume--> Running
                 |                 |  \\--reset (rebuilt from the config, disk kept)--> Running
                 |                 |                                        (also from Paused)
                 +-----stop--------+------stop (also from Pausing, Paused)--> Stopping --> Stopped
                                   +--the guest powers off----------------------------> Stopped
                                   +--a vCPU or the backend fails---------------------> Failed
    Stopped, Failed --start--> Running again (built afresh from the config: a power cycle)
    delete: from Ready, Stopped, Failed (with force=True from any state: stopped first)

Which calls are legal in which state (a call in any other state raises ``VmStateError``, which
names the current state; the API answers it with 409)::

    start       Ready, Stopped, Failed
    stop        Ready, Running, Paused          (force=True: also Pausing, Stopping)
    pause       Running
    resume      Paused
    reset       Running, Paused
    delete      Ready, Stopped, Failed          (force=True: any; a running VM is stopped first)
    registers, translate                        Paused
    read_memory, write_memory                   Ready, Running, Pausing, Paused (guest RAM exists)
    console_*, metrics, get, list               any

Errors: every error this module raises is a ``ManagerError`` whose ``http_status`` is what the
API answers: ``VmNotFound`` 404, ``VmStateError`` 409, ``BadRequest`` 400 (naming the field),
``HostError`` 500 (the host refused something: KVM, memory, a disk lock), ``ManagerClosed`` 503.
``str(error)`` is always one line meant for a person.

Console: each VM's output goes to its log file (``<log_dir>/<name>-<id>.log``), to a ring of the
last ``CONSOLE_HISTORY_BYTES`` (``console_history``) and to every subscriber
(``console_subscribe``); input goes in with ``console_input``. The Ctrl-A escape keys are the
front end's business (``axvisor.console.ConsoleInput`` reads them), not the manager's.

Pause: every vCPU is kicked out of the guest and parks at a barrier in the VMM's vCPU loop;
devices keep their state and the guest clock stops (the soft backend's ``time``/CLINT, KVM's
clock through KVM_GET/SET_CLOCK), so a resumed guest sees no jump. Host I/O is not blocked while
paused: the device lock is free, so a network packet or console input that arrives is completed
into guest RAM and its device's queues as usual, and its interrupt is latched by the interrupt
controller (KVM's irqchip, the soft PLIC) and delivered when the vCPUs run again. What a paused
guest cannot take (a full RX ring, a full UART FIFO) waits or is dropped exactly as when a
running guest is slow: the bounds are the devices' own.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
    "VmManager",
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

    ``start_*`` count from the ``start()`` (or reset) that began this boot; ``process_*`` from
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
    """One vCPU: its exits since the last start, by kind (the exit class names of
    ``axvcpu.exits``: ``MmioRead``, ``IoWrite``, ``Halt``, ``Nothing`` ...), and host CPU time."""

    vcpu: int
    exits: dict[str, int]
    host_cpu_s: float
    """CPU time the host spent on this vCPU's thread (guest and VMM together)."""


@dataclass(frozen=True)
class DeviceCounters:
    """Device counters summed over the VM's devices since the last start."""

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
    """All vCPU threads together since the last start (those of runs before a reset included)."""
    resets: int


@dataclass(frozen=True)
class Translation:
    """``translate``: a guest virtual address walked through the guest's page tables."""

    gva: int
    gpa: int | None
    """The guest physical address, or None when the walk faulted (``fault`` says where)."""
    mode: str
    """The paging mode walked: ``bare`` (no translation), ``sv39``, ``sv48``, ``x86-4level``."""
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
    raise NotImplementedError


# -- the manager -------------------------------------------------------------------------------


class VmManager:
    """Many VMs in one VMM process; see the module docstring for states, errors and threads.

    ``log_dir``: where each VM's console log goes (None: no log files). ``console_echo``: an
    extra sink for every VM's console bytes, ``(vm_id, data)``, called on vCPU threads (for a
    process that prints them; it must not block).
    """

    def __init__(
        self, log_dir: str | Path | None = None, console_echo: Callable[[int, bytes], object] | None = None
    ) -> None:
        raise NotImplementedError

    # -- creating and listing ----------------------------------------------------------------

    def create(
        self,
        config: str | Path,
        *,
        text: bool = False,
        name: str | None = None,
        cpus: int | None = None,
        mem: int | None = None,
    ) -> VmInfo:
        """Build a VM from a config and leave it Ready (built, images loaded, not running).

        ``config`` is a path to a TOML file, or with ``text=True`` the TOML itself (relative
        image paths then resolve against the current directory). ``name``, ``cpus`` and ``mem``
        (bytes; see ``parse_size``) override the config as AxVisor's ``vm create -n -c -m`` do;
        ``mem`` resizes the config's single RAM region (BadRequest("mem") when it has several).

        The id is the config's ``base.id`` when no VM here has it, else the lowest free id above
        it. Everything ``axvisor run`` checks before it starts is checked here: a bad config, a
        bad override or an image that does not fit is BadRequest naming the field (``config``
        with the file and key in the message for config mistakes); the host refusing the VM
        (KVM, memory, a disk another VM holds) is HostError. Nothing is left behind on failure.
        """
        raise NotImplementedError

    def list(self, all: bool = False) -> list[VmInfo]:
        """Every VM by id; without ``all``, Stopped and Failed VMs are left out (as ``vm list``
        without ``-a``)."""
        raise NotImplementedError

    def get(self, vm_id: int) -> VmInfo:
        """One VM's snapshot; VmNotFound when there is none."""
        raise NotImplementedError

    def ids(self) -> builtins.list[int]:  # builtins: the name list is the method above in here
        """The ids of every VM (for completion in the shell), cheap and lock-free enough to call
        on each keystroke."""
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, vm_id: int) -> VmInfo:
        """Boot a Ready VM, or a Stopped/Failed one afresh from its config (disk kept):
        -> Running. Returns once its vCPU threads run (not when the guest has booted)."""
        raise NotImplementedError

    def stop(self, vm_id: int, force: bool = False, graceful: bool = False, timeout: float = 30.0) -> VmInfo:
        """Stop a VM in order and wait until it is Stopped: every vCPU kicked out and joined,
        writable disks flushed, engines, host resources and guest memory released (the VMM's one
        shutdown path per VM). A Ready VM is released without running.

        ``graceful`` (AxVisor's ``-g``) first asks the guest to power off itself where its
        machine has a way (the x86 ACPI power button, with an ``acpi_pm`` device) and waits up
        to ``timeout`` seconds for it; BadRequest("graceful") when the machine has none; if the
        guest has not powered off in time the VM is stopped in order anyway. ``force``
        (``-f``) also stops a VM caught Pausing or Stopping, and ignores ``graceful``.
        """
        raise NotImplementedError

    def pause(self, vm_id: int, timeout: float = 10.0) -> VmInfo:
        """AxVisor's ``vm suspend``: Running -> Pausing -> Paused, returning once every vCPU has
        left the guest and parked and the guest clock is stopped. If a vCPU does not park within
        ``timeout`` seconds the pause is given up (back to Running) and HostError is raised. A VM
        that ends while pausing ends as it would anyway (Stopped or Failed)."""
        raise NotImplementedError

    def resume(self, vm_id: int) -> VmInfo:
        """Paused -> Running: the guest clock goes on from where it stopped, vCPUs re-enter
        the guest, latched interrupts are delivered."""
        raise NotImplementedError

    def reset(self, vm_id: int, timeout: float = 30.0) -> VmInfo:
        """Restart a Running or Paused VM from its config, as a power cycle: the old VM is stopped
        in order (disks flushed), a new one built and booted (disk contents kept, RAM fresh),
        state Running. Returns once the new VM runs. A rebuild that fails leaves it Failed."""
        raise NotImplementedError

    def delete(self, vm_id: int, force: bool = False, keep_data: bool = False) -> None:
        """Forget a Ready, Stopped or Failed VM and free everything it holds (a Ready VM's
        memory and backend; console subscriptions are closed). ``force`` stops a VM in any other
        state first. ``keep_data=False`` also removes the console log this manager wrote for it
        (``--keep-data`` keeps it); disk images are the user's and are never touched."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop every VM in order of id (each through its one shutdown path), wait for each, then
        stop the manager's threads and close the console logs. Idempotent; afterwards every call
        but ``close`` raises ManagerClosed."""
        raise NotImplementedError

    def __enter__(self) -> VmManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- console ------------------------------------------------------------------------------

    def console_subscribe(self, vm_id: int, callback: Callable[[bytes], object]) -> ConsoleSubscription:
        """Call ``callback(data)`` with every console byte the VM writes from now on (see
        ``ConsoleSubscription`` for the threading rules). Pair it with ``console_history`` for
        what came before: take the history after subscribing and a byte may show twice, before
        and it may be missed; the shell takes history first."""
        raise NotImplementedError

    def console_history(self, vm_id: int) -> bytes:
        """The last ``CONSOLE_HISTORY_BYTES`` the VM wrote to its console (all runs since create)."""
        raise NotImplementedError

    def console_input(self, vm_id: int, data: bytes) -> int:
        """Queue host keystrokes for the VM's console (its first UART, else its first virtio
        console); they are pushed as the guest takes them, also across a reset. Returns how many
        bytes were queued: fewer than ``len(data)`` when ``CONSOLE_INPUT_MAX`` would be passed.
        Input for a VM that is not Running or Paused, or has no console, is dropped (returns 0)."""
        raise NotImplementedError

    # -- metrics and inspection -------------------------------------------------------------------

    def metrics(self, vm_id: int) -> VmMetrics:
        """Counters and timers of the VM's current (or last) run; cheap, any state, any thread."""
        raise NotImplementedError

    def read_memory(self, vm_id: int, gpa: int, size: int) -> bytes:
        """``size`` bytes of guest RAM at guest physical address ``gpa`` (a running VM's RAM may
        change while it is read). BadRequest("size") when size is not 1..MEMORY_ACCESS_MAX,
        BadRequest("gpa") when the range is not all guest RAM (device windows are not read: a
        read could have side effects); VmStateError when the VM has no RAM (Stopped, Failed)."""
        raise NotImplementedError

    def write_memory(self, vm_id: int, gpa: int, data: bytes) -> None:
        """Write ``data`` into guest RAM at ``gpa``; same bounds and errors as ``read_memory``
        (field ``data`` for its size). Writing into code a running guest executes is the
        caller's risk; pause first for a consistent change."""
        raise NotImplementedError

    def registers(self, vm_id: int, vcpu: int) -> dict[str, int]:
        """The registers of vCPU ``vcpu`` of a Paused VM, by the architecture's names: x86_64
        general registers (rax ... r15, rip, rflags) and system registers (cr0, cr2, cr3, cr4,
        efer, ...); riscv64 pc, x1..x31 by ABI name (ra, sp, ... t6), the privilege level
        (``priv``) and the S- and M-mode CSRs that explain a trap (satp, sstatus, sepc, scause,
        stval, stvec, mstatus, mepc, mcause, mtval, mtvec, mie, mip). VmStateError unless
        Paused; BadRequest("vcpu") for a vCPU the VM does not have."""
        raise NotImplementedError

    def translate(self, vm_id: int, vcpu: int, gva: int) -> Translation:
        """Walk guest virtual address ``gva`` through vCPU ``vcpu``'s page tables as the guest's
        MMU would: riscv64 Sv39/Sv48 from satp, x86_64 4-level from CR3 (with CR0.PG, CR4.PAE and
        EFER.LMA checked). A walk that meets a missing or malformed entry is a Translation with
        ``fault`` set, not an error. VmStateError unless Paused; BadRequest("vcpu") or
        BadRequest("gva") for out-of-range arguments; BadRequest("vcpu") when the paging mode is
        one this walker does not know (named in the message)."""
        raise NotImplementedError
