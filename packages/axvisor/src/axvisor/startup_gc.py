"""The cyclic garbage collector, off while ``python -m axvisor`` starts.

Start-up builds some hundred thousand objects that live as long as the process (modules,
classes, dataclass methods, the VM) and frees almost none: the collections their allocations
trigger (about 45 by the first guest instruction, three of them full) find next to nothing and
cost 20-25 ms of the start. ``__main__`` pauses collection before it imports anything; the
command resumes it once its VMs are built, after ``gc.freeze()`` has moved everything start-up
made into the permanent generation, so later full collections no longer walk it either (a
start-up cycle that became garbage stays, a few hundred objects). A library user's collector is
left alone: only ``pause`` turns it off, and ``resume`` undoes only that.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Stop automatic collection until ``resume`` (a no-op where it is already off)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Freeze what exists now and collect automatically again, if ``pause`` stopped collection."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
