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
    registers, translate, debug_call            Paused
    gdb_serve                                   any (a connection pauses the VM; detach resumes it)
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
import logging
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from axvm import AxVM, AxVMCrateConfig, ConfigError, VmBackend, VmBuildError, config_from_dict
from axvm.snapshot import SnapshotError, write_snapshot

from .backends import select_backend
from .console_hub import ConsoleHub
from .errors import UserError
from .managed import ManagedVm, log_file_name
from .plan import plan_vm
from .snapshots import open_snapshot, project_version, restore_build
from .vmm import build_vm
from .vmtypes import (
    CONSOLE_HISTORY_BYTES,
    CONSOLE_INPUT_MAX,
    MEMORY_ACCESS_MAX,
    BadRequest,
    BootTimes,
    ConsoleSubscription,
    DeviceCounters,
    HostError,
    ManagerClosed,
    ManagerError,
    Translation,
    VcpuMetrics,
    VmInfo,
    VmMetrics,
    VmNotFound,
    VMState,
    VmStateError,
    parse_size,
)

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

log = logging.getLogger(__name__)

T = TypeVar("T")

INPUT_RETRY_SECONDS = 0.005
"""How soon queued console input is offered again to a guest whose console was full."""
NAME_MAX = 64


class VmManager:
    """Many VMs in one VMM process; see the module docstring for states, errors and threads.

    ``log_dir``: where each VM's console log goes (None: no log files). ``console_echo``: an
    extra sink for every VM's console bytes, ``(vm_id, data)``, called on vCPU threads (for a
    process that prints them; it must not block). ``backend_factory``: build every VM on the
    backend it returns instead of the one ``axvisor run`` would choose (tests, embedders).
    ``on_build``: called with every VM built (created, or rebuilt by a reset or a restart)
    before it runs, to install an embedder's hooks (``axvisor.scripting``).
    """

    def __init__(
        self,
        log_dir: str | Path | None = None,
        console_echo: Callable[[int, bytes], object] | None = None,
        *,
        backend_factory: Callable[[AxVMCrateConfig], VmBackend] | None = None,
        on_build: Callable[[AxVM], object] | None = None,
    ) -> None:
        self._log_dir = Path(log_dir) if log_dir is not None else None
        if self._log_dir is not None:
            try:
                self._log_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise BadRequest("log_dir", f"{self._log_dir}: cannot create it: {error.strerror}") from None
        self._echo = console_echo
        self._backend_factory = backend_factory
        self._on_build = on_build
        self._lock = threading.Lock()
        self._vms: dict[int, ManagedVm] = {}
        self._ids: tuple[int, ...] = ()
        self._reserved: set[int] = set()
        self._closed = False
        self._gdb: dict[int, Any] = {}  # vm_id -> its gdb stub's GdbServer
        self._input_wake = threading.Event()
        self._input_stop = threading.Event()
        self._input_thread = threading.Thread(target=self._pump_input, daemon=True, name="vm-console-input")
        self._input_thread.start()

    # -- creating and listing ----------------------------------------------------------------

    def create(
        self,
        config: str | Path,
        *,
        text: bool = False,
        name: str | None = None,
        cpus: int | None = None,
        mem: int | None = None,
        restore: str | Path | None = None,
        force: bool = False,
    ) -> VmInfo:
        """Build a VM from a config and leave it Ready (built, images loaded, not running).

        ``restore``: a snapshot directory (``snapshot``) instead: the VM is built from the
        snapshot's config with its RAM, vCPU and device state, and ``start`` carries the guest
        on from where it was saved (``config`` is ignored). BadRequest("restore") with one line
        when the snapshot does not fit (newer format, another backend, a disk changed since it
        was taken: ``force`` uses the disk as it is now).

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
        self._check_open()
        build: Callable[[AxVMCrateConfig, Callable[[bytes], None]], AxVM] = self._build
        if restore is not None:
            try:
                snapshot = open_snapshot(restore, force=force)
            except SnapshotError as error:
                raise BadRequest("restore", str(error)) from None
            parsed, text, config = snapshot.config, True, f"snapshot {restore}"
            restored = restore_build(snapshot)

            def build(wanted: AxVMCrateConfig, sink: Callable[[bytes], None]) -> AxVM:
                return self._guarded(restored, wanted, sink)

        else:
            parsed = self._config(config, text, name, cpus, mem)
            try:
                plan_vm(parsed)  # what run checks before it starts a vCPU: images, devices, host bounds
            except UserError as error:
                raise BadRequest("config", str(error)) from None
        vm_id = self._reserve_id(parsed.base.id)
        try:
            log_path = log_file_name(vm_id, parsed.base.name, self._log_dir) if self._log_dir is not None else None
            try:
                hub = ConsoleHub(vm_id, log_path, self._echo)
            except OSError as error:
                raise HostError(f"console log {log_path}: cannot open it: {error.strerror}") from None
            path = None if text else str(Path(config).resolve())
            managed = ManagedVm(vm_id, parsed, path, hub, build)
            try:
                managed.load()
            except BaseException:
                hub.close(remove_log=True)
                raise
            with self._lock:
                self._vms[vm_id] = managed
                self._ids = tuple(sorted(self._vms))
        finally:
            with self._lock:
                self._reserved.discard(vm_id)
        log.info("VM %d %r created from %s", vm_id, managed.name, path or "TOML text")
        return managed.info()

    def list(self, all: bool = False) -> list[VmInfo]:
        """Every VM by id; without ``all``, Stopped and Failed VMs are left out (as ``vm list``
        without ``-a``)."""
        self._check_open()
        with self._lock:
            vms = [self._vms[vm_id] for vm_id in sorted(self._vms)]
        infos = [vm.info() for vm in vms]
        return infos if all else [info for info in infos if info.state not in (VMState.STOPPED, VMState.FAILED)]

    def get(self, vm_id: int) -> VmInfo:
        """One VM's snapshot; VmNotFound when there is none."""
        return self._vm(vm_id).info()

    def ids(self) -> builtins.list[int]:  # builtins: the name list is the method above in here
        """The ids of every VM (for completion in the shell), cheap and lock-free enough to call
        on each keystroke."""
        return list(self._ids)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, vm_id: int, paused: bool = False) -> VmInfo:
        """Boot a Ready VM, or a Stopped/Failed one afresh from its config (disk kept):
        -> Running. Returns once its vCPU threads run (not when the guest has booted).
        ``paused``: its vCPUs park before their first instruction and it ends Paused (a
        debugger attaches before the guest runs)."""
        vm = self._vm(vm_id)
        if not paused:
            vm.start()
            return vm.info()
        vm.gate.hold()  # the vCPU threads park at their first turn of the loop
        try:
            vm.start()
            vm.pause(10.0)
        except BaseException:
            vm.gate.release()
            raise
        return vm.info()

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
        vm = self._vm(vm_id)
        if graceful and not force:
            raise BadRequest(
                "graceful",
                "no machine here can ask its guest to power off (no ACPI power button, "
                "no SBI shutdown request from the host); stop it without -g",
            )
        vm.stop(force)
        return vm.info()

    def pause(self, vm_id: int, timeout: float = 10.0) -> VmInfo:
        """AxVisor's ``vm suspend``: Running -> Pausing -> Paused, returning once every vCPU has
        left the guest and parked and the guest clock is stopped. If a vCPU does not park within
        ``timeout`` seconds the pause is given up (back to Running) and HostError is raised. A VM
        that ends while pausing ends as it would anyway (Stopped or Failed)."""
        vm = self._vm(vm_id)
        vm.pause(timeout)
        return vm.info()

    def resume(self, vm_id: int) -> VmInfo:
        """Paused -> Running: the guest clock goes on from where it stopped, vCPUs re-enter
        the guest, latched interrupts are delivered."""
        vm = self._vm(vm_id)
        vm.resume()
        return vm.info()

    def reset(self, vm_id: int, timeout: float = 30.0) -> VmInfo:
        """Restart a Running or Paused VM from its config, as a power cycle: the old VM is stopped
        in order (disks flushed), a new one built and booted (disk contents kept, RAM fresh),
        state Running. Returns once the new VM runs. A rebuild that fails leaves it Failed."""
        vm = self._vm(vm_id)
        vm.reset(timeout)
        return vm.info()

    def delete(self, vm_id: int, force: bool = False, keep_data: bool = False) -> None:
        """Forget a Ready, Stopped or Failed VM and free everything it holds (a Ready VM's
        memory and backend; console subscriptions are closed). ``force`` stops a VM in any other
        state first. ``keep_data=False`` also removes the console log this manager wrote for it
        (``--keep-data`` keeps it); disk images are the user's and are never touched."""
        vm = self._vm(vm_id)
        with self._lock:
            server = self._gdb.pop(vm_id, None)
        if server is not None:
            server.close()
        vm.delete(force)
        with self._lock:
            self._vms.pop(vm_id, None)
            self._ids = tuple(sorted(self._vms))
        vm.hub.close(remove_log=not keep_data)
        log.info("VM %d %r deleted", vm_id, vm.name)

    def close(self) -> None:
        """Stop every VM in order of id (each through its one shutdown path), wait for each, then
        stop the manager's threads and close the console logs. Idempotent; afterwards every call
        but ``close`` raises ManagerClosed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            vms = [self._vms[vm_id] for vm_id in sorted(self._vms)]
            servers, self._gdb = list(self._gdb.values()), {}
        for server in servers:  # before the VMs stop: a connection may be pausing one
            server.close()
        for vm in vms:
            try:
                vm.close()
            except Exception:  # one VM failing to stop never keeps the others running
                log.exception("VM %d %r: stopping it failed", vm.id, vm.name)
            vm.hub.close()
        self._input_stop.set()
        self._input_wake.set()
        self._input_thread.join()

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
        return self._vm(vm_id).hub.subscribe(callback)

    def console_history(self, vm_id: int) -> bytes:
        """The last ``CONSOLE_HISTORY_BYTES`` the VM wrote to its console (all runs since create)."""
        return self._vm(vm_id).hub.history()

    def console_input(self, vm_id: int, data: bytes) -> int:
        """Queue host keystrokes for the VM's console (its first UART, else its first virtio
        console); they are pushed as the guest takes them, also across a reset. Returns how many
        bytes were queued: fewer than ``len(data)`` when ``CONSOLE_INPUT_MAX`` would be passed.
        Input for a VM that is not Running or Paused, or has no console, is dropped (returns 0)."""
        vm = self._vm(vm_id)
        if not data or not vm.accepts_input():
            return 0
        queued = vm.hub.queue_input(data)
        self._input_wake.set()
        return queued

    # -- metrics and inspection -------------------------------------------------------------------

    def metrics(self, vm_id: int) -> VmMetrics:
        """Counters and timers of the VM's current (or last) run; cheap, any state, any thread."""
        return self._vm(vm_id).metrics()

    def read_memory(self, vm_id: int, gpa: int, size: int) -> bytes:
        """``size`` bytes of guest RAM at guest physical address ``gpa`` (a running VM's RAM may
        change while it is read). BadRequest("size") when size is not 1..MEMORY_ACCESS_MAX,
        BadRequest("gpa") when the range is not all guest RAM (device windows are not read: a
        read could have side effects); VmStateError when the VM has no RAM (Stopped, Failed)."""
        return self._vm(vm_id).read_memory(gpa, size)

    def write_memory(self, vm_id: int, gpa: int, data: bytes) -> None:
        """Write ``data`` into guest RAM at ``gpa``; same bounds and errors as ``read_memory``
        (field ``data`` for its size). Writing into code a running guest executes is the
        caller's risk; pause first for a consistent change."""
        self._vm(vm_id).write_memory(gpa, bytes(data))

    def snapshot(self, vm_id: int, directory: str | Path, stop: bool = False, timeout: float = 10.0) -> VmInfo:
        """Save the VM into ``directory`` (new, or empty): a Running VM is paused for it (as
        ``pause``, with ``timeout``), its RAM (sparse), every vCPU's and device's state and its
        config written, then it is resumed, or stopped with ``stop``. A Ready VM is saved as
        built. VmStateError in other states; BadRequest("dir") when the directory is not new or
        the backend cannot save a vCPU; HostError when writing fails."""
        vm = self._vm(vm_id)
        path = Path(directory)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):  # refused before pausing the VM
            raise BadRequest("dir", f"{path}: exists and is not an empty directory; give a new directory")

        def write(built: AxVM, states: builtins.list[dict[str, Any]]) -> None:
            try:
                write_snapshot(built, path, project_version=project_version(), vcpu_states=states)
            except SnapshotError as error:
                raise BadRequest("dir", str(error)) from None

        try:
            vm.snapshot(timeout, stop, write)
        except SnapshotError as error:  # a vCPU its backend cannot save (the VM was resumed)
            raise BadRequest("id", str(error)) from None
        return vm.info()

    def registers(self, vm_id: int, vcpu: int) -> dict[str, int]:
        """The registers of vCPU ``vcpu`` of a Paused VM, by the architecture's names: x86_64
        general registers (rax ... r15, rip, rflags) and system registers (cr0, cr2, cr3, cr4,
        efer, ...); riscv64 pc, x1..x31 by ABI name (ra, sp, ... t6), the privilege level
        (``priv``) and the S- and M-mode CSRs that explain a trap (satp, sstatus, sepc, scause,
        stval, stvec, mstatus, mepc, mcause, mtval, mtvec, mie, mip). VmStateError unless
        Paused; BadRequest("vcpu") for a vCPU the VM does not have."""
        return self._vm(vm_id).registers(vcpu)

    def translate(self, vm_id: int, vcpu: int, gva: int) -> Translation:
        """Walk guest virtual address ``gva`` through vCPU ``vcpu``'s page tables as the guest's
        MMU would: riscv64 Sv39/Sv48/Sv57 from satp, x86_64 4-level from CR3 (with CR0.PG,
        CR4.PAE and EFER.LMA checked). A walk that meets a missing or malformed entry is a
        Translation with ``fault`` set, not an error. VmStateError unless Paused; BadRequest("vcpu") or
        BadRequest("gva") for out-of-range arguments; BadRequest("vcpu") when the paging mode is
        one this walker does not know (named in the message)."""
        return self._vm(vm_id).translate(vcpu, gva)

    def debug_call(self, vm_id: int, vcpu: int, function: Callable[[AxVM, int], T]) -> T:
        """Run ``function(vm, vcpu)`` on the parked thread of vCPU ``vcpu`` of a Paused VM (the
        gdb stub's register, memory and breakpoint work). VmStateError unless Paused."""
        return self._vm(vm_id).on_vcpu("read registers", vcpu, function)

    def gdb_serve(self, vm_id: int, address: str) -> str:
        """Serve the gdb remote protocol for a VM on ``address`` (``tcp:PORT``, ``tcp:HOST:PORT``,
        ``unix:PATH``) until the VM is deleted or the manager closes; returns the address bound
        (a port 0 is chosen by the host). BadRequest("address") for a bad or busy address."""
        from .gdb.server import GdbAddressError, GdbServer, parse_address

        self._vm(vm_id)
        try:
            parsed = parse_address(address)
        except GdbAddressError as error:
            raise BadRequest("address", str(error)) from None
        with self._lock:
            old = self._gdb.pop(vm_id, None)
        if old is not None:
            old.close()
        try:
            server = GdbServer(self, vm_id, parsed)
        except OSError as error:
            raise BadRequest("address", f"{address}: cannot listen there: {error.strerror}") from None
        with self._lock:
            self._gdb[vm_id] = server
        log.info("VM %d: gdb stub on %s", vm_id, server.address)
        return str(server.address)

    # -- internals -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ManagerClosed()

    def _vm(self, vm_id: int) -> ManagedVm:
        self._check_open()
        vm = self._vms.get(vm_id)
        if vm is None:
            raise VmNotFound(vm_id)
        return vm

    def _reserve_id(self, wanted: int) -> int:
        """The config's id when free, else the lowest free id above it (held until created)."""
        with self._lock:
            vm_id = wanted
            while vm_id in self._vms or vm_id in self._reserved:
                vm_id += 1
            self._reserved.add(vm_id)
            return vm_id

    def _config(
        self, config: str | Path, text: bool, name: str | None, cpus: int | None, mem: int | None
    ) -> AxVMCrateConfig:
        """The config with the overrides applied, validated as a file is (BadRequest otherwise)."""
        if name is not None and not (name.strip() and len(name) <= NAME_MAX and name.isprintable()):
            raise BadRequest("name", f"{name!r}: expected 1..{NAME_MAX} printable characters")
        if cpus is not None and not (isinstance(cpus, int) and cpus >= 1):
            raise BadRequest("cpus", f"{cpus!r}: expected a number of vCPUs, 1 or more")
        if mem is not None and not (isinstance(mem, int) and mem > 0 and mem % 4096 == 0):
            raise BadRequest("mem", f"{mem!r}: expected a positive size in bytes, a multiple of 4 KiB")
        file = None if text else Path(config)
        try:
            source = str(config) if text else file.read_text(encoding="utf-8")  # type: ignore[union-attr]
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise BadRequest("config", f"{config}: cannot read it: {reason}; expected a VM config (.toml)") from None
        try:
            document = tomllib.loads(source)
        except tomllib.TOMLDecodeError as error:
            raise BadRequest("config", f"{file or '<config>'}: invalid TOML: {error}") from None
        _override(document, name, cpus, mem)
        try:
            return config_from_dict(document, file)
        except ConfigError as error:
            raise BadRequest("config", str(error).replace("\n", "; ")) from None

    def _guarded(
        self, build: Callable[[AxVMCrateConfig, Callable[[bytes], None]], AxVM], config: AxVMCrateConfig,
        sink: Callable[[bytes], None],
    ) -> AxVM:
        """``build`` with the errors ``_build`` answers turned into the manager's own."""
        try:
            return build(config, sink)
        except (SnapshotError, ConfigError) as error:
            raise BadRequest("restore", str(error).replace("\n", "; ")) from None
        except UserError as error:
            raise BadRequest("config", str(error)) from None
        except (VmBuildError, OSError, RuntimeError) as error:
            raise HostError(str(error)) from None

    def _build(self, config: AxVMCrateConfig, sink: Callable[[bytes], None]) -> AxVM:
        """Build and load one VM as ``axvisor run`` does (also a rebuild after a reset)."""
        try:
            factory = self._backend_factory or select_backend(config).factory
        except UserError as error:
            raise BadRequest("config", str(error)) from None
        try:
            backend = factory(config)
        except (OSError, RuntimeError) as error:  # e.g. KVM_CREATE_VM refused by the host
            raise HostError(f"VM {config.base.name!r}: starting its backend: {error}") from None
        try:
            vm = build_vm(config, backend, sink)
            if self._on_build is not None:
                try:
                    self._on_build(vm)
                except BaseException:
                    vm.stop()
                    raise
            return vm
        except ConfigError as error:
            raise BadRequest("config", str(error).replace("\n", "; ")) from None
        except (VmBuildError, OSError) as error:
            raise HostError(str(error)) from None
        except UserError as error:
            raise BadRequest("config", str(error)) from None

    def _pump_input(self) -> None:
        """The input thread: offer each VM's queued console input until the guest takes it."""
        while not self._input_stop.is_set():
            with self._lock:
                vms = list(self._vms.values())
            waiting = False
            for vm in vms:
                if not vm.hub.has_input:
                    continue
                if not vm.accepts_input():
                    vm.hub.drop_input()
                    continue
                try:
                    vm.hub.push_input(vm.console_target())
                except Exception:  # a VM torn down meanwhile: its input is dropped, others go on
                    log.exception("VM %d: console input failed; dropped", vm.id)
                    vm.hub.drop_input()
                waiting = waiting or vm.hub.has_input
            self._input_wake.wait(INPUT_RETRY_SECONDS if waiting else None)
            self._input_wake.clear()


def _override(document: dict[str, Any], name: str | None, cpus: int | None, mem: int | None) -> None:
    """Apply ``vm create -n -c -m`` to a parsed TOML document (the loader then checks it all)."""
    base, kernel = document.get("base"), document.get("kernel")
    if name is not None and isinstance(base, dict):
        base["name"] = name
    if cpus is not None and isinstance(base, dict):
        base["cpu_num"] = cpus
    if mem is not None and isinstance(kernel, dict):
        regions = kernel.get("memory_regions")
        if not isinstance(regions, list) or len(regions) != 1:
            count = len(regions) if isinstance(regions, list) else 0
            raise BadRequest("mem", f"the config has {count} memory regions; -m resizes a config with exactly one")
        region = regions[0]
        if isinstance(region, list) and len(region) >= 2:
            region[1] = mem
        elif isinstance(region, dict):
            region["size"] = mem
