"""``VM``: one virtual machine in this Python process, to script, probe and extend.

    vm = VM.from_config("configs/vms/linux-riscv64-virt-smp1.toml")
    vm.on_mmio(0x1000_8000, 0x1000, read=lambda offset, size: 0x2A)
    vm.start()
    vm.expect("axvisor# ")
    vm.send("devmem 0x10008000 32\\n")
    vm.expect("0x0000002A")
    vm.pause(); print(vm.vcpus[0].registers["pc"]); vm.resume()
    vm.stop()

Theory of operation. A ``VM`` is a one-VM ``VmManager`` (the same object behind the shell and
the API), so its states, errors and rules are the manager's: ``registers`` need a Paused VM,
memory is read and written in any state with guest RAM, a bad argument is ``BadRequest``
naming the field. What scripting adds is hooks into the VM itself:

- ``on_mmio``: a device from two plain functions (``axdevice.CallbackDevice``), placed like a
  config's device (over RAM or another device: ``BadRequest``), served inline by the software
  CPU, through exits on KVM;
- ``on_hypercall``: a guest hypercall (AxVisor's ABI, ``axvm.hypercalls``) served by a Python
  function, on the calling vCPU's thread;
- ``on_exit``: a callback told of each vCPU exit of one kind (or all), on the vCPU's thread,
  before the VM handles it. Exits are what the backend reports: the software CPU serves its
  device windows inline, so MMIO to devices is not an exit there.

Hooks belong to the VM, not to one build of it: a reset or a start after a stop rebuilds the
VM from its config, and the hooks are installed again on the new build. Nothing is installed
where no hook is: the exit loop then pays one truth test per exit.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from axaddrspace import AddrRange
from axdevice import CallbackDevice
from axdevice.callback_device import ReadFunction, WriteFunction
from axvcpu import AxVCpuExitReason
from axvm import AxVM, PlacementError
from axvm.hypercalls import HypercallContext

from .manager import MEMORY_ACCESS_MAX, BadRequest, VmManager
from .vmtypes import VmInfo, VMState

ExitCallback = Callable[[int, AxVCpuExitReason], object]
"""``callback(vcpu_id, exit)``: on the vCPU's thread; it must not block."""

_ENDED = (VMState.STOPPED, VMState.FAILED)


@dataclass(frozen=True)
class Hook:
    """An installed hook; ``remove()`` takes it off the VM (and its later builds)."""

    remove: Callable[[], None]


class GuestMemoryView:
    """``vm.memory[gpa:gpa + n]`` reads guest RAM, ``vm.memory[gpa:gpa + n] = data`` writes it."""

    def __init__(self, manager: VmManager, vm_id: int) -> None:
        self._manager = manager
        self._id = vm_id

    def __getitem__(self, key: slice) -> bytes:
        start, stop = _bounds(key)
        return b"".join(self._manager.read_memory(self._id, gpa, size) for gpa, size in _chunks(start, stop))

    def __setitem__(self, key: slice, data: bytes) -> None:
        start, stop = _bounds(key)
        if len(data) != stop - start:
            raise BadRequest("data", f"{len(data)} bytes for a {stop - start}-byte slice; expected equal sizes")
        for gpa, size in _chunks(start, stop):
            self._manager.write_memory(self._id, gpa, bytes(data[gpa - start : gpa - start + size]))


class VCpuView:
    """One vCPU: ``registers`` (a Paused VM's, by the architecture's names)."""

    def __init__(self, manager: VmManager, vm_id: int, index: int) -> None:
        self._manager = manager
        self._id = vm_id
        self.index = index

    @property
    def registers(self) -> dict[str, int]:
        return self._manager.registers(self._id, self.index)


