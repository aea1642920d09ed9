"""One ``axvisor run``: the VMs, the console, and the one way out.

The main thread starts a supervisor per VM and the console, then sleeps until something gives
it a reason to end: the last VM ends, Ctrl-A x, a stop signal (``shutdown.StopRequest``), or an
exception in the VMM. Whatever the reason, it then takes the same path, in this order:

1. every VM still running is asked to stop (its vCPUs are kicked out of the guest);
2. each supervisor is joined: it joins its vCPU threads, flushes the VM's writable disks and
   only then releases engines, host resources and guest memory (``vmm.RunningVm.wait``);
3. the console's input thread is stopped and joined;
4. the terminal settings saved at start are restored (also when step 1-3 raised).

The exit status then says what happened (``exit_status``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable

from axvm import AxVM, AxVMCrateConfig

from .console import ConsoleMux, Terminal, pump_stdin, vm_console_target
from .shutdown import StopRequest
from .vmm import VmOutcome, VmSupervisor, summarise

VMM_FAILURE = (1, "stopped: the VMM failed")
"""The outcome of VMs stopped because the VMM itself raised (the traceback follows)."""


def run_session(
    vms: list[AxVM], mux: ConsoleMux, build: Callable[[AxVMCrateConfig], AxVM], stop: StopRequest, terminal: Terminal
) -> list[VmOutcome]:
    """Run ``vms`` (rebuilt with ``build`` after a guest reset) until the run ends, then stop
    and release every VM and restore the terminal; returns how each VM ended."""
    several = len(vms) > 1

    def ended(supervisor: VmSupervisor) -> None:
        if several and supervisor.outcome is not None:  # say on the terminal (and in its log) when a VM ends
            mux.mark_ended(name_of[id(supervisor)], supervisor.outcome.reason)
        stop.wake()

    supervisors = [VmSupervisor(vm, build, on_end=ended) for vm in vms]
    name_of = {id(supervisor): name for supervisor, name in zip(supervisors, mux.names, strict=True)}
    stop_input = threading.Event()
    pump: threading.Thread | None = None
    cause: tuple[int, str] | None = VMM_FAILURE  # unless the loop below ends normally
    try:
        for supervisor in supervisors:
            mux.set_target(name_of[id(supervisor)], vm_console_target(_current_vm(supervisor)))
        if terminal.interactive:
            terminal.raw()
            console = mux.console_input(stop.request_quit)
            pump = threading.Thread(
                target=pump_stdin, args=(console, stop_input, terminal.fd), daemon=True, name="console"
            )
            pump.start()
        mux.announce()
        for supervisor in supervisors:
            supervisor.start()
        while not stop.requested and not all(supervisor.ended for supervisor in supervisors):
            stop.wait()
        cause = stop.settle()
    finally:
        try:
            outcomes = _stop_all(supervisors, cause)
        finally:
            stop_input.set()
            if pump is not None:
                pump.join()
            terminal.restore()
    return outcomes


def _current_vm(supervisor: VmSupervisor) -> Callable[[], AxVM]:
    """The VM a supervisor runs now (a guest reset replaces it)."""
    return lambda: supervisor.vm


def _stop_all(supervisors: list[VmSupervisor], cause: tuple[int, str] | None) -> list[VmOutcome]:
    """Steps 1 and 2: ask every VM to stop, then wait until each is joined and released."""
    if cause is not None:
        for supervisor in supervisors:
            supervisor.stop(*cause)
    return [supervisor.join() for supervisor in supervisors]


def exit_status(outcomes: list[VmOutcome], stop: StopRequest) -> int:
    """128 + the signal that stopped the run; else the first VM's non-zero status (a guest's
    power-off code, 1 for a failure), else 0."""
    signalled = stop.exit_status
    return signalled if signalled is not None else summarise(outcomes)


def report(outcomes: list[VmOutcome], stop: StopRequest, mid_line: bool = False) -> int:
    """One line on stderr per VM that did not end with 0 (the first on a line of its own when
    the guest left the terminal ``mid_line``), then the exit status."""
    lines = [f"axvisor: VM {outcome.name!r}: {outcome.reason}" for outcome in outcomes if outcome.exit_code]
    if lines and mid_line:
        say("")
    for line in lines:
        say(line)
    quiet_if_gone()
    return exit_status(outcomes, stop)


def say(line: str) -> None:
    """A line on stderr that a hung-up terminal loses instead of raising."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def quiet_if_gone() -> None:
    """Point stdout and stderr at /dev/null when the terminal behind them is gone, so the
    interpreter's final flush cannot fail (which would turn the exit status into 120)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            with contextlib.suppress(OSError, ValueError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, stream.fileno())
                os.close(null)
