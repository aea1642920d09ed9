"""The half every host network backend shares: a reader thread, a bounded backlog, counters.

Theory of operation. A backend owns one host file descriptor that carries whole Ethernet frames
(a TAP device, a UDP socket). ``send(frame)`` is called by virtio-net on a vCPU thread under the
VM's device lock: it writes the frame without blocking and never raises (a failure is counted in
``tx_errors``; the frame is lost, as on a congested wire). ``start(deliver)`` starts a daemon
thread that waits in poll() for a frame and hands it to ``deliver(frame)``, which calls
``VirtioNet.receive_frame`` under the device lock and returns its ``RxResult``: DELIVERED is
counted in ``rx_frames``, DROPPED (the device consumed the frame, perhaps returning a too-small
buffer empty) in ``rx_dropped`` and never offered again, since each offer can cost the guest a
buffer. On NO_BUFFER (the guest had no receive buffer for it) the frame waits in a backlog of at
most ``RX_BACKLOG_FRAMES`` frames (frames arriving while it is full are dropped, counted in
``rx_dropped``) and is offered again when the guest posts buffers: virtio-net's ``on_rx_buffers``
callback calls ``rx_ready()``.

``rx_ready()`` runs under the device lock, so it never delivers itself (``deliver`` takes that
lock): it writes a byte to a wake-up pipe and the reader thread retries. Every frame reaches the
guest from the reader thread, in arrival order. ``close()`` writes a stop byte to the same pipe,
joins the thread and closes the descriptors.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections import deque
from collections.abc import Callable

from axdevice.virtio import MAX_FRAME_SIZE, RxResult

log = logging.getLogger(__name__)

Deliver = Callable[[bytes], RxResult]

RX_BACKLOG_FRAMES = 256
"""Frames kept while the guest has no receive buffer: one default virtqueue (256 entries) worth,
enough to refill a whole receive ring once the guest catches up; it bounds a link's backlog at
256 * MAX_FRAME_SIZE (16 MiB)."""

RX_HEAD_ATTEMPTS = 4
"""Times the oldest waiting frame is refused (NO_BUFFER) right after the guest posted buffers
before it is dropped: a device that keeps refusing (its link down) must not block the rest for
ever. A frame too big for the guest's buffers is not refused but DROPPED, on the first offer."""

READ_BATCH = 64
"""Frames read per wake-up before looking at the wake-up pipe again, so a flood of frames cannot
delay rx_ready() or close()."""

RETRY_SECONDS = 0.1
"""How often waiting frames are offered again without an rx_ready() (a missed wake-up must not
stall the link), and how long the reader pauses after a read error."""

READ_SIZE = MAX_FRAME_SIZE + 1
"""Read one byte more than the largest frame virtio-net takes, to tell an oversized one apart."""

CLOSE_JOIN_SECONDS = 5.0
"""How long close() waits for the reader thread (blocked at most in ``deliver``)."""

_RX_READY = b"r"
_STOP = b"s"


class NetBackendError(OSError):
    """A host network backend could not be opened; ``str()`` is one line naming the interface or
    address, what failed and how to fix it. An OSError, so config loading reports it per key."""


