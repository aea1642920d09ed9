"""``axvisor run CONFIG --gdb tcp:PORT|unix:PATH [--paused]``: one VM with the gdb stub.

The VM runs in a ``VmManager`` (the stub needs its pause), its console on stdout and stdin
forwarded to it line by line; with ``--paused`` no guest instruction runs before gdb
continues it. The run ends when the VM does (its power-off status is the exit status, 1 when
it failed) or on SIGINT (130). Bad input (the config, the address, a busy port) is one line
and status 2, as for ``axvisor run``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence

from ..errors import UserError
from ..manager import BadRequest, VmManager
from ..vmtypes import VMState
from .server import GdbAddressError, parse_address

POLL_SECONDS = 0.1


def run_with_gdb(paths: Sequence[str], address: str | None, paused: bool) -> int:
    if address is None:
        raise UserError("axvisor run: --paused waits for gdb: give --gdb tcp:PORT or --gdb unix:PATH too")
    if len(paths) != 1:
        raise UserError(f"axvisor run --gdb: debugs one VM: give one CONFIG, not {len(paths)}")
    try:
        parse_address(address)
    except GdbAddressError as error:
        raise UserError(f"axvisor run --gdb: {error}") from None
    out = sys.stdout.buffer

    def echo(_vm_id: int, data: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):
            out.write(data)
            out.flush()

    manager = VmManager(console_echo=echo)
    try:
        try:
            vm_id = manager.create(paths[0]).id
            bound = manager.gdb_serve(vm_id, address)
        except BadRequest as error:
            raise UserError(error.message if error.field == "config" else str(error)) from None
        where = bound.removeprefix("tcp:") if bound.startswith("tcp:") else bound.removeprefix("unix:")
        state = "paused before its first instruction" if paused else "running"
        print(f"axvisor: gdb stub on {bound} (VM {state}); in gdb-multiarch: target remote {where}", file=sys.stderr)
        manager.start(vm_id, paused=paused)
        _forward_stdin(manager, vm_id)
        try:
            while (info := manager.get(vm_id)).state not in (VMState.STOPPED, VMState.FAILED):
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            return 130
        if info.state is VMState.FAILED:
            print(f"axvisor: VM {info.name!r}: {info.reason}", file=sys.stderr)
            return 1
        return min(info.exit_code or 0, 255)
    finally:
        manager.close()


def _forward_stdin(manager: VmManager, vm_id: int) -> None:
    """Console input, as the terminal hands it over (cooked: a line at a time)."""

    def pump() -> None:
        while True:
            try:
                data = os.read(0, 4096)
            except OSError:
                return
            if not data:
                return
            try:
                manager.console_input(vm_id, data)
            except Exception:  # the VM or the manager has gone: nothing left to type into
                return

    threading.Thread(target=pump, daemon=True, name="gdb-run-stdin").start()
