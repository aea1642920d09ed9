"""What a backend can do beyond running vCPUs, as small Protocols a machine asks for.

Backends differ in how devices reach the CPU: KVM has numbered interrupt lines into its
in-kernel irqchip; the soft riscv backend has no irqchip (the PLIC and CLINT are devices) but
drives each hart's MIP bits, keeps the machine timer, serves MMIO inline and lets the machine
watch ecalls (to know when translated code goes stale). Each of these is one Protocol here.
``BackendCapabilities.of(backend)`` asks once, with ``isinstance`` on the runtime-checkable
Protocols, and hands the machine a typed record in which a missing capability is ``None``;
the machine then uses its documented fallback or raises ``MissingCapability`` naming the
backend and what it lacks. Backends in axvcpu satisfy the Protocols structurally: they import
nothing from axvm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from axaddrspace import AccessWidth
from axdevice import IrqLine
from axvcpu import EcallObserver

from .backend import VmBackend


class MissingCapability(RuntimeError):
    """A machine needs something its backend does not offer (not a config problem)."""


@runtime_checkable
class IrqLines(Protocol):
    """Numbered interrupt lines into an interrupt controller the backend owns (KVM's IOAPIC)."""

    def irq_line(self, irq: int) -> IrqLine: ...


@runtime_checkable
class HartLines(Protocol):
    """Lines driving one interrupt-pending bit of one hart (riscv MIP bits), for interrupt
    controllers that are devices (the PLIC, the CLINT)."""

    def hart_line(self, hart: int, bit: int) -> IrqLine: ...


@runtime_checkable
class MachineClock(Protocol):
    """The machine timer every hart reads (riscv mtime) and the per-hart compare registers."""

    def mtime(self) -> int: ...

    def set_mtimecmp(self, hart: int, value: int) -> None: ...


class MmioHandler(Protocol):
    """What serves inline MMIO: the device manager (``DeviceManager.read``/``write``)."""

    def read(self, addr: int, width: AccessWidth) -> int: ...

    def write(self, addr: int, width: AccessWidth, value: int) -> None: ...


@runtime_checkable
class InlineMmio(Protocol):
    """The backend calls a handler for device windows from inside the vCPU's run, instead of
    returning MmioRead/MmioWrite exits."""

    def set_mmio_handler(self, ranges: list[tuple[int, int]], handler: MmioHandler) -> None: ...


@runtime_checkable
class MtimecmpWrites(Protocol):
    """The backend takes each hart's writes to its own mtimecmp (8 bytes per hart from
    ``base``, the CLINT's layout) in the CPU engine and replays the last value to the MMIO
    handler before the device can be read (the soft riscv backend's C engine): a Linux boot
    writes mtimecmp thousands of times."""

    def serve_mtimecmp_writes(self, base: int) -> None: ...


class PolledUart(Protocol):
    """A 16550 whose polled transmit a backend may serve (axdevice's Uart16550)."""

    def polled_tx_lsr(self) -> int: ...

    def transmit(self, data: bytes) -> None: ...


@runtime_checkable
class PolledUartTx(Protocol):
    """The backend serves a 16550's LSR reads and THR writes in the CPU engine while the UART
    allows it (``polled_tx_lsr``) and hands it the bytes in batches (the soft riscv backend's C
    engine): firmware and Linux's console poll LSR before every byte."""

    def serve_uart_tx(self, base: int, uart: PolledUart) -> None: ...


@runtime_checkable
class EcallHook(Protocol):
    """The backend tells an observer of every guest ecall, which answers whether every hart must
    drop its translated code (axvcpu's ``EcallObserver``): the riscv machine installs the one
    that knows SBI, so the CPU model needs to know no firmware ABI."""

    def set_ecall_observer(self, observer: EcallObserver | None) -> None: ...

    def drop_code(self, hart: int) -> None:
        """Hart ``hart`` drops all its translated code before it next runs (any thread): what a
        hart start needs, for the started hart alone."""
        ...


@runtime_checkable
class WriteEvents(Protocol):
    """Guest MMIO writes of one value to one address that the backend finishes itself and
    reports to ``callback`` on a host thread of its own, without a vCPU exit (KVM ioeventfd):
    virtio's QueueNotify. ``stop_write_events`` ends the callbacks before devices are released."""

    def notify_on_write(self, addr: int, width: AccessWidth, value: int, callback: Callable[[], object]) -> None: ...

    def stop_write_events(self) -> None: ...


@runtime_checkable
class QuietPorts(Protocol):
    """x86 port accesses no device answers, served by the backend itself after the first one to
    each port (which still exits, so the bus logs it): reads all-ones, writes dropped, counted
    and handed to ``sink(reads, writes)``. ``bitmap`` has bit ``port % 8`` of byte ``port // 8``
    set for each such port. Exit observers do not see these accesses."""

    def set_quiet_ports(self, bitmap: bytes, sink: Callable[[int, int], object]) -> None: ...


TimerSink = Callable[[int, int, bool], object]
"""``sink(vcpu, intid, level)``: a vCPU's generic timer output (INTID 27 virtual, 30 physical)
changed level; called on that vCPU's own thread."""


@runtime_checkable
class ArmCpuLines(Protocol):
    """The arm CPU side a GIC needs: each vCPU's IRQ input (the GIC's CPU interface drives it,
    from any thread) and a sink for the vCPUs' generic-timer outputs, which the machine raises
    as the GIC's PPIs."""

    def irq_input(self, cpu: int) -> IrqLine: ...

    def set_timer_sink(self, sink: TimerSink | None) -> None: ...


@dataclass(frozen=True)
class BackendCapabilities:
    """One backend's capabilities, asked once; ``None`` where it lacks one."""

    backend: str
    """The backend's name, for messages."""
    irq_lines: IrqLines | None = None
    hart_lines: HartLines | None = None
    clock: MachineClock | None = None
    inline_mmio: InlineMmio | None = None
    ecall_hook: EcallHook | None = None
    arm_cpu_lines: ArmCpuLines | None = None
    write_events: WriteEvents | None = None
    quiet_ports: QuietPorts | None = None
    mtimecmp_writes: MtimecmpWrites | None = None
    polled_uart_tx: PolledUartTx | None = None

    @classmethod
    def of(cls, backend: VmBackend) -> BackendCapabilities:
        return cls(
            backend.name,
            irq_lines=backend if isinstance(backend, IrqLines) else None,
            hart_lines=backend if isinstance(backend, HartLines) else None,
            clock=backend if isinstance(backend, MachineClock) else None,
            inline_mmio=backend if isinstance(backend, InlineMmio) else None,
            ecall_hook=backend if isinstance(backend, EcallHook) else None,
            arm_cpu_lines=backend if isinstance(backend, ArmCpuLines) else None,
            write_events=backend if isinstance(backend, WriteEvents) else None,
            quiet_ports=backend if isinstance(backend, QuietPorts) else None,
            mtimecmp_writes=backend if isinstance(backend, MtimecmpWrites) else None,
            polled_uart_tx=backend if isinstance(backend, PolledUartTx) else None,
        )

    def need_irq_lines(self, who: str) -> IrqLines:
        """The backend's numbered lines; MissingCapability saying ``who`` needs them otherwise."""
        if self.irq_lines is None:
            raise MissingCapability(
                f"{who} needs numbered interrupt lines (irq_line), which the {self.backend!r} backend does not have"
            )
        return self.irq_lines
