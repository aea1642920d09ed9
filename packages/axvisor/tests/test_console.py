"""The console with fakes: escape keys, input for the focused VM, output to terminal and logs."""

from __future__ import annotations

import errno
import os
import pty
import termios
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from axvisor.console import ConsoleInput, ConsoleMux, pump_stdin, vm_console_target
from axvisor.console import Terminal as TerminalSettings
from axvisor.errors import UserError

CTRL_A = b"\x01"


class FakePort:
    """A console taking at most ``room`` bytes per push, as a UART with a small FIFO."""

    def __init__(self, room: int = 1 << 20) -> None:
        self.room = room
        self.received = bytearray()

    def push_input(self, data: bytes) -> int:
        taken = data[: self.room]
        self.received += taken
        return len(taken)


class Terminal:
    def __init__(self) -> None:
        self.data = bytearray()

    def __call__(self, data: bytes) -> None:
        self.data += data

    @property
    def text(self) -> str:
        return self.data.decode()


def target_of(port: FakePort):
    lock = threading.Lock()
    return lambda: (port, lock)


@pytest.fixture
def mux(tmp_path: Path) -> Iterator[ConsoleMux]:
    mux = ConsoleMux(["vm1", "vm2", "vm3"], log_dir=tmp_path / "logs", write=Terminal())
    yield mux
    mux.close()


def terminal(mux: ConsoleMux) -> Terminal:
    return mux._write  # the fake handed to the mux


# -- ConsoleInput ---------------------------------------------------------------------------


def test_input_goes_to_the_target_and_waits_when_it_is_full() -> None:
    port = FakePort(room=4)
    console = ConsoleInput(target_of(port), on_quit=lambda: None, echo=lambda data: None)
    console.feed(b"hello world")
    assert port.received == b"hell" and console.pending == b"o world"
    while not console.flush():
        pass
    assert port.received == b"hello world"


def test_escapes_quit_send_a_literal_ctrl_a_and_print_help() -> None:
    port, quits, echoed = FakePort(), [], []
    console = ConsoleInput(target_of(port), on_quit=lambda: quits.append(1), echo=echoed.append)
    console.feed(b"a" + CTRL_A + CTRL_A + b"b" + CTRL_A + b"h")
    assert port.received == b"a\x01b" and len(echoed) == 1 and b"Ctrl-A x: quit" in echoed[0]
    assert b"Ctrl-A n" not in echoed[0]  # no next VM to switch to
    console.feed(CTRL_A)  # the escape may end one read and its key start the next
    console.feed(b"x")
    assert quits == [1] and port.received == b"a\x01b"


def test_ctrl_a_n_switches_and_drops_what_the_old_vm_could_not_take() -> None:
    old, new = FakePort(room=2), FakePort()
    current = [old]
    lock = threading.Lock()
    console = ConsoleInput(lambda: (current[0], lock), lambda: None, lambda data: None,
                           on_next=lambda: current.__setitem__(0, new))
    console.feed(b"abcd" + CTRL_A + b"n" + b"ef")
    assert old.received == b"ab" and new.received == b"ef" and console.dropped == 2


def test_input_for_a_vm_without_a_console_is_dropped() -> None:
    console = ConsoleInput(lambda: None, lambda: None, lambda data: None)
    console.feed(b"abc")
    assert console.pending == b"" and console.dropped == 3


# -- ConsoleMux -----------------------------------------------------------------------------


def test_focused_output_reaches_the_terminal_and_every_output_its_log(mux: ConsoleMux, tmp_path: Path) -> None:
    sinks = {name: mux.sink_for(name) for name in mux.names}
    sinks["vm1"](b"one\n")
    sinks["vm2"](b"two\n")
    sinks["vm3"](b"three\n")
    assert terminal(mux).data == b"one\n"
    logs = tmp_path / "logs"
    assert [(logs / f"vm{n}.log").read_bytes() for n in (1, 2, 3)] == [b"one\n", b"two\n", b"three\n"]