class FrameLink:
    """Base of TapBackend and DgramBackend: subclasses provide _recv, _transmit and _release_io."""

    def __init__(self, fd: int, label: str) -> None:
        self._fd = fd
        self.label = label
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._backlog: deque[bytes] = deque()
        self._head_failures = 0
        self._deliver: Deliver | None = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._closing = False
        self._released = False
        self.tx_frames = self.tx_errors = 0
        self.rx_frames = self.rx_dropped = self.rx_errors = 0

    # -- subclass hooks --------------------------------------------------------------------

    def _recv(self) -> bytes | None:
        """One received frame, or None when the descriptor has nothing more now."""
        raise NotImplementedError

    def _transmit(self, frame: bytes) -> None:
        """Write one frame; raise OSError when the host refuses it."""
        raise NotImplementedError

    def _release_io(self) -> None:
        """Close the backend's own descriptor."""
        raise NotImplementedError

    # -- the NetBackend / HostNetLink contract ----------------------------------------------

    def send(self, frame: bytes) -> None:
        """Guest -> host: one frame. Never raises; a failure is counted in ``tx_errors``.

        Called on vCPU threads, which the VMM stops before it closes the link; a send after
        close() is counted as an error.
        """
        if self._closing:
            self.tx_errors += 1
            return
        try:
            self._transmit(frame)
        except (OSError, ValueError) as error:
            if self.tx_errors == 0:
                log.warning("%s: cannot send a frame: %s (further failures only counted)", self.label, error)
            self.tx_errors += 1
        else:
            self.tx_frames += 1

    def start(self, deliver: Deliver) -> None:
        """Start the reader thread; each received frame goes to ``deliver`` (see module doc)."""
        with self._state_lock:
            if self._closing:
                raise RuntimeError(f"{self.label}: start() after close()")
            if self._thread is not None:
                raise RuntimeError(f"{self.label}: start() called twice")
            self._deliver = deliver
            self._thread = threading.Thread(target=self._run, daemon=True, name=f"net-{self.label}")
            self._thread.start()

    def rx_ready(self) -> None:
        """The guest posted receive buffers: have the reader offer waiting frames again.

        Safe under the VM's device lock and from any thread; never raises.
        """
        self._wake(_RX_READY)

    def close(self) -> None:
        """Stop the reader thread and close the descriptors; idempotent."""
        with self._state_lock:
            if self._closing:
                return
            self._closing = True
            thread = self._thread
        if thread is None:
            self._release()
            return
        self._wake(_STOP)
        if thread is not threading.current_thread():
            thread.join(CLOSE_JOIN_SECONDS)
            if thread.is_alive():
                log.warning("%s: the reader thread did not stop within %.0f s; it closes the link when it does",
                            self.label, CLOSE_JOIN_SECONDS)

    def fileno(self) -> int:
        """The host descriptor frames travel through (closed after close())."""
        return self._fd

    @property
    def backlog(self) -> int:
        """Frames waiting for guest receive buffers."""
        return len(self._backlog)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the reader thread -----------------------------------------------------------------

    def _wake(self, reason: bytes) -> None:
        with self._state_lock:  # never write to the pipe's descriptor number once it is closed
            if self._released:
                return
            try:
                os.write(self._wake_w, reason)
            except OSError:  # the pipe is full: a wake-up is pending anyway
                pass

    def _run(self) -> None:
        # poll, not select: a VMM with many VMs can hold descriptors beyond select's 1024
        both, wake_only = select.poll(), select.poll()
        both.register(self._fd, select.POLLIN)
        both.register(self._wake_r, select.POLLIN)
        wake_only.register(self._wake_r, select.POLLIN)
        pause = False
        try:
            while not self._closing:
                timeout = int(RETRY_SECONDS * 1000) if (pause or self._backlog) else None
                ready = {fd for fd, _ in (wake_only if pause else both).poll(timeout)}
                posted = self._wake_r in ready and _RX_READY in self._drain_wake()
                if self._closing:
                    break
                self._flush_backlog(posted)
                pause = self._fd in ready and not self._read_batch()
        except Exception:  # a bug here ends this link's receive side, never the VMM
            log.exception("%s: the reader thread failed", self.label)
        finally:
            self._release()

    def _drain_wake(self) -> bytes:
        data = b""
        while True:
            try:
                chunk = os.read(self._wake_r, 256)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk

    def _read_batch(self) -> bool:
        """Read up to READ_BATCH frames; False after a read error (the reader then pauses)."""
        for _ in range(READ_BATCH):
            try:
                frame = self._recv()
            except BlockingIOError:
                return True
            except OSError as error:
                if self.rx_errors == 0:
                    log.warning("%s: cannot receive: %s (further failures only counted)", self.label, error)
                self.rx_errors += 1
                return False
            if frame is None:
                return True
            if not frame or len(frame) > MAX_FRAME_SIZE:  # an empty datagram carries no frame
                self.rx_dropped += 1
                continue
            self._offer(frame)
        return True

    def _offer(self, frame: bytes) -> None:
        if not self._backlog and self._try_deliver(frame):
            return
        if len(self._backlog) >= RX_BACKLOG_FRAMES:
            self.rx_dropped += 1
            return
        self._backlog.append(frame)

    def _flush_backlog(self, buffers_posted: bool) -> None:
        while self._backlog:
            if self._try_deliver(self._backlog[0]):
                self._backlog.popleft()
                self._head_failures = 0
                continue
            if not buffers_posted:
                return
            self._head_failures += 1
            if self._head_failures < RX_HEAD_ATTEMPTS:
                return
            self._backlog.popleft()  # refused with fresh buffers, again and again: it cannot fit
            self._head_failures = 0
            self.rx_dropped += 1
            buffers_posted = False

    def _try_deliver(self, frame: bytes) -> bool:
        """Offer one frame to the guest; True when it is consumed (taken, dropped, or lost to a bug),
        False when the guest had no buffer for it and it may be offered again."""
        assert self._deliver is not None
        try:
            result = self._deliver(frame)
        except Exception:
            if self.rx_errors == 0:
                log.exception("%s: delivering a frame failed (further failures only counted)", self.label)
            self.rx_errors += 1
            return True
        if result is RxResult.NO_BUFFER:
            return False
        if result is RxResult.DELIVERED:
            self.rx_frames += 1
        else:  # DROPPED
            self.rx_dropped += 1
        return True

    def _release(self) -> None:
        with self._state_lock:
            if self._released:
                return
            self._released = True
            self._release_io()
            os.close(self._wake_r)
            os.close(self._wake_w)
