"""``AXVISOR_TRACE_STARTUP=PATH``: record when the VMM first hands a vCPU to the guest.

benches/startup.py measures process start to first guest instruction with it. It reads
CLOCK_MONOTONIC before it spawns the VMM; the VMM appends ``first_entry <ns> <cpu_ns>`` (the
moment a vCPU thread first calls into the backend to run the guest) and ``first_exit <ns>
<cpu_ns>`` (when that first run came back, so the first instruction lies between the two) with
the same clock, which is one clock for every process on the host, and the CPU time the process
had used by then (a figure a busy host disturbs less). Without the variable this costs one dict
lookup.
"""

from __future__ import annotations

import logging
import os
import threading
import time

TRACE_ENV = "AXVISOR_TRACE_STARTUP"

log = logging.getLogger(__name__)
_lock = threading.Lock()
_written: set[str] = set()


def mark(event: str, ns: int) -> None:
    """Append ``event ns cpu_ns`` to the trace file, once per event and process; never raises."""
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    with _lock:
        if event in _written:
            return
        _written.add(event)
    try:
        with open(path, "a", encoding="ascii") as trace:
            trace.write(f"{event} {ns} {time.process_time_ns()}\n")
    except OSError as error:  # a trace the user asked for and cannot have: say so, run on
        log.warning("%s=%s: cannot write the start-up trace: %s", TRACE_ENV, path, error.strerror or error)
