"""Capture: a live source read in its own thread, handing on only its newest frame.

A camera does not wait for the pipeline. The reader thread puts every image it reads into a one-frame
slot; an image still in the slot when the next arrives is dropped and counted (never queued: a queue
would grow without bound or hand out ever older frames). The node takes the slot's frame when it is
ready for one.

A supervisor thread owns the source's life: it opens it (retrying with exponential back-off while it
cannot), watches the reader, and when the source fails (unplugged, stream ended) or stalls (no frame for
``stall_timeout_s``, e.g. a read blocked on a dead network stream) it abandons that reader and
reconnects. A file that plays to its end ends the capture (not a failure).

Frames are numbered by capture order across reconnects (``Frame.index``: a gap is a dropped frame) and
stamped at capture: ``Frame.timestamp_s`` is seconds since the capture started (monotonic clock, what
tracking and TTC need), ``Captured.capture_unix_s`` the wall clock for the output.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from perception.errors import InputError
from perception.frames import Frame
from perception.sources import Grabber

log = logging.getLogger(__name__)

STATES = ("starting", "running", "reconnecting", "stalled", "ended", "stopped")


@dataclass(frozen=True)
class Captured:
    """One captured frame. ``capture_mono_s`` is on ``time.monotonic``'s clock (ages and latencies)."""

    frame: Frame
    capture_mono_s: float
    capture_unix_s: float


@dataclass
class CaptureCounters:
    captured: int = 0  # images read from the source
    dropped: int = 0  # overwritten in the slot before the node took them
    reconnects: int = 0  # times the source was reopened after a failure or stall
    stalls: int = 0  # of those, because no frame came for stall_timeout_s