def test_ctrl_a_n_moves_output_and_input_to_the_next_vm(mux: ConsoleMux, tmp_path: Path) -> None:
    ports = {name: FakePort() for name in mux.names}
    for name, port in ports.items():
        mux.set_target(name, target_of(port))
    console = mux.console_input(on_quit=lambda: None)
    sinks = {name: mux.sink_for(name) for name in mux.names}
    console.feed(b"to1")
    console.feed(CTRL_A + b"n")
    assert mux.focused == "vm2"
    assert terminal(mux).text.endswith(f"\r\n[axvisor] console: vm2 (Ctrl-A n: next; logs: {tmp_path}/logs/vm1.log, "
                                       f"{tmp_path}/logs/vm2.log, {tmp_path}/logs/vm3.log)\r\n")
    terminal(mux).data.clear()
    sinks["vm1"](b"quiet")
    sinks["vm2"](b"loud")
    console.feed(b"to2")
    assert terminal(mux).data == b"loud"
    assert ports["vm1"].received == b"to1" and ports["vm2"].received == b"to2"
    console.feed(CTRL_A + b"n" + CTRL_A + b"n")
    assert mux.focused == "vm1"  # round the ring


def test_ctrl_a_x_quits_from_any_vm(mux: ConsoleMux) -> None:
    quits = []
    console = mux.console_input(on_quit=lambda: quits.append(mux.focused))
    console.feed(CTRL_A + b"n" + CTRL_A + b"x")
    assert quits == ["vm2"]


def test_help_mentions_switching(mux: ConsoleMux) -> None:
    mux.console_input(on_quit=lambda: None).feed(CTRL_A + b"h")
    assert "Ctrl-A n: next VM" in terminal(mux).text


def test_the_status_line_is_announced_only_for_several_vms(tmp_path: Path) -> None:
    several, one = Terminal(), Terminal()
    with ConsoleMux(["a", "b"], log_dir=tmp_path, write=several) as mux:
        mux.announce()
    with ConsoleMux(["a"], log_dir=tmp_path, write=one) as mux:
        mux.announce()
    assert several.text == f"\r\n[axvisor] console: a (Ctrl-A n: next; logs: {tmp_path}/a.log, {tmp_path}/b.log)\r\n"
    assert one.text == ""


def test_an_ended_vm_is_announced_and_skipped(mux: ConsoleMux, tmp_path: Path) -> None:
    mux.mark_ended("vm2", "powered off with status 0")
    assert "[axvisor] vm2: powered off with status 0" in terminal(mux).text
    assert b"powered off" in (tmp_path / "logs" / "vm2.log").read_bytes()
    assert mux.focus_next() == "vm3"
    mux.mark_ended("vm1", "failed")
    mux.mark_ended("vm3", "failed")
    assert mux.focus_next() == "vm1"  # all ended: plain round robin, the logs stay readable


def test_logs_append_and_the_directory_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AXVISOR_LOG_DIR", str(tmp_path / "env"))
    for run in (b"first\n", b"second\n"):
        with ConsoleMux(["vm"], write=Terminal()) as mux:
            mux.sink_for("vm")(run)
    assert (tmp_path / "env" / "vm.log").read_bytes() == b"first\nsecond\n"


def test_the_default_log_directory_is_in_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AXVISOR_LOG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with ConsoleMux(["a", "b"], write=Terminal()) as mux:
        assert mux.status_line().decode().strip() == (
            "[axvisor] console: a (Ctrl-A n: next; logs: axvisor-logs/a.log, axvisor-logs/b.log)")
    assert (tmp_path / "axvisor-logs" / "b.log").exists()


def test_names_are_made_distinct_and_safe_for_files(tmp_path: Path) -> None:
    with ConsoleMux(["linux", "linux", "a/b", "", ".."], log_dir=tmp_path, write=Terminal()) as mux:
        assert mux.names == ["linux", "linux-2", "a_b", "vm3", "vm.."]
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted(f"{n}.log" for n in mux.names)
        with pytest.raises(KeyError, match="no VM 'nope'"):
            mux.sink_for("nope")


