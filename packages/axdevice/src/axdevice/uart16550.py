"""A 16550A UART (ns16550a) as a sans-IO state machine.

Theory of operation (register map and bits per the PC16550D datasheet, section 8 "Registers";
behaviour cross-checked with QEMU's hw/char/serial.c and rust-vmm's vm-superio):

- Eight byte registers at offsets 0..7. LCR bit 7 (DLAB) turns offsets 0/1 into the divisor
  latch (DLL/DLM); the divisor is stored and reported but does not pace anything.
- Transmit is instant: a THR write hands the byte to the output sink at once, so LSR's THRE and
  TEMT are always set and "THR empty" interrupts become pending right after each write.
- Receive goes through a FIFO fed by ``push_input``; the caller keeps what does not fit and
  retries, so the host side never overruns. Overrun (LSR.OE) happens only in loopback, where
  the guest itself fills the FIFO with THR writes.
- The interrupt identification follows the datasheet's priorities: line status (overrun) >
  received data > THR empty > modem status. The IRQ line is a level: high exactly while an
  enabled interrupt is pending, and ``set_level`` is called only when that changes.
- The details Linux's 8250 driver probes for: IER keeps its low 4 bits, loopback (MCR bit 4)
  mirrors DTR/RTS/OUT1/OUT2 into DSR/CTS/RI/DCD, IIR shows 0xC0 once FCR enables the FIFOs,
  and enabling THRI while THR is empty makes THRE pending again (cleared by reading IIR).

Departures from silicon, chosen for a VMM: the RX FIFO is 16 bytes whether or not FCR enabled
the FIFOs (no 1-byte 16450 mode), there is no character-timeout interrupt (the received-data
interrupt fires on the first byte, as no time passes in a state machine), and outside loopback
the modem lines read as a connected cable (DCD|DSR|CTS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .irq import IrqLine

# Register offsets (DLAB=0 names; DLL/DLM share 0/1 when DLAB=1).
RBR_THR = 0
IER = 1
IIR_FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

IER_ERBFI = 0x01  # received data available
IER_ETBEI = 0x02  # THR empty
IER_ELSI = 0x04  # receiver line status
IER_EDSSI = 0x08  # modem status
IER_MASK = 0x0F  # the upper nibble is reserved and reads 0 (Linux probes this)

IIR_NONE = 0x01
IIR_MSR = 0x00
IIR_THRE = 0x02
IIR_RDA = 0x04
IIR_RLS = 0x06
IIR_FIFO_ENABLED = 0xC0

FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
FCR_KEPT = 0xC9  # enable, DMA mode and RX trigger level; the clear bits self-clear

LCR_DLAB = 0x80

MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10
MCR_MASK = 0x1F

LSR_DR = 0x01
LSR_OE = 0x02
LSR_THRE = 0x20
LSR_TEMT = 0x40

MSR_DCTS = 0x01
MSR_DDSR = 0x02
MSR_TERI = 0x04
MSR_DDCD = 0x08
MSR_DELTAS = 0x0F
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_CONNECTED = MSR_DCD | MSR_DSR | MSR_CTS  # 0xB0: what a driver expects of a cabled line

# The guest drains the RX FIFO at its own pace, so input must be bounded; 16 bytes is the real
# 16550A FIFO depth, which drivers size their receive loops and trigger levels for.
RX_FIFO_SIZE = 16

DEFAULT_DIVISOR = 12  # 115200 / 12 = 9600 baud, the usual power-on divisor


@dataclass
class UartState:
    """Everything needed to resume a UART; defaults are the power-on state."""

    dll: int = DEFAULT_DIVISOR & 0xFF
    dlm: int = DEFAULT_DIVISOR >> 8
    ier: int = 0
    fcr: int = 0
    lcr: int = 0x03  # 8 data bits, no parity, 1 stop bit
    mcr: int = MCR_OUT2
    lsr: int = LSR_THRE | LSR_TEMT
    msr: int = MSR_CONNECTED
    scr: int = 0
    thr_pending: bool = False
    rx_fifo: bytes = b""
    lost_output_bytes: int = 0


_REGISTER_LIMITS = {"ier": IER_MASK, "fcr": FCR_KEPT, "mcr": MCR_MASK}


def _validate(state: UartState) -> None:
    for name in ("dll", "dlm", "ier", "fcr", "lcr", "mcr", "lsr", "msr", "scr"):
        value = getattr(state, name)
        limit = _REGISTER_LIMITS.get(name, 0xFF)
        if not isinstance(value, int) or value < 0 or value & ~limit:
            raise ValueError(f"UartState.{name} = {value!r} is not a register value within {limit:#x}")
    if len(state.rx_fifo) > RX_FIFO_SIZE:
        raise ValueError(f"UartState.rx_fifo holds {len(state.rx_fifo)} bytes, over {RX_FIFO_SIZE}")
    if state.lost_output_bytes < 0:
        raise ValueError(f"UartState.lost_output_bytes = {state.lost_output_bytes} is negative")


def _modem_status(mcr: int) -> int:
    """MSR's upper nibble: looped back from MCR, or a connected line."""
    if not mcr & MCR_LOOP:
        return MSR_CONNECTED
    status = MSR_DSR if mcr & MCR_DTR else 0
    status |= MSR_CTS if mcr & MCR_RTS else 0
    status |= MSR_RI if mcr & MCR_OUT1 else 0
    status |= MSR_DCD if mcr & MCR_OUT2 else 0
    return status


