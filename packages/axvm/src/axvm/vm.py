"""``AxVM``: one virtual machine composed from a config and an execution backend.

Building reads as a recipe: map the memory regions, create the vCPUs, attach each device.
A failure names its step (and, for config mistakes, the file and key). ``run_vcpu`` is the
per-vCPU loop: device accesses and lazy memory are handled inline by the device manager
(``DeviceManager.handle_exit``); everything else comes back to the caller (the VMM), which owns
threads and policy. The machine sees only a ``BootTarget``, never this object.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from axaddrspace import AddrRange, AddrSpace, GuestPhysAddr, MappingFlags
from axdevice import BaseDeviceOps, EmuDeviceType, IrqLine, Uart16550
from axvcpu import AxVCpuExitReason, Hypercall, IoWrite, Nothing, SystemDown, VCpu, VCpuState

from .backend import GuestClock, VmBackend
from .capabilities import BackendCapabilities
from .config import GUEST_PHYS_LIMIT, AxVMCrateConfig, ConfigError, ConfigProblem, EmulatedDeviceConfig
from .device_manager import BusKind, DeviceManager, DeviceOwner, PlacementError
from .devices import DeviceConfigError, DeviceContext, UnsupportedDevice, build_device
from .dispatch import DeviceBuses
from .host import HostResources, LocalHost
from .hypercalls import HypercallTable
from .ivc import IvcEndpoint
from .lifecycle import VMState, check_vm_transition
from .machine import BootPlan, BootTarget, HypercallDoorbell, VcpuRunHooks
from .machines.registry import machine_for

if TYPE_CHECKING:  # the consoles' types: their modules load with the devices (axdevice's lazy names)
    from axdevice import Pl011, VirtioConsole

log = logging.getLogger(__name__)

ExitObserver = Callable[[int, AxVCpuExitReason], object]
"""``observer(vcpu_id, exit)``: told of a vCPU exit on that vCPU's thread; it must not block."""

class VmBuildError(RuntimeError):
    """A step of building the VM failed for a reason other than the config."""


