"""The command-line side of operating VMs: ``axvisor serve``, ``axvisor shell``, ``axvisor ctl``.

Kept apart from cli.py (run, check, generate, info) and importing the API and shell modules
only when one of these commands runs, so ``axvisor run`` does not pay for aiohttp or
prompt_toolkit at start-up.
"""

from __future__ import annotations

import argparse
from typing import Any

OPERATE_COMMANDS = ("serve", "shell", "ctl")

SERVE_DESCRIPTION = """\
Run the VMM as a service: create and start the VMs of any CONFIG given, serve the management API
on a Unix socket (mode 0600) and optionally on a loopback TCP port with a bearer token, until
SIGINT or SIGTERM; then every VM is stopped in order. Each VM's console goes to a log file.

socket: --sock PATH, else $AXVISOR_SOCK, else $XDG_RUNTIME_DIR/axvisor/axvisor.sock, else
/tmp/axvisor-$UID/axvisor.sock.

exit status: 128+N when stopped by signal N (130 SIGINT, 143 SIGTERM); 2 for a bad config or flag."""

SHELL_DESCRIPTION = """\
AxVisor's vm shell over VMs in this process: vm create/start/stop/suspend/resume/reset/restart/
delete/list/show/console, plus vm mem, vm regs, vm translate, vm gdb; 'help' lists them. CONFIG
files are created (Ready) at start. 'exit' or Ctrl-D stops every VM and leaves."""

CTL_DESCRIPTION = """\
One vm shell command, carried out by a running 'axvisor serve' over its API, e.g.
  axvisor ctl vm list -a
  axvisor ctl --sock /tmp/a.sock vm create -n web configs/vms/uboot-riscv64-virt-smp1.toml
exit status: 0; 1 when the server refused (unknown VM, wrong state ...); 2 when misused."""


def add_operate_parsers(commands: Any, only: str | None = None) -> None:
    """Add serve, shell and ctl to cli.py's subcommands; with ``only``, the arguments of that
    command alone (see cli.build_parser)."""
    raw = argparse.RawDescriptionHelpFormatter
    serve = commands.add_parser(
        "serve",
        help="run VMs as a service operated through the management API",
        description=SERVE_DESCRIPTION,
        formatter_class=raw,
    )
    if only in (None, "serve"):
        serve.add_argument("configs", nargs="*", metavar="CONFIG")
        serve.add_argument("--sock", metavar="PATH", help="the Unix socket to listen on")
        serve.add_argument("--listen", metavar="ADDRESS:PORT", help="also listen on this loopback TCP address")
        serve.add_argument(
            "--token-file", metavar="FILE", help="the bearer token TCP clients must send (with --listen)"
        )
    shell = commands.add_parser(
        "shell", help="AxVisor's interactive vm shell", description=SHELL_DESCRIPTION, formatter_class=raw
    )
    if only in (None, "shell"):
        shell.add_argument("configs", nargs="*", metavar="CONFIG")
    ctl = commands.add_parser(
        "ctl",
        help="one vm command carried out by a running 'axvisor serve'",
        description=CTL_DESCRIPTION,
        formatter_class=raw,
    )
    if only in (None, "ctl"):
        ctl.add_argument("--sock", metavar="PATH", help="the server's Unix socket")
        ctl.add_argument("--connect", metavar="ADDRESS:PORT", help="the server's loopback TCP address instead")
        ctl.add_argument("--token-file", metavar="FILE", help="the bearer token (with --connect)")
        ctl.add_argument("words", nargs=argparse.REMAINDER, metavar="vm COMMAND ...")


def run_operate(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from .serve import serve

        return serve(args.configs, args.sock, args.listen, args.token_file)
    if args.command == "shell":
        from .shell import run_shell

        return run_shell(args.configs)
    from .ctl import ctl

    return ctl(args.words, args.sock, args.connect, args.token_file)