def test_an_unusable_log_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError) as caught:
        ConsoleMux(["vm"], log_dir=blocker / "logs", write=Terminal())
    assert str(caught.value) == (f"console log directory {blocker}/logs: cannot create it: Not a directory; "
                                 "set AXVISOR_LOG_DIR to a writable directory")


def test_output_from_many_threads_is_complete_and_never_interleaved_within_a_write(tmp_path: Path) -> None:
    term = Terminal()
    with ConsoleMux(["a", "b"], log_dir=tmp_path, write=term) as mux:
        sinks = [mux.sink_for("a"), mux.sink_for("b")]
        chunk = {0: b"A" * 64, 1: b"B" * 64}

        def vcpu(which: int) -> None:
            for _ in range(300):
                sinks[which](chunk[which])

        threads = [threading.Thread(target=vcpu, args=(n % 2,)) for n in range(4)]
        switcher = threading.Thread(target=lambda: [mux.focus_next() for _ in range(50)])
        for thread in [*threads, switcher]:
            thread.start()
        for thread in [*threads, switcher]:
            thread.join()
    assert (tmp_path / "a.log").read_bytes() == b"A" * 64 * 600
    assert (tmp_path / "b.log").read_bytes() == b"B" * 64 * 600
    body = term.text.replace("\r\n", "\n")
    for line in body.split("\n"):
        if not line.startswith("[axvisor]"):
            assert set(line) <= {"A", "B"} and all(len(run) % 64 == 0 for run in _runs(line))


def _runs(text: str) -> list[str]:
    runs: list[str] = []
    for ch in text:
        if runs and runs[-1][-1] == ch:
            runs[-1] += ch
        else:
            runs.append(ch)
    return runs


def test_vm_console_target_follows_the_current_vm() -> None:
    uart, virtio = FakePort(), FakePort()
    lock = threading.Lock()
    vms = [SimpleNamespace(consoles=[uart], virtio_consoles=[], device_lock=lock)]
    target = vm_console_target(lambda: vms[0])
    assert target() == (uart, lock)
    vms[0] = SimpleNamespace(consoles=[], virtio_consoles=[virtio], device_lock=lock)  # after a reset
    assert target() == (virtio, lock)
    vms[0] = SimpleNamespace(consoles=[], virtio_consoles=[], device_lock=lock)
    assert target() is None


def test_the_terminal_is_restored_to_its_settings_at_start() -> None:
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        terminal = TerminalSettings(slave)
        assert terminal.interactive
        terminal.raw()
        assert termios.tcgetattr(slave) != before  # raw: no echo, no line editing
        assert terminal.restore()
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_restoring_a_hung_up_terminal_says_so_and_does_not_raise() -> None:
    master, slave = pty.openpty()
    terminal = TerminalSettings(slave)
    os.close(slave)  # the terminal is gone
    os.close(master)
    assert terminal.restore() is False
    assert TerminalSettings(None).restore() and not TerminalSettings(None).interactive


def test_a_terminal_that_is_gone_loses_output_but_never_the_vm(tmp_path: Path) -> None:
    def hung_up(data: bytes) -> None:
        raise OSError(errno.EIO, "Input/output error")

    mux = ConsoleMux(["vm"], log_dir=tmp_path, write=hung_up)
    mux.sink_for("vm")(b"still logged\n")
    mux.mark_ended("vm", "powered off")
    mux.echo(b"help")
    mux.close()
    assert mux.terminal_errors == 3
    assert (tmp_path / "vm.log").read_bytes().startswith(b"still logged\n")


def test_console_input_ends_when_the_terminal_hangs_up() -> None:
    master, slave = pty.openpty()
    console = ConsoleInput(lambda: None, lambda: None, lambda data: None)
    os.close(master)  # reads of the other end now fail with EIO
    try:
        pump_stdin(console, threading.Event(), slave)  # returns instead of raising on its thread
    finally:
        os.close(slave)
