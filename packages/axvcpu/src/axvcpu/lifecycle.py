"""A lifecycle as a table of legal transitions, checked in one place.

Both lifecycles of the project use it: the vCPU's (``axvcpu.state``) and the VM's
(``axvm.lifecycle``), each with its own table and its own named error. It lives here, the
lowest package that holds a lifecycle, so axvm builds on it instead of repeating it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Set
from typing import Generic, TypeVar

S = TypeVar("S", bound=enum.Enum)
H = TypeVar("H")


class IllegalTransition(RuntimeError):
    """A state change the table does not allow; the message names the holder and both states."""

    def __init__(self, holder: str, current: enum.Enum, wanted: enum.Enum) -> None:
        super().__init__(f"{holder}: cannot go from {current.name} to {wanted.name}")
        self.holder = holder


class Lifecycle(Generic[H, S]):
    """A transition table and the error that names a wrong step for a holder of type ``H``."""

    def __init__(self, table: Mapping[S, Set[S]], error: Callable[[H, S, S], IllegalTransition]) -> None:
        self.table = table
        self._error = error

    def check(self, holder: H, current: S, wanted: S) -> None:
        """Raise the lifecycle's error unless ``current -> wanted`` is in the table."""
        if wanted not in self.table[current]:
            raise self._error(holder, current, wanted)

    def allows(self, current: S, wanted: S) -> bool:
        return wanted in self.table[current]
