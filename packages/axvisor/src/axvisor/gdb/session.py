"""The GDB remote protocol's commands, sans-IO: ``GdbSession.receive(bytes) -> bytes``.

Theory of operation (GDB manual, appendix E: "Packets", "Stop Reply Packets", "General Query
Packets"). The session is stopped or running. While stopped it answers each packet at once from
its ``DebugTarget``; ``c``/``s``/``vCont`` start the target and answer nothing until the I/O
layer reports the stop with ``stopped()``, which returns the stop reply ``T05thread:N;``. A
0x03 byte while running asks the target to stop (it reports with SIGINT, ``T02``).

Threads are vCPUs: gdb's thread N is vCPU N - 1 (gdb reserves 0 for "any" and -1 for "all").
Continuing runs every vCPU; so does a step, until the stepped vCPU has run one instruction
(gdb's default scheduler-locking lets the others run meanwhile).

Whatever the peer sends, ``receive`` returns bytes and never raises: a malformed command gets
``E..``, an unknown one the empty reply (what the manual asks for), and an exception from the
target ``E01`` (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from .protocol import MAX_PACKET, BadPacket, Interrupt, Packet, PacketReader, frame, unescape
from .target_xml import Register, TargetDescription, target_xml

log = logging.getLogger(__name__)

SIGINT, SIGTRAP = 2, 5
MEMORY_MAX = (MAX_PACKET - 16) // 2
"""The most bytes one ``m`` answers (hex doubles them; the reply must fit a packet)."""


class BreakKind(IntEnum):
    """The Z/z packet types."""

    SOFTWARE = 0
    HARDWARE = 1
    WRITE_WATCH = 2
    READ_WATCH = 3
    ACCESS_WATCH = 4


@dataclass(frozen=True, slots=True)
class StopEvent:
    """Why the target stopped: ``vcpu`` is the vCPU that stopped it."""

    vcpu: int
    signal: int = SIGTRAP
    watch: tuple[BreakKind, int] | None = None
    """A watchpoint that fired: its kind and the data address."""


class DebugTarget(Protocol):
    """What the session drives: a VM, or a fake in tests. Called only while stopped, except
    ``interrupt``."""

    description: TargetDescription

    def threads(self) -> list[int]:
        """The vCPU indexes."""

    def read_register(self, vcpu: int, register: Register) -> int | None:
        """None: not available on this backend."""

    def write_register(self, vcpu: int, register: Register, value: int) -> bool: ...

    def read_memory(self, vcpu: int, addr: int, length: int) -> bytes:
        """As much of ``length`` as can be read from virtual ``addr`` (shorter at a fault)."""

    def write_memory(self, vcpu: int, addr: int, data: bytes) -> bool: ...

    def set_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool | None:
        """True set, False refused, None this kind is not supported."""

    def remove_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool | None: ...

    def resume(self, step: int | None) -> None:
        """Run every vCPU (``step`` None) or step vCPU ``step`` one instruction; the stop is
        reported to the session later."""

    def interrupt(self) -> None: ...

    def detach(self) -> None:
        """Remove breakpoints and let the target run on."""

    def kill(self) -> None: ...


class BadCommand(Exception):
    """A command whose arguments do not parse: answered E03."""


def _hex_int(text: bytes) -> int:
    if not text or len(text) > 32 or not all(c in b"0123456789abcdefABCDEF" for c in text):
        raise BadCommand(f"{text[:40]!r} is not a hex number")
    return int(text, 16)


def _thread_id(text: bytes) -> int:
    """A thread-id: -1 (all), 0 (any) or N; the ``pP.T`` multiprocess form takes T."""
    if text.startswith(b"p") and b"." in text:
        text = text.split(b".", 1)[1]
    if text == b"-1":
        return -1
    return _hex_int(text)


def _le(value: int, size: int) -> bytes:
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


class GdbSession:
    """One gdb connection's protocol state; see the module docstring."""

    def __init__(self, target: DebugTarget) -> None:
        self.target = target
        self.reader = PacketReader()
        self.running = False
        self.closed = False
        """Set by D or k: the I/O layer closes the connection after sending what it has."""
        self.bad_packets = 0
        self._threads = target.threads()
        self._g_thread = self._threads[0] if self._threads else 0
        self._last_stop = StopEvent(self._g_thread)
        self._no_ack_pending = False

    @property
    def current_vcpu(self) -> int:
        """The vCPU gdb looks at now (Hg, the last stop): where a Ctrl-C stop is reported."""
        return self._g_thread

    # -- I/O layer entry points -------------------------------------------------------------------

    def receive(self, data: bytes) -> bytes:
        """Bytes from the peer -> bytes to send back."""
        events, out = self.reader.feed(data)
        reply = bytearray(out)
        for event in events:
            if isinstance(event, Interrupt):
                if self.running:
                    self._call(self.target.interrupt)
                continue
            if isinstance(event, BadPacket):
                self.bad_packets += 1
                log.info("gdb: bad packet: %s", event.reason)
                continue
            answer = self._dispatch(event)
            if answer is not None:
                reply += frame(answer)
            if self._no_ack_pending:  # the OK to QStartNoAckMode was the last acknowledged one
                self.reader.ack = False
                self._no_ack_pending = False
            if self.closed:
                break
        return bytes(reply)

    def stopped(self, event: StopEvent) -> bytes:
        """The target stopped: the stop reply to send (nothing if no run was waiting for it)."""
        self._last_stop = event
        self._g_thread = event.vcpu
        if not self.running:
            return b""
        self.running = False
        return frame(self._stop_reply(event))

    # -- commands --------------------------------------------------------------------------------

    def _dispatch(self, packet: Packet) -> bytes | None:
        payload = packet.payload
        try:
            return self._command(payload)
        except BadCommand as error:
            log.info("gdb: %s", error)
            return b"E03"
        except Exception:  # a target failure answers an error, never ends the connection
            log.exception("gdb: command %r failed", payload[:40])
            return b"E01"

    def _call(self, function: Callable[[], object]) -> None:
        try:
            function()
        except Exception:
            log.exception("gdb: target call failed")

    def _command(self, payload: bytes) -> bytes | None:
        if not payload:
            return b""
        head, rest = payload[:1], payload[1:]
        if self.running and payload not in (b"?",):
            return None if head in b"cs" or payload.startswith(b"vCont;") else b"E04"
        handler = _SIMPLE.get(head)
        if handler is not None:
            return handler(self, rest)
        if payload.startswith(b"q") or payload.startswith(b"Q"):
            return self._query(payload)
        if payload.startswith(b"v"):
            return self._v_packet(payload)
        return b""

    def _stop_reply(self, event: StopEvent) -> bytes:
        thread = b"thread:%x;" % (event.vcpu + 1)
        if event.watch is not None:
            kind, addr = event.watch
            name = {BreakKind.READ_WATCH: b"rwatch", BreakKind.ACCESS_WATCH: b"awatch"}.get(kind, b"watch")
            return b"T%02x%s:%x;%s" % (event.signal, name, addr, thread)
        return b"T%02x%s" % (event.signal, thread)

    def _question(self, _rest: bytes) -> bytes:
        return self._stop_reply(self._last_stop)

    def _vcpu(self, thread: int) -> int:
        """The vCPU for a thread-id (0 and -1 mean the current one)."""
        if thread <= 0:
            return self._g_thread
        vcpu = thread - 1
        if vcpu not in self._threads:
            raise BadCommand(f"thread {thread} does not exist")
        return vcpu

    def _set_thread(self, rest: bytes) -> bytes:
        if rest[:1] not in (b"g", b"c"):
            raise BadCommand(f"H{rest[:8]!r}")
        thread = _thread_id(rest[1:])
        if rest[:1] == b"g":
            self._g_thread = self._vcpu(thread)
        return b"OK"

    def _thread_alive(self, rest: bytes) -> bytes:
        thread = _thread_id(rest)
        return b"OK" if thread > 0 and thread - 1 in self._threads else b"E01"

    def _read_all(self, _rest: bytes) -> bytes:
        out = bytearray()
        for register in self.target.description.registers:
            value = self.target.read_register(self._g_thread, register)
            out += b"xx" * register.size if value is None else _le(value, register.size).hex().encode()
        return bytes(out)

    def _write_all(self, rest: bytes) -> bytes:
        """Every register in the packet; one sent as ``xx..`` (unavailable) is left alone."""
        values: list[tuple[Register, int]] = []
        offset = 0
        for register in self.target.description.registers:
            text = rest[offset : offset + 2 * register.size]
            offset += 2 * register.size
            if len(text) < 2 * register.size:
                break
            if text.strip(b"xX"):
                values.append((register, int.from_bytes(self._unhex(text), "little")))
        for register, value in values:  # nothing written unless the whole packet parsed
            self.target.write_register(self._g_thread, register, value)
        return b"OK"

    def _register(self, regnum_text: bytes) -> Register:
        register = self.target.description.by_regnum(_hex_int(regnum_text))
        if register is None:
            raise BadCommand(f"no register {regnum_text!r}")
        return register

    def _read_one(self, rest: bytes) -> bytes:
        register = self._register(rest)
        value = self.target.read_register(self._g_thread, register)
        return b"xx" * register.size if value is None else _le(value, register.size).hex().encode()

    def _write_one(self, rest: bytes) -> bytes:
        regnum, _, value = rest.partition(b"=")
        register = self._register(regnum)
        data = self._unhex(value)
        if len(data) != register.size:
            raise BadCommand(f"register {register.name} takes {register.size} bytes, got {len(data)}")
        ok = self.target.write_register(self._g_thread, register, int.from_bytes(data, "little"))
        return b"OK" if ok else b"E01"

    @staticmethod
    def _unhex(text: bytes) -> bytes:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise BadCommand(f"{text[:40]!r} is not hex bytes") from None

    @staticmethod
    def _addr_length(text: bytes) -> tuple[int, int]:
        addr, comma, length = text.partition(b",")
        if not comma:
            raise BadCommand(f"{text[:40]!r}: expected ADDR,LENGTH")
        return _hex_int(addr), _hex_int(length)

    def _read_memory(self, rest: bytes) -> bytes:
        addr, length = self._addr_length(rest)
        length = min(length, MEMORY_MAX)
        if length == 0:
            return b""
        data = self.target.read_memory(self._g_thread, addr, length)
        return data.hex().encode() if data else b"E14"

    def _write_memory_hex(self, rest: bytes) -> bytes:
        where, colon, hexdata = rest.partition(b":")
        if not colon:
            raise BadCommand("M without ':'")
        addr, length = self._addr_length(where)
        data = self._unhex(hexdata)
        if len(data) != length:
            raise BadCommand(f"M says {length} bytes, carries {len(data)}")
        return self._write_memory(addr, data)

    def _write_memory_binary(self, rest: bytes) -> bytes:
        where, colon, raw = rest.partition(b":")
        if not colon:
            raise BadCommand("X without ':'")
        addr, length = self._addr_length(where)
        data = unescape(raw)
        if len(data) != length:
            raise BadCommand(f"X says {length} bytes, carries {len(data)}")
        return self._write_memory(addr, data)

    def _write_memory(self, addr: int, data: bytes) -> bytes:
        if not data:
            return b"OK"
        return b"OK" if self.target.write_memory(self._g_thread, addr, data) else b"E14"

    def _breakpoint(self, rest: bytes, insert: bool) -> bytes:
        fields = rest.split(b";", 1)[0].split(b",")
        if len(fields) != 3 or not fields[0].isdigit() or int(fields[0]) > 4:
            return b""  # a type we do not know: unsupported, as the manual asks
        kind = BreakKind(int(fields[0]))
        addr, length = _hex_int(fields[1]), _hex_int(fields[2])
        call = self.target.set_breakpoint if insert else self.target.remove_breakpoint
        result = call(kind, addr, length)
        if result is None:
            return b""
        return b"OK" if result else b"E0E"

    def _insert(self, rest: bytes) -> bytes:
        return self._breakpoint(rest, True)

    def _remove(self, rest: bytes) -> bytes:
        return self._breakpoint(rest, False)

    def _continue(self, rest: bytes) -> bytes | None:
        if rest:  # c ADDR: continue at ADDR
            self._set_pc(_hex_int(rest.split(b";")[0]))
        return self._go(None)

    def _step(self, rest: bytes) -> bytes | None:
        if rest:
            self._set_pc(_hex_int(rest.split(b";")[0]))
        return self._go(self._g_thread)

    def _set_pc(self, pc: int) -> None:
        register = self.target.description.by_regnum(self.target.description.pc_regnum)
        assert register is not None
        self.target.write_register(self._g_thread, register, pc)

    def _go(self, step: int | None) -> bytes | None:
        self.running = True
        self.target.resume(step)
        return None

    def _detach(self, _rest: bytes) -> bytes:
        self.closed = True
        self.target.detach()
        return b"OK"

    def _kill(self, _rest: bytes) -> bytes | None:
        self.closed = True
        self.target.kill()
        return None

    # -- q, Q and v packets -------------------------------------------------------------------------

    def _query(self, payload: bytes) -> bytes:
        name, _, args = payload.partition(b":")
        if name == b"qSupported":
            return b"PacketSize=%x;qXfer:features:read+;QStartNoAckMode+;vContSupported+" % MAX_PACKET
        if name == b"QStartNoAckMode":
            self._no_ack_pending = True
            return b"OK"
        if name == b"qXfer" and args.startswith(b"features:read:"):
            return self._features(args[len(b"features:read:") :])
        if payload == b"qfThreadInfo":
            return b"m" + b",".join(b"%x" % (vcpu + 1) for vcpu in self._threads)
        if payload == b"qsThreadInfo":
            return b"l"
        if payload == b"qC":
            return b"QC%x" % (self._g_thread + 1)
        if name == b"qAttached":
            return b"1"  # gdb detaches, never kills, when it quits
        if name.startswith(b"qThreadExtraInfo,"):
            vcpu = self._vcpu(_thread_id(name.split(b",", 1)[1]))
            return f"vCPU {vcpu}".encode().hex().encode()
        if name == b"qSymbol":
            return b"OK"
        return b""

    def _features(self, args: bytes) -> bytes:
        annex, colon, window = args.partition(b":")
        if not colon or annex != b"target.xml":
            return b"E00"
        offset, length = self._addr_length(window)
        text = target_xml(self._arch())
        chunk = text[offset : offset + min(length, MAX_PACKET // 2)]
        return (b"l" if offset + len(chunk) >= len(text) else b"m") + chunk

    def _arch(self) -> str:
        return "riscv64" if self.target.description.architecture.startswith("riscv") else "x86_64"

    def _v_packet(self, payload: bytes) -> bytes | None:
        if payload == b"vCont?":
            return b"vCont;c;C;s;S;t"
        if payload.startswith(b"vCont;"):
            return self._vcont(payload[len(b"vCont;") :])
        if payload.startswith(b"vKill"):
            return self._kill(b"") or b"OK"
        return b""

    def _vcont(self, actions: bytes) -> bytes | None:
        step: int | None = None
        any_continue = False
        for action in actions.split(b";"):
            verb, _, thread = action.partition(b":")
            if verb[:1] in (b"s", b"S"):
                step = self._vcpu(_thread_id(thread)) if thread else self._g_thread
                break  # stepping one vCPU: the others stay stopped until it has stepped
            if verb[:1] in (b"c", b"C"):
                any_continue = True
            elif verb[:1] != b"t":
                raise BadCommand(f"vCont action {verb[:8]!r}")
        if step is None and not any_continue:
            return b"OK"  # only 't': already stopped
        return self._go(step)


_SIMPLE = {
    b"?": GdbSession._question,
    b"H": GdbSession._set_thread,
    b"T": GdbSession._thread_alive,
    b"g": GdbSession._read_all,
    b"G": GdbSession._write_all,
    b"p": GdbSession._read_one,
    b"P": GdbSession._write_one,
    b"m": GdbSession._read_memory,
    b"M": GdbSession._write_memory_hex,
    b"X": GdbSession._write_memory_binary,
    b"Z": GdbSession._insert,
    b"z": GdbSession._remove,
    b"c": GdbSession._continue,
    b"s": GdbSession._step,
    b"D": GdbSession._detach,
    b"k": GdbSession._kill,
}
