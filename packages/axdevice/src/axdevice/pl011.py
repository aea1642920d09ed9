"""The ARM PrimeCell PL011 UART (r1p5) as a sans-IO state machine.

Theory of operation (ARM PrimeCell UART (PL011) Technical Reference Manual r1p5, DDI 0183,
chapter 3 "Programmers Model": section 3.2 summary of registers, 3.3 register descriptions,
3.4 interrupts; the choices it leaves to timing cross-checked with QEMU's hw/char/pl011.c and
with what Linux's amba-pl011 and U-Boot's serial_pl01x drivers rely on):

- Registers sit at word offsets (UARTDR 0x000 ... UARTDMACR 0x048, PeriphID0-3 at 0xFE0-0xFEC,
  CellID0-3 at 0xFF0-0xFFC). An access of any width at a word-aligned offset reaches the
  register: Linux uses 16-bit accesses (32-bit for ``mmio32``), its earlycon byte writes to
  UARTDR, U-Boot 32-bit ones. A read is masked to the access width; a write stores the value
  masked to the register's bits (APB has no byte lanes: a narrow write is a whole-register
  write). Offsets that are not word-aligned, and unknown ones, read 0 and drop writes.
- The ID registers read PL011 r1p5: PeriphID 0x11 0x10 0x34 0x00 (part 0x011, designer ARM,
  revision 3 = r1p5), CellID 0x0D 0xF0 0x05 0xB1. Linux's amba bus matches the driver on them,
  and its driver sizes the FIFOs from the revision (below 3: 16 entries, else 32), which is why
  the revision says r1p5: this model has r1p5's 32-entry FIFOs.
- Transmit is instant: a UARTDR write hands the byte to the output sink, so the transmit FIFO
  is always empty: UARTFR reads TXFE set, TXFF and BUSY clear. Each byte sent drains the FIFO
  to or below any trigger level, so it sets TXRIS (section 3.4, UARTTXINTR); UARTICR clears it.
- Receive goes through a FIFO of 12-bit entries (8 data bits, then FE, PE, BE, OE as UARTDR
  bits 8-11): 32 entries while UARTLCR_H.FEN is set, one (the holding register) while it is
  clear. ``push_input`` feeds it only while UARTCR.UARTEN and RXE are set and loopback is off;
  the caller keeps what does not fit and retries, so the host side never overruns.
- RXRIS is set when a byte brings the FIFO level to the trigger level UARTIFLS selects (1/8,
  1/4, 1/2, 3/4, 7/8 of 32; 1 in character mode) and cleared when reads take the level below
  it, or by UARTICR. RTRIS, the receive timeout, means "data waits and the line has been idle
  for 32 bit periods": no time passes in a state machine, so the end of each ``push_input``
  (and of each loopback write) is the line going idle, and RTRIS is set while data waits. It
  clears when the FIFO empties or by UARTICR.
- Loopback (UARTCR.LBE) feeds transmitted bytes into the receive FIFO instead of the sink;
  a byte arriving at a full FIFO is lost and sets OE: UARTRSR.OE, OEIS, and the OE flag of
  the newest entry. UARTRSR's FE/PE/BE latch the flags of the entry last read from UARTDR; any
  write to UARTECR (the same offset) clears them all.
- The one interrupt output (UARTINTR, wired to the GIC) is a level: high exactly while
  UARTMIS = UARTRIS & UARTIMSC is not 0; ``set_level`` is called only when that changes.

Departures from silicon, chosen for a VMM: the baud-rate and line-format registers are stored
and read back but pace nothing; bytes written while UARTEN or TXE is clear are still sent (as
QEMU does: earlycon writes before any driver enables the UART); the modem inputs read as a
connected cable (CTS, DSR, DCD set, RI clear) and never change, so the modem interrupts never
fire; there is no DMA (UARTDMACR is stored only); the receiver never sees framing, parity or
break errors, since the host hands it bytes, not line signals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from axaddrspace import AccessWidth, AddrRange

from .device import BaseDeviceOps
from .irq import IrqLine
from .primecell import CELL_ID, id_register
from .types import EmuDeviceType

PL011_BASE = 0x0900_0000  # QEMU arm virt
PL011_SIZE = 0x1000

# Register offsets (TRM table 3-1).
UARTDR = 0x000
UARTRSR_ECR = 0x004
UARTFR = 0x018
UARTILPR = 0x020
UARTIBRD = 0x024
UARTFBRD = 0x028
UARTLCR_H = 0x02C
UARTCR = 0x030
UARTIFLS = 0x034
UARTIMSC = 0x038
UARTRIS = 0x03C
UARTMIS = 0x040
UARTICR = 0x044
UARTDMACR = 0x048

PERIPH_ID = (0x11, 0x10, 0x34, 0x00)
"""PeriphID0-3: part number 0x011, designer 0x41 (ARM), revision 3 (r1p5), configuration 0."""
ID_BYTES = PERIPH_ID + CELL_ID

# UARTDR: received data and its error flags.
DR_DATA = 0xFF
DR_FE = 1 << 8
DR_PE = 1 << 9
DR_BE = 1 << 10
DR_OE = 1 << 11
DR_ERRORS = DR_FE | DR_PE | DR_BE | DR_OE

RSR_OE = 1 << 3
RSR_MASK = 0x0F  # FE, PE, BE, OE

# UARTFR.
FR_CTS = 1 << 0
FR_DSR = 1 << 1
FR_DCD = 1 << 2
FR_BUSY = 1 << 3
FR_RXFE = 1 << 4
FR_TXFF = 1 << 5
FR_RXFF = 1 << 6
FR_TXFE = 1 << 7
FR_RI = 1 << 8
FR_CONNECTED = FR_CTS | FR_DSR | FR_DCD  # what a driver expects of a cabled line

LCR_H_FEN = 1 << 4

CR_UARTEN = 1 << 0
CR_LBE = 1 << 7
CR_TXE = 1 << 8
CR_RXE = 1 << 9
CR_RESET = CR_TXE | CR_RXE  # 0x0300: transmitter and receiver enabled, the UART itself not

IFLS_RESET = 0x12  # both trigger levels at 1/2

# Interrupt bits, the same in UARTIMSC, UARTRIS, UARTMIS and UARTICR.
INT_RI = 1 << 0
INT_CTS = 1 << 1
INT_DCD = 1 << 2
INT_DSR = 1 << 3
INT_RX = 1 << 4
INT_TX = 1 << 5
INT_RT = 1 << 6
INT_FE = 1 << 7
INT_PE = 1 << 8
INT_BE = 1 << 9
INT_OE = 1 << 10
INT_MASK = 0x7FF

# The guest drains the receive FIFO at its own pace, so input is bounded by it: 32 entries is
# the r1p5 FIFO depth, the one the ID registers announce and drivers size their loops for.
RX_FIFO_SIZE = 32

# Writable bits of each stored register (TRM section 3.3); a write keeps only these.
_WRITABLE = {
    UARTILPR: 0xFF,
    UARTIBRD: 0xFFFF,
    UARTFBRD: 0x3F,
    UARTLCR_H: 0xFF,
    UARTCR: 0xFF87,  # bits 3-6 are reserved
    UARTIFLS: 0x3F,
    UARTIMSC: INT_MASK,
    UARTDMACR: 0x07,
}

_TRIGGER_EIGHTHS = (1, 2, 4, 6, 7)  # IFLS RXIFLSEL 0..4: 1/8, 1/4, 1/2, 3/4, 7/8


@dataclass
class Pl011State:
    """Everything needed to resume a PL011; defaults are the power-on state."""

    ilpr: int = 0
    ibrd: int = 0
    fbrd: int = 0
    lcr_h: int = 0
    cr: int = CR_RESET
    ifls: int = IFLS_RESET
    imsc: int = 0
    ris: int = 0
    dmacr: int = 0
    rsr: int = 0
    rx_fifo: tuple[int, ...] = ()  # 12-bit entries: data | error flags << 8
    lost_output_bytes: int = 0


def _validate(state: Pl011State) -> None:
    limits = {
        "ilpr": _WRITABLE[UARTILPR],
        "ibrd": _WRITABLE[UARTIBRD],
        "fbrd": _WRITABLE[UARTFBRD],
        "lcr_h": _WRITABLE[UARTLCR_H],
        "cr": _WRITABLE[UARTCR],
        "ifls": _WRITABLE[UARTIFLS],
        "imsc": INT_MASK,
        "ris": INT_MASK,
        "dmacr": _WRITABLE[UARTDMACR],
        "rsr": RSR_MASK,
    }
    for name, limit in limits.items():
        value = getattr(state, name)
        if not isinstance(value, int) or value < 0 or value & ~limit:
            raise ValueError(f"Pl011State.{name} = {value!r} is not a register value within {limit:#x}")
    if len(state.rx_fifo) > RX_FIFO_SIZE:
        raise ValueError(f"Pl011State.rx_fifo holds {len(state.rx_fifo)} entries, over {RX_FIFO_SIZE}")
    for entry in state.rx_fifo:
        if not isinstance(entry, int) or not 0 <= entry <= DR_DATA | DR_ERRORS:
            raise ValueError(f"Pl011State.rx_fifo entry {entry!r} is not a 12-bit UARTDR value")
    if not isinstance(state.lost_output_bytes, int) or state.lost_output_bytes < 0:
        raise ValueError(f"Pl011State.lost_output_bytes = {state.lost_output_bytes!r} is not a count")


class Pl011(BaseDeviceOps):
    """The UART's register window at ``base``; bytes leave through ``output``, interrupts
    through ``irq`` (the line of its GIC SPI)."""

    lost_output_bytes: int  # bytes the output sink refused; set by _load, kept across reset

    def __init__(
        self,
        irq: IrqLine,
        output: Callable[[bytes], object] | None = None,
        base: int = PL011_BASE,
        size: int = PL011_SIZE,
    ) -> None:
        if size < PL011_SIZE:
            raise ValueError(f"PL011 window {size:#x} is smaller than its {PL011_SIZE:#x} registers")
        self.base = base
        self._range = AddrRange.from_start_size(base, size)
        self._irq = irq
        self._output = output
        self._irq_level = False
        self._load(Pl011State())

    @classmethod
    def from_state(
        cls,
        state: Pl011State,
        irq: IrqLine,
        output: Callable[[bytes], object] | None = None,
        base: int = PL011_BASE,
        size: int = PL011_SIZE,
    ) -> Pl011:
        """A PL011 resumed from ``state``; ValueError if no PL011 could be in it.

        The new line is raised at once if the state has an unmasked interrupt pending.
        """
        _validate(state)
        uart = cls(irq, output, base, size)
        uart._load(state)
        return uart

    def restore(self, state: Pl011State) -> None:
        """Put this PL011 into ``state`` in place (a VM snapshot restored), keeping its line and
        sink; ValueError as ``from_state``."""
        _validate(state)
        self._load(state)

    def state(self) -> Pl011State:
        """A snapshot of the registers and the receive FIFO."""
        return Pl011State(
            ilpr=self._regs[UARTILPR],
            ibrd=self._regs[UARTIBRD],
            fbrd=self._regs[UARTFBRD],
            lcr_h=self._regs[UARTLCR_H],
            cr=self._regs[UARTCR],
            ifls=self._regs[UARTIFLS],
            imsc=self._regs[UARTIMSC],
            ris=self._ris,
            dmacr=self._regs[UARTDMACR],
            rsr=self._rsr,
            rx_fifo=tuple(self._rx),
            lost_output_bytes=self.lost_output_bytes,
        )

    def reset(self) -> None:
        """Return to the power-on state (a VM reset), lowering the line if it was raised."""
        lost = self.lost_output_bytes
        self._load(Pl011State())
        self.lost_output_bytes = lost

    def _load(self, state: Pl011State) -> None:
        self._regs = {
            UARTILPR: state.ilpr,
            UARTIBRD: state.ibrd,
            UARTFBRD: state.fbrd,
            UARTLCR_H: state.lcr_h,
            UARTCR: state.cr,
            UARTIFLS: state.ifls,
            UARTIMSC: state.imsc,
            UARTDMACR: state.dmacr,
        }
        self._ris = state.ris
        self._rsr = state.rsr
        self._rx = list(state.rx_fifo)
        self.lost_output_bytes = state.lost_output_bytes
        self._update_irq()

    # -- host side --------------------------------------------------------------------------

    @property
    def irq_level(self) -> bool:
        """Whether the UART is asserting its interrupt line."""
        return self._irq_level

    @property
    def fifo_depth(self) -> int:
        """Receive FIFO entries in use by the current mode: 32 with FIFOs enabled, else 1."""
        return RX_FIFO_SIZE if self._regs[UARTLCR_H] & LCR_H_FEN else 1

    @property
    def rx_space(self) -> int:
        """How many bytes ``push_input`` would accept now."""
        cr = self._regs[UARTCR]
        if cr & CR_LBE or cr & (CR_UARTEN | CR_RXE) != CR_UARTEN | CR_RXE:
            return 0
        return max(0, self.fifo_depth - len(self._rx))

    def push_input(self, data: bytes) -> int:
        """Queue received bytes; returns how many fit (the caller retries the rest).

        Nothing is accepted while the receiver is disabled or in loopback (the receiver is then
        fed from the transmitter, TRM UARTCR.LBE).
        """
        count = min(len(data), self.rx_space)
        if count <= 0:
            return 0
        for byte in data[:count]:
            self._receive(byte)
        self._line_idle()
        return count

    # -- the device trait ------------------------------------------------------------------

    @property
    def emu_type(self) -> EmuDeviceType:
        return EmuDeviceType.Console

    @property
    def address_range(self) -> AddrRange:
        return self._range

    def handle_read(self, addr: int, width: AccessWidth) -> int:
        offset = addr - self.base
        if offset % 4:
            return 0
        return self.read(offset) & width.mask

    def handle_write(self, addr: int, width: AccessWidth, value: int) -> None:
        offset = addr - self.base
        if offset % 4 == 0:
            self.write(offset, value & width.mask)

    # -- guest side, by register offset ----------------------------------------------------

    def read(self, offset: int) -> int:
        """The guest reads the register at ``offset``; unknown offsets read 0."""
        if offset == UARTDR:
            return self._read_dr()
        if offset == UARTRSR_ECR:
            return self._rsr
        if offset == UARTFR:
            return self._flags()
        if offset == UARTRIS:
            return self._ris
        if offset == UARTMIS:
            return self._ris & self._regs[UARTIMSC]
        if offset in self._regs:
            return self._regs[offset]
        return id_register(ID_BYTES, offset)

    def write(self, offset: int, value: int) -> None:
        """The guest writes the register at ``offset``; read-only and unknown offsets drop it."""
        if offset == UARTDR:
            self._transmit(value & DR_DATA)
        elif offset == UARTRSR_ECR:
            self._rsr = 0  # any write to UARTECR clears the latched errors
        elif offset == UARTICR:
            self._ris &= ~value
            self._update_irq()
        elif offset in _WRITABLE:
            self._regs[offset] = value & _WRITABLE[offset]
            if offset == UARTIMSC:
                self._update_irq()

    # -- internals -------------------------------------------------------------------------

    def _flags(self) -> int:
        level = len(self._rx)
        flags = FR_CONNECTED | FR_TXFE
        flags |= FR_RXFE if level == 0 else 0
        flags |= FR_RXFF if level >= self.fifo_depth else 0
        return flags

    def _rx_trigger(self) -> int:
        """The FIFO level at which RXRIS is set (TRM UARTIFLS)."""
        if not self._regs[UARTLCR_H] & LCR_H_FEN:
            return 1
        select = min((self._regs[UARTIFLS] >> 3) & 0x7, len(_TRIGGER_EIGHTHS) - 1)  # reserved: 7/8
        return RX_FIFO_SIZE * _TRIGGER_EIGHTHS[select] // 8

    def _receive(self, entry: int) -> None:
        """One character arrives at the receive FIFO (from the line or the loopback path)."""
        if len(self._rx) >= self.fifo_depth:
            self._rsr |= RSR_OE
            self._ris |= INT_OE
            if self._rx:
                self._rx[-1] |= DR_OE
            return
        self._rx.append(entry)
        if len(self._rx) == self._rx_trigger():
            self._ris |= INT_RX

    def _line_idle(self) -> None:
        """The receive line went quiet: the timeout interrupt stands while data waits."""
        if self._rx:
            self._ris |= INT_RT
        self._update_irq()

    def _read_dr(self) -> int:
        if not self._rx:
            return 0
        entry = self._rx.pop(0)
        self._rsr = (self._rsr & RSR_OE) | (entry & (DR_FE | DR_PE | DR_BE)) >> 8  # this character's errors
        if len(self._rx) < self._rx_trigger():
            self._ris &= ~INT_RX
        if not self._rx:
            self._ris &= ~INT_RT
        self._update_irq()
        return entry

    def _transmit(self, byte: int) -> None:
        if self._regs[UARTCR] & CR_LBE:
            self._receive(byte)
            self._ris |= INT_TX
            self._line_idle()
            return
        if self._output is not None:
            try:
                self._output(bytes((byte,)))
            except Exception:  # a failing sink loses the byte, never the VMM
                self.lost_output_bytes += 1
        self._ris |= INT_TX
        self._update_irq()

    def _update_irq(self) -> None:
        level = bool(self._ris & self._regs[UARTIMSC])
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)