class VM:
    """One VM in this process; see the module docstring."""

    def __init__(self, manager: VmManager, info: VmInfo, hooks: list[Callable[[AxVM], Callable[[], None]]]) -> None:
        self._manager = manager
        self._hooks = hooks  # shared with the manager's on_build: each installs itself, returns its undo
        self._console = bytearray()
        self._console_cond = threading.Condition()
        self.id = info.id
        self.name = info.name
        self.memory = GuestMemoryView(manager, self.id)
        self.vcpus = [VCpuView(manager, self.id, index) for index in range(info.cpus)]
        self._subscription = manager.console_subscribe(self.id, self._on_console)

    @classmethod
    def from_config(
        cls,
        config: str | Path,
        *,
        console: Callable[[bytes], object] | None = None,
        name: str | None = None,
        cpus: int | None = None,
        mem: int | None = None,
    ) -> VM:
        """Build the VM (images loaded, not started) from a config file, as ``vm create`` does;
        ``console`` also gets every byte the guest prints."""
        hooks: list[Callable[[AxVM], Callable[[], None]]] = []

        def install_all(vm: AxVM) -> None:
            for install in list(hooks):
                install(vm)

        echo = (lambda _vm_id, data: console(data)) if console is not None else None
        manager = VmManager(console_echo=echo, on_build=install_all)
        try:
            info = manager.create(config, name=name, cpus=cpus, mem=mem)
        except BaseException:
            manager.close()
            raise
        return cls(manager, info, hooks)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def state(self) -> VMState:
        return self._manager.get(self.id).state

    def info(self) -> VmInfo:
        return self._manager.get(self.id)

    def start(self) -> None:
        self._manager.start(self.id)

    def pause(self, timeout: float = 10.0) -> None:
        self._manager.pause(self.id, timeout)

    def resume(self) -> None:
        self._manager.resume(self.id)

    def reset(self) -> None:
        self._manager.reset(self.id)

    def stop(self) -> None:
        if self.state not in _ENDED:
            self._manager.stop(self.id, force=True)

    def wait(self, timeout: float | None = None) -> VmInfo:
        """Until the guest powers off (or the VM fails); TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (info := self._manager.get(self.id)).state not in _ENDED:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"VM {self.id} is still {info.state.value} after {timeout} s")
            time.sleep(0.02)
        return info

    def close(self) -> None:
        """Stop the VM if it runs and release everything (the VM is gone after)."""
        self._subscription.close()
        self._manager.close()

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- console ---------------------------------------------------------------------------------

    def _on_console(self, data: bytes) -> None:
        with self._console_cond:
            self._console += data
            self._console_cond.notify_all()

    @property
    def console(self) -> bytes:
        """Everything the guest printed since this ``VM`` was made (``expect`` consumes it)."""
        with self._console_cond:
            return bytes(self._console)

    def send(self, text: str | bytes) -> None:
        """Type ``text`` on the guest's console."""
        self._manager.console_input(self.id, text.encode() if isinstance(text, str) else text)

    def expect(self, pattern: str | bytes, timeout: float = 60.0) -> bytes:
        """Wait until the console shows ``pattern`` (a regular expression); returns the output up
        to the end of the match and forgets it, so the next ``expect`` looks further on."""
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        with self._console_cond:
            while (match := regex.search(self._console)) is None:
                left = deadline - time.monotonic()
                if left <= 0 or self.state in _ENDED:
                    tail = bytes(self._console[-200:])
                    raise TimeoutError(f"VM {self.id}: {regex.pattern!r} not seen in {timeout} s; last output {tail!r}")
                self._console_cond.wait(min(left, 0.5))
            seen = bytes(self._console[: match.end()])
            del self._console[: match.end()]
            return seen

    # -- hooks -----------------------------------------------------------------------------------

    def on_mmio(
        self,
        base: int,
        size: int,
        read: ReadFunction | None = None,
        write: WriteFunction | None = None,
        name: str | None = None,
    ) -> Hook:
        """Serve guest accesses to ``[base, base + size)`` with ``read(offset, size) -> int`` and
        ``write(offset, size, value)``; BadRequest("base") where the window cannot go."""
        label = name or f"python MMIO hook at {base:#x}"
        try:
            AddrRange.from_start_size(base, size)
        except (ValueError, OverflowError) as error:
            raise BadRequest("base", f"{base:#x}+{size:#x}: {error}") from None

        def install(vm: AxVM) -> Callable[[], None]:
            device = CallbackDevice(base, size, read, write, name=label)
            try:
                vm.attach_device(device, label)
            except PlacementError as error:
                raise BadRequest("base", str(error)) from None
            return lambda: vm.detach_device(device)

        return self._add_hook(install)

    def on_exit(self, kind: type | str | None, callback: ExitCallback) -> Hook:
        """Call ``callback(vcpu_id, exit)`` for exits of ``kind`` (an exit class such as
        ``axvcpu.Halt`` or its name; None: every exit)."""
        wanted = kind if kind is None or isinstance(kind, str) else kind.__name__

        def observe(vcpu_id: int, exit_reason: AxVCpuExitReason) -> None:
            if wanted is None or type(exit_reason).__name__ == wanted:
                callback(vcpu_id, exit_reason)

        def install(vm: AxVM) -> Callable[[], None]:
            vm.exit_observers.append(observe)
            return lambda: vm.exit_observers.remove(observe)

        return self._add_hook(install)

    def on_hypercall(self, code: int, callback: Callable[[int, tuple[int, ...]], int]) -> Hook:
        """Serve the guest's hypercall ``code`` (AxVisor's ABI: riscv64 ecall with a7 = 0x485643
        and the code in a6, aarch64 hvc #0 with x0, x86_64 vmcall with rax) with
        ``callback(vcpu_id, args) -> value``; raise ``axvm.hypercalls.HypercallError`` to return
        an error code instead. Replaces the VMM's own handler for that code while installed."""

        def serve(context: HypercallContext) -> int:
            return callback(context.vcpu_id, tuple(context.call.args))

        def install(vm: AxVM) -> Callable[[], None]:
            previous = vm.hypercalls.handler_for(code)
            vm.hypercalls.register(code, serve)
            if previous is None:
                return lambda: vm.hypercalls.unregister(code)
            return lambda: vm.hypercalls.register(code, previous)

        return self._add_hook(install)

    def _add_hook(self, install: Callable[[AxVM], Callable[[], None]]) -> Hook:
        undo: list[Callable[[], None]] = []

        def install_and_remember(vm: AxVM) -> Callable[[], None]:
            undo_this = install(vm)
            undo[:] = [undo_this]
            return undo_this

        managed = self._manager._vm(self.id)
        if managed.state not in _ENDED:
            install_and_remember(managed.current_vm())
        self._hooks.append(install_and_remember)

        def remove() -> None:
            if install_and_remember in self._hooks:
                self._hooks.remove(install_and_remember)
                for step in undo:
                    step()

        return Hook(remove)


def _bounds(key: slice) -> tuple[int, int]:
    if not isinstance(key, slice) or key.step not in (None, 1) or key.start is None or key.stop is None:
        raise BadRequest("gpa", f"{key!r}: expected a slice [gpa:gpa + size]")
    start, stop = int(key.start), int(key.stop)
    if stop <= start:
        raise BadRequest("size", f"[{start:#x}:{stop:#x}] is empty; expected stop > start")
    return start, stop


def _chunks(start: int, stop: int) -> Iterator[tuple[int, int]]:
    for gpa in range(start, stop, MEMORY_ACCESS_MAX):
        yield gpa, min(MEMORY_ACCESS_MAX, stop - gpa)
