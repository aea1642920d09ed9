"""AxVisor's ``vm`` commands: one grammar and one dispatcher for ``axvisor shell`` and ``ctl``."""

from .dispatch import ExitShell, Session, VmOps, execute
from .grammar import Command, GrammarError, help_text, parse_line, parse_words

__all__ = [
    "Command",
    "ExitShell",
    "GrammarError",
    "Session",
    "VmOps",
    "execute",
    "help_text",
    "parse_line",
    "parse_words",
]
