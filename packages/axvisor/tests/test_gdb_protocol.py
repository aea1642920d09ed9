"""The gdb stub's protocol, sans-IO: framing, escaping, and every command against a fake VM.

The fuzz test is the network-peer rule: whatever bytes arrive, ``receive`` returns bytes and
never raises, and the session still answers a well-formed packet afterwards."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from axvisor.gdb.protocol import (
    MAX_PACKET,
    BadPacket,
    Interrupt,
    Packet,
    PacketReader,
    checksum,
    escape,
    frame,
    unescape,
)
from axvisor.gdb.session import BreakKind, GdbSession, StopEvent
from axvisor.gdb.target_xml import DESCRIPTIONS, RISCV_PRIV_REGNUM, Register, TargetDescription, target_xml


class FakeVm:
    """Two vCPUs, 64 KiB of memory at 0x8000_0000, registers in dicts."""

    def __init__(self, arch: str = "riscv64") -> None:
        self.description: TargetDescription = DESCRIPTIONS[arch]
        self.regs = [{r.name: 0x1000 * vcpu + r.regnum for r in self.description.registers} for vcpu in (0, 1)]
        self.memory = bytearray(range(256)) * 256
        self.base = 0x8000_0000
        self.breakpoints: set[tuple[BreakKind, int]] = set()
        self.resumed: list[int | None] = []
        self.interrupts = 0
        self.detached = self.killed = False

    def threads(self) -> list[int]:
        return [0, 1]

    def read_register(self, vcpu: int, register: Register) -> int | None:
        return None if register.name == "priv" else self.regs[vcpu][register.name]

    def write_register(self, vcpu: int, register: Register, value: int) -> bool:
        self.regs[vcpu][register.name] = value
        return True

    def read_memory(self, vcpu: int, addr: int, length: int) -> bytes:
        start = addr - self.base
        if not 0 <= start < len(self.memory):
            return b""
        return bytes(self.memory[start : start + length])

    def write_memory(self, vcpu: int, addr: int, data: bytes) -> bool:
        start = addr - self.base
        if not 0 <= start <= len(self.memory) - len(data):
            return False
        self.memory[start : start + len(data)] = data
        return True

    def set_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool | None:
        if kind >= BreakKind.WRITE_WATCH:
            return None
        self.breakpoints.add((kind, addr))
        return True

    def remove_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool | None:
        if kind >= BreakKind.WRITE_WATCH:
            return None
        self.breakpoints.discard((kind, addr))
        return True

    def resume(self, step: int | None) -> None:
        self.resumed.append(step)

    def interrupt(self) -> None:
        self.interrupts += 1

    def detach(self) -> None:
        self.detached = True

    def kill(self) -> None:
        self.killed = True


def ask(session: GdbSession, payload: bytes) -> bytes:
    """Send one packet; the payload of the one reply (after the '+')."""
    out = session.receive(frame(payload))
    assert out.startswith(b"+") or not session.reader.ack
    out = out.lstrip(b"+")
    if not out:
        return b""
    assert out[:1] == b"$" and out[-3:-2] == b"#", out
    body = out[1:-3]
    assert int(out[-2:], 16) == checksum(body)
    return unescape(body)


def make(arch: str = "riscv64") -> tuple[GdbSession, FakeVm]:
    vm = FakeVm(arch)
    return GdbSession(vm), vm


# -- framing ---------------------------------------------------------------------------------------


def test_frame_escapes_and_sums() -> None:
    assert frame(b"OK") == b"$OK#9a"
    assert frame(b"a#b") == b"$a}\x03b#" + b"%02x" % checksum(b"a}\x03b")
    assert unescape(escape(b"$#}*x")) == b"$#}*x"


def test_reader_splits_packets_interrupts_and_acks() -> None:
    reader = PacketReader()
    events, acks = reader.feed(b"+" + frame(b"g") + b"\x03" + frame(b"m0,1"))
    assert events[0] == Packet(b"g") and events[1] == Interrupt() and events[2] == Packet(b"m0,1")
    assert acks == b"++"


def test_reader_naks_a_bad_checksum_and_a_bad_digit() -> None:
    reader = PacketReader()
    events, acks = reader.feed(b"$g#00$g#+7")
    assert [type(e) for e in events] == [BadPacket, BadPacket] and acks == b"--"


def test_reader_bounds_a_packet() -> None:
    reader = PacketReader()
    body = b"a" * (MAX_PACKET + 10)
    events, acks = reader.feed(b"$" + body + b"#00")
    assert events == [BadPacket(f"longer than {MAX_PACKET} bytes")] and acks == b"-"
    events, _ = reader.feed(frame(b"g"))
    assert events == [Packet(b"g")]


def test_packet_across_feeds() -> None:
    reader = PacketReader()
    whole = frame(b"qSupported:multiprocess+")
    events: list[object] = []
    for byte in whole:
        events += reader.feed(bytes((byte,)))[0]
    assert events == [Packet(b"qSupported:multiprocess+")]


# -- commands --------------------------------------------------------------------------------------


def test_handshake_and_target_xml() -> None:
    session, _ = make()
    supported = ask(session, b"qSupported:multiprocess+;swbreak+")
    assert b"qXfer:features:read+" in supported and b"PacketSize=4000" in supported
    text = b""
    offset = 0
    while True:
        chunk = ask(session, b"qXfer:features:read:target.xml:%x,100" % offset)
        text += chunk[1:]
        offset += len(chunk) - 1
        if chunk[:1] == b"l":
            break
        assert chunk[:1] == b"m"
    assert text == target_xml("riscv64")
    assert b'<reg name="pc" bitsize="64" regnum="32"' in text
    assert b'name="sstatus" bitsize="64" regnum="321"' in text  # 65 + 0x100
    assert ask(session, b"?") == b"T05thread:1;"
    assert ask(session, b"qfThreadInfo") == b"m1,2" and ask(session, b"qsThreadInfo") == b"l"
    assert ask(session, b"qC") == b"QC1" and ask(session, b"qAttached") == b"1"
    assert ask(session, b"qUnknownThing") == b""


def test_no_ack_mode() -> None:
    session, _ = make()
    assert session.receive(frame(b"QStartNoAckMode")) == b"+" + frame(b"OK")
    assert session.receive(frame(b"qC")) == frame(b"QC1")


def test_registers_by_thread() -> None:
    session, vm = make()
    g = ask(session, b"g")
    pc = vm.description.by_regnum(32)
    assert pc is not None
    layout = vm.description.registers
    assert len(g) == 2 * sum(r.size for r in layout)
    assert g[32 * 16 : 33 * 16] == (32).to_bytes(8, "little").hex().encode()
    assert ask(session, b"p20") == (32).to_bytes(8, "little").hex().encode()
    assert ask(session, b"p%x" % RISCV_PRIV_REGNUM) == b"xx" * 8  # unavailable
    assert ask(session, b"Hg2") == b"OK"
    assert ask(session, b"p20") == (0x1000 + 32).to_bytes(8, "little").hex().encode()
    assert ask(session, b"P20=" + (0x8020_0000).to_bytes(8, "little").hex().encode()) == b"OK"
    assert vm.regs[1]["pc"] == 0x8020_0000 and vm.regs[0]["pc"] == 32
    assert ask(session, b"P20=00") == b"E03"  # wrong size
    assert ask(session, b"pzz") == b"E03" and ask(session, b"p9999") == b"E03"
    assert ask(session, b"Hg9") == b"E03" and ask(session, b"T2") == b"OK" and ask(session, b"T3") == b"E01"


def test_write_all_registers() -> None:
    session, vm = make()
    g = bytearray(ask(session, b"g"))
    g[0:16] = (0x55).to_bytes(8, "little").hex().encode()
    g[16:32] = b"zz" * 8
    assert ask(session, b"G" + bytes(g)) == b"E03" and vm.regs[0]["zero"] == 0  # nothing written
    g[16:32] = (7).to_bytes(8, "little").hex().encode()
    assert ask(session, b"G" + bytes(g)) == b"OK"
    assert vm.regs[0]["zero"] == 0x55 and vm.regs[0]["ra"] == 7
    assert vm.regs[0]["priv"] == RISCV_PRIV_REGNUM  # sent as xx: left alone


def test_memory() -> None:
    session, vm = make()
    assert ask(session, b"m80000010,4") == b"10111213"
    assert ask(session, b"m1000,4") == b"E14"
    assert ask(session, b"M80000000,2:abcd") == b"OK" and vm.memory[:2] == b"\xab\xcd"
    body = b"X80000004,3:" + escape(b"#$}")  # escaped once, as gdb sends it
    assert session.receive(b"$" + body + b"#%02x" % checksum(body)) == b"+" + frame(b"OK")
    assert vm.memory[4:7] == b"#$}"
    assert ask(session, b"M80000000,3:abcd") == b"E03"  # length disagrees
    assert ask(session, b"M1000,1:00") == b"E14"
    assert ask(session, b"m80000000") == b"E03"
    big = ask(session, b"m80000000,ffffffff")
    assert 0 < len(big) <= MAX_PACKET


def test_breakpoints_and_watchpoints() -> None:
    session, vm = make()
    assert ask(session, b"Z0,80200000,4") == b"OK" and (BreakKind.SOFTWARE, 0x8020_0000) in vm.breakpoints
    assert ask(session, b"Z1,80200010,2") == b"OK"
    assert ask(session, b"z0,80200000,4") == b"OK" and (BreakKind.SOFTWARE, 0x8020_0000) not in vm.breakpoints
    assert ask(session, b"Z2,80001000,8") == b""  # not supported by this target
    assert ask(session, b"Z9,0,0") == b""
    assert ask(session, b"Z0,zz,4") == b"E03"


def test_continue_stop_and_interrupt() -> None:
    session, vm = make()
    assert ask(session, b"vCont?") == b"vCont;c;C;s;S;t"
    assert ask(session, b"c") == b"" and session.running and vm.resumed == [None]
    assert session.receive(b"\x03") == b"" and vm.interrupts == 1
    assert session.stopped(StopEvent(1, 2)) == frame(b"T02thread:2;")
    assert not session.running and ask(session, b"qC") == b"QC2"
    assert session.stopped(StopEvent(0)) == b""  # nobody waits: nothing to send
    assert ask(session, b"vCont;s:2;c") == b"" and vm.resumed[-1] == 1
    assert session.stopped(StopEvent(1)) == frame(b"T05thread:2;")
    assert ask(session, b"s") == b"" and vm.resumed[-1] == 1
    watch = StopEvent(0, watch=(BreakKind.WRITE_WATCH, 0x8000_1000))
    assert session.stopped(watch) == frame(b"T05watch:80001000;thread:1;")
    assert ask(session, b"c80200000") == b"" and vm.regs[0]["pc"] == 0x8020_0000


def test_detach_and_kill() -> None:
    session, vm = make()
    assert ask(session, b"D") == b"OK" and vm.detached and session.closed
    session, vm = make()
    assert ask(session, b"k") == b"" and vm.killed and session.closed


def test_x86_description_numbering() -> None:
    description = DESCRIPTIONS["x86_64"]
    names = {r.regnum: r.name for r in description.registers}
    assert names[0] == "rax" and names[7] == "rsp" and names[16] == "rip" and names[17] == "eflags"
    assert names[24] == "st0" and names[40] == "xmm0" and names[56] == "mxcsr"
    session, _ = make("x86_64")
    assert ask(session, b"?") == b"T05thread:1;"
    xml = target_xml("x86_64")
    assert b'<union id="vec128">' in xml and b"i386:x86-64" in xml


class RaisingVm(FakeVm):
    def read_register(self, vcpu: int, register: Register) -> int | None:
        raise RuntimeError("the vCPU left the pause")


def test_target_failure_is_an_error_reply() -> None:
    session = GdbSession(RaisingVm())
    assert ask(session, b"g") == b"E01"
    assert ask(session, b"qC") == b"QC1"


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.builds(lambda b: frame(b), st.binary(max_size=120)),
            st.builds(
                lambda c, a: frame(c + a),
                st.sampled_from(list(b"?HTgGpPmMXZzcsDkqQv")).map(lambda c: bytes((c,))),
                st.binary(max_size=60),
            ),
        ),
        max_size=12,
    )
)
def test_fuzz_never_raises(chunks: list[bytes]) -> None:
    session, vm = make()
    for chunk in chunks:
        out = session.receive(chunk)
        assert isinstance(out, bytes)
        if session.closed:
            return
        if session.running:
            session.stopped(StopEvent(0))
    session.reader.feed(b"#00")  # end a packet the fuzz left open
    assert ask(session, b"qC").startswith(b"QC")