class AxVM:
    """A VM: memory, vCPUs and devices, with the lifecycle Loading -> Loaded -> Running ... Stopped."""

    def __init__(self, config: AxVMCrateConfig, backend: VmBackend,
                 console_output: Callable[[bytes], object] | None = None,
                 host: HostResources | None = None, *, allocate_ram: bool = True) -> None:
        """``allocate_ram=False`` builds and places every device but maps no guest RAM: how
        ``axvisor check`` composes a VM on any host (the config loader has already checked the
        regions themselves: aligned, disjoint, inside the window)."""
        self.config = config
        self.id = config.base.id
        self.name = config.base.name
        self.backend = backend
        self.devices = DeviceManager(AddrRange.from_start_size(region.gpa, region.size)
                                     for region in config.kernel.memory_regions)
        """The buses, the device lock, placement and interrupts: every device access goes through it."""
        self.consoles: list[Uart16550 | Pl011] = []
        self.virtio_consoles: list[VirtioConsole] = []
        self.host = host or LocalHost()
        self._on_stop: list[Callable[[], object]] = []
        self.warnings: list[str] = list(config.warnings)
        self._console_output = console_output or (lambda data: None)
        self._state = VMState.LOADING
        self._state_lock = threading.Lock()
        self._exit_request: SystemDown | None = None
        self._hold = False
        """run_vcpu returns Nothing at its next turn: the VMM parks the vCPU threads (a pause)."""
        self._clock_paused = False
        self.exit_counts: list[dict[type, int]] = []
        self.hypercalls = HypercallTable(config.base.id, config.base.arch.value)
        """AxVisor's hypercalls this VM serves (``hypercalls``); anyone may register more."""
        self.ivc: IvcEndpoint | None = None
        """Inter-VM channels, when the config gives an IVC window (an IVCChannel entry)."""
        self.exit_observers: list[ExitObserver] = []
        """Called with (vcpu_id, exit) for every exit the backend reports, before it is handled;
        an empty list costs one truth test per exit."""
        """Per vCPU, exits its backend reported, by exit type (handled here or not)."""
        self.addrspace = AddrSpace(0, GUEST_PHYS_LIMIT, backend.stage2)
        self._allocate_ram = allocate_ram
        self.machine = machine_for(config.base.arch)
        self._run_hooks = self.machine if isinstance(self.machine, VcpuRunHooks) else None
        self._doorbell = self.machine if isinstance(self.machine, HypercallDoorbell) else None
        self.boot_plan: BootPlan | None = None
        """How to enter the loaded images; set by the loader, used by boot()."""
        self.vcpus: list[VCpu] = []
        self._target = BootTarget(config, self.addrspace.memory, self.vcpus, self.devices,
                                  BackendCapabilities.of(backend))
        try:
            with self._step("map memory regions"):
                self._map_memory()
            with self._step("create vCPUs"):
                self._create_vcpus()
            with self._step("attach devices"):
                self._attach_devices()
        except BaseException:
            self._transition(VMState.STOPPED)
            self._release()
            raise

    # -- building ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _step(self, step: str) -> Iterator[None]:
        try:
            yield
        except ConfigError:
            raise
        except Exception as error:
            raise VmBuildError(f"VM {self.name!r}: {step}: {error}") from error

    def _map_memory(self) -> None:
        if not self._allocate_ram:
            return
        for region in self.config.kernel.memory_regions:
            self.addrspace.map_alloc(GuestPhysAddr(region.gpa), region.size, MappingFlags.parse(region.flags))

    def _create_vcpus(self) -> None:
        sets = self.config.base.phys_cpu_sets
        for vcpu_id in range(self.config.base.cpu_num):
            mask = sets[vcpu_id] if sets is not None else None
            host_cpus = [bit for bit in range(mask.bit_length()) if mask >> bit & 1] if mask else None
            self.vcpus.append(VCpu(vcpu_id, self.backend.create_vcpu(vcpu_id), host_cpus))
            self.exit_counts.append({})

    def _attach_devices(self) -> None:
        ctx = DeviceContext(self.config.base.arch, self._irq_line, self,
                            self._console_output, self.addrspace.memory, self.host, self.config,
                            self.devices.lock, self._on_stop)
        self._attach_config_devices(ctx)
        problems = []
        for built in self.machine.platform_devices(self._target, ctx):
            if self.devices.is_taken(built.device, built.bus):
                continue  # the config placed its own device there
            device = built.device
            owner = DeviceOwner(f"the {self.machine.arch.value} machine's {type(device).__name__} "
                                f"at {device.address_range!r}")
            try:
                self.devices.attach(device, built.bus, owner, built.irqs, shared_irqs=built.shared_irqs,
                                    over_ram=True)
            except PlacementError as error:
                problems.append(self._placement_problem(error))
                continue
            if built.uart is not None:
                self.consoles.append(built.uart)
        if problems:
            raise ConfigError(problems)

    def _ivc_window(self, entry: EmulatedDeviceConfig, key: str, problems: list[ConfigProblem]) -> None:
        """An IVCChannel entry is the guest range inter-VM channels map into (``ivc``), not a device."""
        window = AddrRange.from_start_size(entry.base_gpa, entry.length) if entry.length > 0 else None
        if window is None or entry.base_gpa % 0x1000 or entry.length % 0x1000:
            problems.append(ConfigProblem(self.config.source, key, f"{entry.name!r}: the IVC window "
                                          f"{entry.base_gpa:#x}+{entry.length:#x} must be page-aligned and non-empty"))
            return
        for region in self.config.kernel.memory_regions:
            if window.overlaps(AddrRange.from_start_size(region.gpa, region.size)):
                problems.append(ConfigProblem(self.config.source, key, f"{entry.name!r}: the IVC window {window} "
                                              "overlaps guest RAM; expected a free guest physical range"))
                return
        irq = None
        if entry.irq_id:
            try:
                irq = self._irq_line(entry.irq_id)
            except DeviceConfigError as error:
                problems.append(ConfigProblem(self.config.source, f"{key}.irq_id", f"{entry.name!r}: {error}"))
                return
        self.ivc = IvcEndpoint(self.id, self.addrspace, (entry.base_gpa, entry.length), irq=irq)
        self.ivc.install(self.hypercalls)
        self._on_stop.append(self.ivc.close)

    def _placement_problem(self, error: PlacementError) -> ConfigProblem:
        """The config entry to blame; a clash between the machine's own devices is a bug (raised)."""
        index = error.blame.entry
        if index is None:
            raise error
        key = f"devices.emu_devices[{index}]" + (f".{error.field}" if error.field else "")
        return ConfigProblem(self.config.source, key, f"{self.config.devices.emu_devices[index].name!r}: {error}")

    def _attach_config_devices(self, ctx: DeviceContext) -> None:
        problems: list[ConfigProblem] = []
        for index, entry in enumerate(self.config.devices.emu_devices):
            key = f"devices.emu_devices[{index}]"
            if entry.emu_type == EmuDeviceType.IVCChannel:
                self._ivc_window(entry, key, problems)
                continue
            try:
                built = build_device(entry, ctx)
                self.devices.attach(built.device, built.bus, DeviceOwner(f"{key} {entry.name!r}", index),
                                    built.irqs, shared_irqs=built.shared_irqs)
            except UnsupportedDevice as warning:
                self.warnings.append(str(ConfigProblem(self.config.source, key, f"{entry.name!r}: {warning}")))
                continue
            except PlacementError as error:
                problems.append(self._placement_problem(error))
                continue
            except DeviceConfigError as error:
                field = getattr(error, "field", None)
                where = f"{key}.{field}" if field else key
                problems.append(ConfigProblem(self.config.source, where, f"{entry.name!r}: {error}"))
                continue
            if built.uart is not None:
                self.consoles.append(built.uart)
            if built.virtio_console is not None:
                self.virtio_consoles.append(built.virtio_console)
        if problems:
            raise ConfigError(problems)

    def _irq_line(self, irq: int) -> IrqLine:
        """The machine's line for a device's ``irq_id``; one it does not have is the entry's error."""
        try:
            return self.machine.irq_line(self._target, irq)
        except ValueError as error:
            raise DeviceConfigError(f"{error}; expected an irq_id this machine has", field="irq_id") from None

    @property
    def buses(self) -> DeviceBuses:
        """The device manager's buses."""
        return self.devices.buses

    @property
    def device_lock(self) -> threading.Lock:
        """The device manager's lock: held for every device access, by vCPU threads and the VMM."""
        return self.devices.lock

    def attach_device(self, device: BaseDeviceOps, label: str) -> None:
        """Add an MMIO device to a built (even running) VM, placed and checked like the config's
        (PlacementError naming ``label``), and served inline where the backend serves MMIO so."""
        with self.devices.lock:
            self.devices.attach(device, BusKind.MMIO, DeviceOwner(label))
        inline = self._target.backend.inline_mmio
        if inline is not None:
            inline.set_mmio_handler(self.devices.mmio_windows(), self.devices)

    def detach_device(self, device: BaseDeviceOps) -> None:
        """Take off a device ``attach_device`` added."""
        with self.devices.lock:
            self.devices.detach(device, BusKind.MMIO)
        inline = self._target.backend.inline_mmio
        if inline is not None:
            inline.set_mmio_handler(self.devices.mmio_windows(), self.devices)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def state(self) -> VMState:
        return self._state

    def _transition(self, wanted: VMState) -> None:
        with self._state_lock:
            check_vm_transition(self.name, self._state, wanted)
            self._state = wanted

    def mark_loaded(self) -> None:
        """Images are in guest memory: Loading -> Loaded."""
        self._transition(VMState.LOADED)

    def boot(self, plan: BootPlan | None = None) -> None:
        """Set the vCPUs up for ``plan`` (default: the config's entry point, raw): Loaded -> Running."""
        plan = plan or self.boot_plan
        if plan is None:
            plan = BootPlan(self.config.kernel.entry_point, cmdline=self.config.kernel.cmdline_bytes)
        check_vm_transition(self.name, self._state, VMState.RUNNING)
        with self._step("prepare boot"):
            for vcpu in self.vcpus:
                vcpu.setup(GuestPhysAddr(plan.entry), self.backend.stage2)
            self.machine.prepare_boot(self._target, plan)
        self._transition(VMState.RUNNING)

    def request_pause(self) -> None:
        """Running -> Pausing: every ``run_vcpu`` returns Nothing at its next turn (each vCPU is
        kicked out of the guest) so the VMM can park its threads; ``suspend`` once they are."""
        self._transition(VMState.PAUSING)
        self._hold = True
        for vcpu in self.vcpus:
            vcpu.kick()

    def suspend(self) -> None:
        """-> Paused, with the vCPUs held out of the guest and the guest clock stopped (where the
        backend has one to stop). Call it once no vCPU thread is inside ``run_vcpu``."""
        self._transition(VMState.PAUSED)
        self._hold = True
        if isinstance(self.backend, GuestClock) and not self._clock_paused:
            self.backend.pause_clock()
            self._clock_paused = True

    def resume(self) -> None:
        """Paused (or a Pausing given up) -> Running: the guest clock runs on from where it
        stopped and ``run_vcpu`` enters the guest again."""
        self._transition(VMState.RUNNING)
        if self._clock_paused and isinstance(self.backend, GuestClock):
            self.backend.resume_clock()
            self._clock_paused = False
        self._hold = False

    def shutdown(self, exit_code: int = 0) -> None:
        """VmControl: ask every vCPU loop to stop with ``exit_code`` (first request wins)."""
        self._request_exit(SystemDown(exit_code))

    def reset(self) -> None:
        """VmControl: ask every vCPU loop to stop for a reboot."""
        self._request_exit(SystemDown(0, reset=True))

    def _request_exit(self, request: SystemDown) -> None:
        if self._exit_request is None:
            self._exit_request = request
            for vcpu in self.vcpus:
                vcpu.kick()

    @property
    def exit_request(self) -> SystemDown | None:
        return self._exit_request

    def stop(self) -> None:
        """Release the backend and guest memory: Running/Suspended/Loaded -> Stopping -> Stopped."""
        if self._state is VMState.STOPPED:
            return
        self.shutdown()
        self._transition(VMState.STOPPING)
        self._release()
        self._transition(VMState.STOPPED)

    def _release(self) -> None:
        """Give back what the VM holds: vCPUs, host resources, guest memory, then the backend."""
        for vcpu in self.vcpus:
            vcpu.close()
        for release in self._on_stop:
            release()
        self.addrspace.close()  # every stage-2 unmap, then the RAM; before the backend closes
        self.backend.close()

    # -- running --------------------------------------------------------------------------

    def run_vcpu(self, vcpu_id: int) -> AxVCpuExitReason:
        """Run one vCPU until an exit the VM does not handle itself, or a stop request."""
        vcpu = self.vcpus[vcpu_id]
        if vcpu.state is VCpuState.FREE:
            vcpu.bind()
        devices, addrspace = self.devices, self.addrspace
        counts = self.exit_counts[vcpu_id]
        observers = self.exit_observers
        hooks, target = self._run_hooks, self._target
        doorbell = self._doorbell
        doorbell_port = doorbell.hypercall_port if doorbell is not None else -1
        while True:
            request = self._exit_request
            if request is not None:
                return request
            if self._hold:
                return Nothing()
            if hooks is not None and (held := hooks.vcpu_enter(target, vcpu_id)) is not None:
                return held
            exit_reason = vcpu.run()
            kind = type(exit_reason)
            counts[kind] = counts.get(kind, 0) + 1
            if observers:
                self._tell_observers(vcpu_id, exit_reason)
            if doorbell is not None and kind is IoWrite and exit_reason.port == doorbell_port:  # type: ignore[union-attr]
                self.hypercalls.handle(vcpu, vcpu_id, doorbell.doorbell_call(vcpu))
                continue
            outcome = devices.handle_exit(exit_reason, addrspace)
            if outcome is None:
                passed = exit_reason if hooks is None else hooks.vcpu_exit(target, vcpu_id, exit_reason)
                if type(passed) is Hypercall:
                    self.hypercalls.handle(vcpu, vcpu_id, passed)
                elif passed is not None:
                    return passed
                continue
            if outcome.read_value is not None:
                vcpu.complete_read(outcome.read_value)

    def _tell_observers(self, vcpu_id: int, exit_reason: AxVCpuExitReason) -> None:
        """A failing observer is logged and skipped: it must not take the vCPU down."""
        for observe in tuple(self.exit_observers):
            try:
                observe(vcpu_id, exit_reason)
            except Exception:
                log.exception("VM %r: exit observer %r failed on %r", self.name, observe, exit_reason)
