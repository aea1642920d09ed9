"""``EcallObserver``: how a machine watches a guest's environment calls (riscv ``ecall``).

Theory of operation. A software CPU caches translated guest code per engine and notices only
the code changes its own engine wrote; when another hart or the firmware changes code, each
engine must be told to drop its translations. Which calls announce that is the firmware's ABI
(on riscv, SBI: remote fence.i, hart start), not the CPU model's business. So the backend
calls an observer the machine installs, once per ecall and before the trap is entered, with
the hart, the privilege the ecall came from, and a reader of the hart's x registers; the
observer answers whether every hart must now drop its translated code. With no observer
installed no ecall does (a guest without SBI, or a test of the CPU alone).

An observer runs on the hart's thread, inside the engine's run, about ten thousand times in a
Linux boot: it should read only the registers it needs and return at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

GprReader = Callable[[int], int]
"""``gpr(n)``: the value of x register ``n`` (0..31; x0 reads 0) of the calling hart, now."""


class EcallObserver(Protocol):
    """Told of each guest ecall; returns True when every hart must drop its translated code."""

    def on_ecall(self, hart: int, priv: int, gpr: GprReader) -> bool:
        """``priv`` is where the ecall came from (0 U, 1 S, 3 M)."""
        ...