class Uart16550:
    """The UART's registers; bytes leave through ``output``, interrupts through ``irq``."""

    lost_output_bytes: int  # bytes the output sink refused; set by _load, kept across reset

    def __init__(self, irq: IrqLine, output: Callable[[bytes], object] | None = None) -> None:
        self._irq = irq
        self._output = output
        self._irq_level = False
        self._load(UartState())

    @classmethod
    def from_state(cls, state: UartState, irq: IrqLine, output: Callable[[bytes], object] | None = None) -> Uart16550:
        """A UART resumed from ``state``; ValueError if the state is not one a UART can be in.

        The new line is raised at once if the state has an enabled interrupt pending.
        """
        _validate(state)
        uart = cls(irq, output)
        uart._load(state)
        return uart

    def restore(self, state: UartState) -> None:
        """Put this UART into ``state`` in place (a VM snapshot restored), keeping its line and
        sink; ValueError as ``from_state``. The line follows the restored interrupt state."""
        _validate(state)
        self._load(state)

    def state(self) -> UartState:
        """A snapshot of the registers and the RX FIFO."""
        return UartState(
            dll=self._dll,
            dlm=self._dlm,
            ier=self._ier,
            fcr=self._fcr,
            lcr=self._lcr,
            mcr=self._mcr,
            lsr=self._lsr,
            msr=self._msr,
            scr=self._scr,
            thr_pending=self._thr_pending,
            rx_fifo=bytes(self._rx),
            lost_output_bytes=self.lost_output_bytes,
        )

    def reset(self) -> None:
        """Return to the power-on state (a VM reset), lowering the line if it was raised."""
        lost = self.lost_output_bytes
        self._load(UartState())
        self.lost_output_bytes = lost

    def _load(self, state: UartState) -> None:
        self._dll, self._dlm, self._ier = state.dll, state.dlm, state.ier
        self._fcr, self._lcr, self._mcr, self._scr = state.fcr, state.lcr, state.mcr, state.scr
        self._rx = bytearray(state.rx_fifo)
        # Derived bits are recomputed rather than trusted: DR from the FIFO, THRE/TEMT always.
        self._lsr = (state.lsr & LSR_OE) | LSR_THRE | LSR_TEMT | (LSR_DR if self._rx else 0)
        self._msr = _modem_status(self._mcr) | (state.msr & MSR_DELTAS)
        self._thr_pending = bool(state.thr_pending)
        self.lost_output_bytes = state.lost_output_bytes
        self._update_irq()

    @property
    def irq_level(self) -> bool:
        """Whether the UART is asserting its interrupt line."""
        return self._irq_level

    @property
    def rx_space(self) -> int:
        """How many bytes ``push_input`` would accept now."""
        return 0 if self._mcr & MCR_LOOP else RX_FIFO_SIZE - len(self._rx)

    @property
    def divisor(self) -> int:
        """The baud-rate divisor latch (DLM:DLL)."""
        return self._dlm << 8 | self._dll

    # -- host side --------------------------------------------------------------------------

    def push_input(self, data: bytes) -> int:
        """Queue received bytes; returns how many fit (the caller retries the rest).

        In loopback the receiver is disconnected from the line (datasheet, MCR bit 4), so
        nothing is accepted until the guest leaves loopback.
        """
        count = min(len(data), self.rx_space)
        if count <= 0:
            return 0
        self._rx += data[:count]
        self._lsr |= LSR_DR
        self._update_irq()
        return count

    # -- polled transmit, served by a CPU engine (the soft riscv backend's C engine) ------------

    def polled_tx_lsr(self) -> int:
        """What LSR reads while the guest only polls LSR and writes THR, which then need not
        reach this model one by one (``transmit`` takes the bytes); 0 when they must: the
        divisor latch or loopback is on, THR-empty interrupts are enabled, or an overrun waits
        to be read (reading LSR clears it)."""
        if self._lcr & LCR_DLAB or self._mcr & MCR_LOOP or self._ier & IER_ETBEI or self._lsr & LSR_OE:
            return 0
        return self._lsr

    def transmit(self, data: bytes) -> None:
        """Bytes the guest wrote to THR while ``polled_tx_lsr`` allowed it: one write to the
        output, and the state ``len(data)`` THR writes leave."""
        if not data:
            return
        if self._output is not None:
            try:
                self._output(bytes(data))
            except Exception:  # a failing sink loses the bytes, never the VMM
                self.lost_output_bytes += len(data)
        self._thr_pending = True
        self._update_irq()

    # -- guest side -------------------------------------------------------------------------

    def read(self, offset: int) -> int:
        """The guest reads register ``offset`` (0..7); unknown offsets read 0."""
        dlab = self._lcr & LCR_DLAB
        if offset == RBR_THR:
            return self._dll if dlab else self._read_rbr()
        if offset == IER:
            return self._dlm if dlab else self._ier
        if offset == IIR_FCR:
            return self._read_iir()
        if offset == LCR:
            return self._lcr
        if offset == MCR:
            return self._mcr
        if offset == LSR:
            return self._read_lsr()
        if offset == MSR:
            return self._read_msr()
        if offset == SCR:
            return self._scr
        return 0

    def write(self, offset: int, value: int) -> None:
        """The guest writes register ``offset``; LSR, MSR and unknown offsets drop the write."""
        value &= 0xFF
        dlab = self._lcr & LCR_DLAB
        if offset == RBR_THR:
            if dlab:
                self._dll = value
            else:
                self._write_thr(value)
        elif offset == IER:
            if dlab:
                self._dlm = value
            else:
                self._write_ier(value)
        elif offset == IIR_FCR:
            self._write_fcr(value)
        elif offset == LCR:
            self._lcr = value
        elif offset == MCR:
            self._write_mcr(value)
        elif offset == SCR:
            self._scr = value

    def _read_rbr(self) -> int:
        if not self._rx:
            return 0
        byte = self._rx.pop(0)
        if not self._rx:
            self._lsr &= ~LSR_DR
            self._update_irq()
        return byte

    def _read_iir(self) -> int:
        iid = self._interrupt_id()
        if iid == IIR_THRE:  # reading IIR acknowledges THRE when it is what IIR reports
            self._thr_pending = False
            self._update_irq()
        return iid | (IIR_FIFO_ENABLED if self._fcr & FCR_ENABLE else 0)

    def _read_lsr(self) -> int:
        value = self._lsr
        if value & LSR_OE:
            self._lsr &= ~LSR_OE
            self._update_irq()
        return value

    def _read_msr(self) -> int:
        value = self._msr
        if value & MSR_DELTAS:
            self._msr &= ~MSR_DELTAS
            self._update_irq()
        return value

    def _write_thr(self, value: int) -> None:
        if self._mcr & MCR_LOOP:
            if len(self._rx) < RX_FIFO_SIZE:
                self._rx.append(value)
                self._lsr |= LSR_DR
            else:
                self._lsr |= LSR_OE  # the byte is lost, as on silicon
        elif self._output is not None:
            try:
                self._output(bytes((value,)))
            except Exception:  # a failing sink loses the byte, never the VMM
                self.lost_output_bytes += 1
        self._thr_pending = True  # sent at once, so THR is empty again
        self._update_irq()

    def _write_ier(self, value: int) -> None:
        value &= IER_MASK
        if (value ^ self._ier) & IER_ETBEI:
            # THR is always empty, so enabling THRI makes THRE pending (Linux's UART_BUG_THRE
            # probe and Windows rely on it); disabling it drops the stale pending flag (as QEMU).
            self._thr_pending = bool(value & IER_ETBEI)
        self._ier = value
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        if (value ^ self._fcr) & FCR_ENABLE:  # toggling the FIFO enable clears both FIFOs
            value |= FCR_CLEAR_RX | FCR_CLEAR_TX
        if value & FCR_CLEAR_RX:
            self._rx.clear()
            self._lsr &= ~LSR_DR
        if value & FCR_CLEAR_TX:
            self._thr_pending = True  # the (always empty) transmitter is empty again, as QEMU
        self._fcr = value & FCR_KEPT
        self._update_irq()

    def _write_mcr(self, value: int) -> None:
        self._mcr = value & MCR_MASK
        old = self._msr
        new = _modem_status(self._mcr)
        changed = (old ^ new) & 0xF0
        delta = old & MSR_DELTAS
        delta |= MSR_DCTS if changed & MSR_CTS else 0
        delta |= MSR_DDSR if changed & MSR_DSR else 0
        delta |= MSR_DDCD if changed & MSR_DCD else 0
        delta |= MSR_TERI if old & MSR_RI and not new & MSR_RI else 0  # trailing edge of RI
        self._msr = new | delta
        self._update_irq()

    def _interrupt_id(self) -> int:
        """IIR's interrupt bits for the highest-priority enabled pending interrupt."""
        ier = self._ier
        if ier & IER_ELSI and self._lsr & LSR_OE:
            return IIR_RLS
        if ier & IER_ERBFI and self._lsr & LSR_DR:
            return IIR_RDA
        if ier & IER_ETBEI and self._thr_pending:
            return IIR_THRE
        if ier & IER_EDSSI and self._msr & MSR_DELTAS:
            return IIR_MSR
        return IIR_NONE

    def _update_irq(self) -> None:
        level = self._interrupt_id() != IIR_NONE
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)
