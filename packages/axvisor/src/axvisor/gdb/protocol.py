"""GDB remote serial protocol framing, sans-IO: bytes in, packets out; packets in, bytes out.

Theory of operation (GDB manual, appendix E.1 "Overview"). A packet is ``$payload#cc`` where
``cc`` is the modulo-256 sum of the payload bytes in two hex digits. The payload escapes ``#``,
``$``, ``}`` and ``*`` as ``}`` followed by the byte XOR 0x20. The receiver acknowledges each
packet with ``+`` (or asks again with ``-``) until both sides agree on ``QStartNoAckMode``. A
lone 0x03 byte outside a packet is an interrupt request (Ctrl-C in gdb).

``PacketReader.feed`` turns whatever bytes arrived into ``Packet``, ``Interrupt`` and
``BadPacket`` events and says what to answer (``+``/``-``). It never raises: the peer is on a
network, and a damaged, overlong or truncated packet becomes ``BadPacket`` with a ``-``.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PACKET = 0x4000
"""The largest payload accepted (and announced as ``PacketSize``): a longer one is dropped as
BadPacket so a peer cannot make the reader buffer without bound."""

INTERRUPT_BYTE = 0x03
_ESCAPED = frozenset(b"#$}*")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Packet:
    """A well-formed packet; ``payload`` is still escaped (only X and vFile carry binary)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Interrupt:
    """The peer sent 0x03 outside a packet."""


@dataclass(frozen=True, slots=True)
class BadPacket:
    """A packet that could not be taken: bad checksum, bad hex, too long."""

    reason: str


Event = Packet | Interrupt | BadPacket


def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def escape(data: bytes) -> bytes:
    """Escape the bytes that may not appear in a packet payload as they are."""
    if not any(byte in _ESCAPED for byte in data):
        return data
    out = bytearray()
    for byte in data:
        if byte in _ESCAPED:
            out += bytes((0x7D, byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    """Undo ``escape``; a trailing lone ``}`` is dropped (the peer cut its own packet)."""
    if 0x7D not in data:
        return data
    out = bytearray()
    escaped = False
    for byte in data:
        if escaped:
            out.append(byte ^ 0x20)
            escaped = False
        elif byte == 0x7D:
            escaped = True
        else:
            out.append(byte)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """``$payload#cc`` with the payload escaped."""
    body = escape(payload)
    return b"$" + body + b"#" + b"%02x" % checksum(body)


class PacketReader:
    """Splits a byte stream into events; ``ack`` False once no-ack mode is agreed."""

    def __init__(self) -> None:
        self.ack = True
        self._body = bytearray()
        self._state = "idle"  # idle, body, sum1, sum2
        self._sum = b""
        self._overlong = False

    def feed(self, data: bytes) -> tuple[list[Event], bytes]:
        """Events for ``data`` and the acknowledgement bytes to send back now."""
        events: list[Event] = []
        acks = bytearray()
        for byte in data:
            event = self._byte(byte)
            if event is None:
                continue
            events.append(event)
            if self.ack and not isinstance(event, Interrupt):
                acks += b"+" if isinstance(event, Packet) else b"-"
        return events, bytes(acks)

    def _byte(self, byte: int) -> Event | None:
        state = self._state
        if state == "idle":
            if byte == 0x24:  # $
                self._start()
            elif byte == INTERRUPT_BYTE:
                return Interrupt()
            return None  # '+', '-' and noise between packets
        if state == "body":
            if byte == 0x23:  # #
                self._state = "sum1"
            elif byte == 0x24:  # a new packet before this one ended: the peer gave up on it
                self._start()
            elif len(self._body) >= MAX_PACKET:
                self._overlong = True
            else:
                self._body.append(byte)
            return None
        if state == "sum1":
            self._sum = bytes((byte,))
            self._state = "sum2"
            return None
        self._state = "idle"
        return self._finish(self._sum + bytes((byte,)))

    def _start(self) -> None:
        self._body.clear()
        self._overlong = False
        self._state = "body"

    def _finish(self, digits: bytes) -> Event:
        if self._overlong:
            return BadPacket(f"longer than {MAX_PACKET} bytes")
        if not all(digit in _HEX_DIGITS for digit in digits):
            return BadPacket(f"checksum {digits!r} is not two hex digits")
        expected = int(digits, 16)
        body = bytes(self._body)
        if expected != checksum(body) and self.ack:
            return BadPacket(f"checksum {expected:#04x}, computed {checksum(body):#04x}")
        return Packet(body)