class LatestFrameCapture:
    """Reads ``open_grabber()``'s frames in a thread and keeps the newest one for :meth:`take`.

    Args:
        open_grabber: opens the source; raises InputError (or OSError) when it cannot, which is retried.
        lossless: wait for the taker instead of dropping (a file read as fast as it is processed; a live
            camera is never lossless).
        stall_timeout_s: no frame for this long from an open source: reconnect.
        reconnect_initial_s, reconnect_max_s: back-off between attempts, doubling up to the maximum.
        give_up_after: stop retrying after this many failed opens in a row (None: retry forever, as a
            vehicle node should); the capture then ends with ``last_error`` set.
    """

    def __init__(
        self,
        open_grabber: Callable[[], Grabber],
        *,
        name: str = "camera",
        lossless: bool = False,
        stall_timeout_s: float = 3.0,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        give_up_after: int | None = None,
    ):
        self.open_grabber = open_grabber
        self.name = name
        self.lossless = lossless
        self.stall_timeout_s = stall_timeout_s
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.give_up_after = give_up_after
        self.counters = CaptureCounters()
        self.state = "starting"
        self.last_error = ""
        self.fps: float | None = None  # the source's nominal rate, once opened
        self.last_frame_mono: float | None = None
        self._cond = threading.Condition()
        self._slot: Captured | None = None
        self._stop = threading.Event()
        self._generation = 0  # a reader whose generation is not current has been abandoned
        self._t0_mono = time.monotonic()
        self._supervisor: threading.Thread | None = None

    # --- the taker's side -------------------------------------------------------------------------------

    def start(self) -> LatestFrameCapture:
        """Start reading (a second call does nothing)."""
        if self._supervisor is not None:
            return self
        self._t0_mono = time.monotonic()
        self._supervisor = threading.Thread(target=self._supervise, name="capture-supervisor", daemon=True)
        self._supervisor.start()
        return self

    def take(self, timeout: float) -> Captured | None:
        """The newest frame not yet taken, waiting up to ``timeout`` s; None if none came (or the capture
        ended: check :attr:`finished`)."""
        with self._cond:
            if self._slot is None and not self.finished:
                self._cond.wait(timeout)
            item, self._slot = self._slot, None
            self._cond.notify_all()  # a lossless reader waits for the slot to empty
            return item

    @property
    def finished(self) -> bool:
        """No frame will ever come again (the file ended, the capture was stopped or gave up)."""
        return self.state in ("ended", "stopped")

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
        self._set_state("stopped")

    # --- the source's side ------------------------------------------------------------------------------

    def _set_state(self, state: str, why: str = "") -> None:
        if state != self.state:
            if state in ("reconnecting", "stalled"):
                log.warning("%s: %s%s", self.name, state, f" ({why})" if why else "")
            elif state == "running" and self.state != "starting":
                log.info("%s: running again after %d reconnect(s)", self.name, self.counters.reconnects)
            with self._cond:
                if self.state not in ("ended", "stopped") or state == "stopped":
                    self.state = state
                self._cond.notify_all()

    def _supervise(self) -> None:
        delay = self.reconnect_initial_s
        failures = 0
        first = True
        while not self._stop.is_set():
            try:
                grabber = self.open_grabber()
            except (InputError, OSError) as err:
                failures += 1
                self.last_error = str(err)
                if self.give_up_after is not None and failures >= self.give_up_after:
                    log.error("%s: giving up after %d failed attempts: %s", self.name, failures, err)
                    self._set_state("ended")
                    return
                self._set_state("reconnecting", f"{err}; next try in {delay:.1f} s")
                self._stop.wait(delay)
                delay = min(self.reconnect_max_s, delay * 2)
                continue
            if not first:
                self.counters.reconnects += 1
            first = False
            failures = 0
            self.fps = grabber.fps
            outcome = self._watch(grabber)
            if outcome == "ended":
                self._set_state("ended")
                return
            if outcome == "stopped":
                return
            # A source that ran for a while reconnects quickly; one that keeps failing backs off.
            if outcome == "ran":
                delay = self.reconnect_initial_s
            self._stop.wait(delay)
            delay = min(self.reconnect_max_s, delay * 2)

    def _watch(self, grabber: Grabber) -> str:
        """Run one reader on ``grabber`` until it ends, fails or stalls: "ended", "failed", "ran", "stopped"."""
        with self._cond:
            self._generation += 1
            generation = self._generation
        done = threading.Event()
        opened = time.monotonic()
        self.last_frame_mono = None
        self._set_state("running")
        reader = threading.Thread(
            target=self._read, args=(grabber, generation, done), name=f"capture-{generation}", daemon=True
        )
        reader.start()
        while not done.wait(0.05):
            if self._stop.is_set():
                return "stopped"
            since = self.last_frame_mono or opened
            if time.monotonic() - since > self.stall_timeout_s:
                # The read is blocked (a dead stream, a hung driver): leave that thread behind; it releases
                # its source if the read ever returns.
                with self._cond:
                    self._generation += 1
                self.counters.stalls += 1
                self.last_error = f"no frame for {self.stall_timeout_s:.1f} s"
                self._set_state("stalled", self.last_error)
                return "failed"
        if self._stop.is_set():
            return "stopped"
        if grabber.ended:
            return "ended"
        self.last_error = grabber.end_reason or "source stopped delivering frames"
        self._set_state("reconnecting", self.last_error)
        ran_long = self.last_frame_mono is not None and self.last_frame_mono - opened > 5.0
        return "ran" if ran_long else "failed"

    def _read(self, grabber: Grabber, generation: int, done: threading.Event) -> None:
        try:
            while generation == self._generation:
                image = grabber.read()
                if generation != self._generation:
                    break
                if image is None:
                    break
                now_mono, now_unix = time.monotonic(), time.time()
                self.last_frame_mono = now_mono
                frame = Frame(
                    index=self.counters.captured,
                    timestamp_s=now_mono - self._t0_mono,
                    image=image,
                    source=self.name,
                )
                self.counters.captured += 1
                with self._cond:
                    while self.lossless and self._slot is not None and generation == self._generation:
                        self._cond.wait(0.1)
                    if self._slot is not None:
                        self.counters.dropped += 1
                    self._slot = Captured(frame, now_mono, now_unix)
                    self._cond.notify_all()
        except Exception as err:  # a grabber bug must not kill the node: it is a failed source, reconnect
            grabber.end_reason = f"read raised {type(err).__name__}: {err}"
            log.exception("%s: reader failed", self.name)
        finally:
            try:
                grabber.close()
            except Exception:  # closing a broken source may fail too; nothing more can be done about it
                log.debug("%s: close failed", self.name, exc_info=True)
            done.set()
