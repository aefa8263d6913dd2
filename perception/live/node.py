"""The camera node's loop: the freshest captured frame → pipeline → outputs, with its health.

One frame at a time (batch 1: the latency of one frame is what a live node is judged by). A frame older
than ``max_age_s`` when the loop gets to it is skipped and counted as stale, so the pipeline never works
on the past. Each output record carries the frame's capture time and its capture-to-output latency.

Nothing in the loop throws: a frame the pipeline fails on is counted and logged (rate-limited), an output
that fails counts its own errors. A watchdog thread notices a frame that has been in the pipeline for
longer than ``watchdog_s`` (a hung inference) and turns the health state to "stuck".
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from perception.frames import Frame, FrameResult
from perception.live.capture import Captured, LatestFrameCapture
from perception.runner import STAGES
from perception.sinks import RecordSink, scene_to_json

log = logging.getLogger(__name__)


class FramePipeline(Protocol):
    """What the node needs of a pipeline: one frame in, its fused FrameResult out (stateful, in order)."""

    def __call__(self, frame: Frame) -> FrameResult: ...


class Preview(Protocol):
    def offer(self, image: Any, result: FrameResult) -> None: ...


@dataclass(frozen=True)
class NodeSettings:
    """Args:
    max_age_s: frames older than this (capture to start of processing) are skipped as stale.
    watchdog_s: a frame in the pipeline longer than this makes the node "stuck".
    latency_window: latency percentiles are over the last this many frames.
    fps_window_s: frames/s is counted over this trailing window.
    """

    max_age_s: float = 0.2
    watchdog_s: float = 5.0
    latency_window: int = 1000
    fps_window_s: float = 5.0


def current_rss_bytes() -> int:
    """Resident memory of this process now (not the peak): /proc on Linux, else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        from perception.runner import peak_rss_mb

        return int(peak_rss_mb() * 2**20)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class NodeSummary:
    source: str
    frames_captured: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0  # overwritten by a newer frame before the loop took them
    frames_stale: int = 0  # taken, but older than max_age_s
    frames_failed: int = 0  # the pipeline raised
    reconnects: int = 0
    wall_s: float = 0.0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    stopped_by: str = ""  # "signal", "duration", "max-frames", "end of source"
    outputs: dict[str, dict[str, int]] = field(default_factory=dict)

    def format(self) -> str:
        fps = self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0
        lat = ", ".join(f"{k} {v:.1f}" for k, v in self.latency_ms.items() if v is not None)
        lines = [
            f"{self.source}: {self.frames_processed} frames processed in {self.wall_s:.1f} s ({fps:.1f} frames/s); "
            f"captured {self.frames_captured}, dropped {self.frames_dropped} (newer frame arrived), "
            f"stale {self.frames_stale}, failed {self.frames_failed}, reconnects {self.reconnects}",
            f"latency capture → output, ms: {lat or 'no frames'}",
        ]
        for name, c in self.outputs.items():
            lines.append(f"output {name}: {c['sent']} sent, {c['errors']} errors")
        lines.append(f"stopped by: {self.stopped_by}")
        return "\n".join(lines)


class CameraNode:
    """Args:
    capture: the started (or to be started by :meth:`run`) capture.
    pipeline: frame → fused FrameResult.
    outputs: where each record goes (UDP, ZeroMQ, JSONL log, ROS 2).
    settings: staleness, watchdog and statistics windows.
    preview: receives each frame and result for the MJPEG preview (None: no preview).
    """

    def __init__(
        self,
        capture: LatestFrameCapture,
        pipeline: FramePipeline,
        outputs: list[RecordSink],
        settings: NodeSettings = NodeSettings(),
        preview: Preview | None = None,
        model_name: str = "",
    ):
        self.capture = capture
        self.pipeline = pipeline
        self.outputs = outputs
        self.settings = settings
        self.preview = preview
        self.model_name = model_name
        self.summary = NodeSummary(source=capture.name)
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=settings.latency_window)
        self._interval: list[float] | None = None  # every latency since the last drain (soak tests), when on
        self._done_times: deque[float] = deque()
        self._stage_ms: dict[str, float] = {}
        self._busy_since: float | None = None  # when the frame now in the pipeline entered it
        self._stuck_reported = False
        self._started = time.monotonic()
        self._stopping = False

    # --- health -----------------------------------------------------------------------------------------

    def state(self) -> str:
        """starting | running | reconnecting | stalled | stuck | ended | stopping."""
        busy = self._busy_since
        if busy is not None and time.monotonic() - busy > self.settings.watchdog_s:
            return "stuck"
        if self._stopping:
            return "stopping"
        cap = self.capture.state
        return "ended" if cap in ("ended", "stopped") else cap

    def health(self) -> dict[str, Any]:
        """A snapshot for /health and /metrics: state, rates, counters, latency percentiles (ms)."""
        now = time.monotonic()
        with self._lock:
            lat = list(self._latencies)
            window = self.settings.fps_window_s
            recent = sum(1 for t in self._done_times if t >= now - window)
            stage_ms = dict(self._stage_ms)
        elapsed = min(window, now - self._started)
        c = self.capture.counters
        s = self.summary
        last = self.capture.last_frame_mono
        state = self.state()
        return {
            "state": state,
            "healthy": state == "running",
            "source": self.capture.name,
            "model": self.model_name,
            "uptime_s": round(now - self._started, 3),
            "fps": round(recent / elapsed, 2) if elapsed > 0 else 0.0,
            "source_fps": self.capture.fps,
            "frames": {
                "captured": c.captured,
                "processed": s.frames_processed,
                "dropped": c.dropped,
                "stale": s.frames_stale,
                "failed": s.frames_failed,
            },
            "reconnects": c.reconnects,
            "stalls": c.stalls,
            "last_error": self.capture.last_error,
            "last_frame_age_s": round(now - last, 3) if last is not None else None,
            "latency_ms": {
                "p50": _round(percentile(lat, 50)),
                "p90": _round(percentile(lat, 90)),
                "p99": _round(percentile(lat, 99)),
                "max": _round(max(lat) if lat else None),
                "window_frames": len(lat),
            },
            "stage_ms": {k: round(v, 3) for k, v in stage_ms.items()},
            "outputs": {o.name: {"sent": o.sent, "errors": o.errors} for o in self.outputs},
            "rss_bytes": current_rss_bytes(),
        }

    def drain_latencies(self) -> list[float]:
        """Every capture-to-output latency (ms) since the previous call; the first call starts recording
        (a soak test samples intervals; nothing is kept unless someone drains)."""
        with self._lock:
            out, self._interval = (self._interval or []), []
        return out

    def _watchdog(self, stop: threading.Event) -> None:
        while not stop.wait(0.25):
            busy = self._busy_since
            if busy is not None and time.monotonic() - busy > self.settings.watchdog_s:
                if not self._stuck_reported:
                    log.error(
                        "watchdog: one frame has been in the pipeline for over %.1f s; the node is stuck",
                        self.settings.watchdog_s,
                    )
                    self._stuck_reported = True
            elif self._stuck_reported:
                log.warning("watchdog: the pipeline is moving again")
                self._stuck_reported = False

    # --- the loop ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event, duration_s: float | None = None, max_frames: int | None = None) -> NodeSummary:
        """Process frames until ``stop`` is set, the source ends, ``duration_s`` passes or ``max_frames``
        are processed; then stop the capture and close the outputs (flushing them)."""
        self._started = time.monotonic()
        self.capture.start()
        watchdog_stop = threading.Event()
        watchdog = threading.Thread(target=self._watchdog, args=(watchdog_stop,), name="watchdog", daemon=True)
        watchdog.start()
        s = self.summary
        try:
            while True:
                if stop.is_set():
                    s.stopped_by = "signal"
                    break
                if duration_s is not None and time.monotonic() - self._started >= duration_s:
                    s.stopped_by = "duration"
                    break
                if max_frames is not None and s.frames_processed >= max_frames:
                    s.stopped_by = "max-frames"
                    break
                item = self.capture.take(timeout=0.1)
                if item is None:
                    if self.capture.finished:
                        s.stopped_by = "end of source" if self.capture.state == "ended" else "capture stopped"
                        if self.capture.last_error and self.capture.counters.captured == 0:
                            s.stopped_by += f" ({self.capture.last_error})"
                        break
                    continue
                self._process(item)
        finally:
            self._stopping = True
            watchdog_stop.set()
            self.capture.stop()
            for out in self.outputs:
                try:
                    out.close()
                except Exception:  # one output failing to close must not keep the others from closing
                    log.exception("closing output %s failed", out.name)
            s.wall_s = time.monotonic() - self._started
            c = self.capture.counters
            s.frames_captured, s.frames_dropped, s.reconnects = c.captured, c.dropped, c.reconnects
            lat = list(self._latencies)
            s.latency_ms = {f"p{q}": percentile(lat, q) for q in (50, 90, 99)}
            s.outputs = {o.name: {"sent": o.sent, "errors": o.errors} for o in self.outputs}
        return s

    def _process(self, item: Captured) -> None:
        s = self.summary
        start = time.monotonic()
        age = start - item.capture_mono_s
        if age > self.settings.max_age_s:
            s.frames_stale += 1
            return
        self._busy_since = start
        try:
            result = self.pipeline(item.frame)
        except Exception as err:  # a bad frame must not stop a node meant to run for hours
            s.frames_failed += 1
            if s.frames_failed == 1 or s.frames_failed % 100 == 0:
                log.error("frame %d failed (%d so far): %s", item.frame.index, s.frames_failed, err, exc_info=True)
            return
        finally:
            self._busy_since = None
        record = scene_to_json(result)
        done = time.monotonic()
        record["live"] = {
            "seq": item.frame.index,
            "capture_unix_s": round(item.capture_unix_s, 6),
            "age_ms": round(age * 1e3, 3),
            "latency_ms": round((done - item.capture_mono_s) * 1e3, 3),
        }
        line = json.dumps(record, separators=(",", ":")).encode()
        for out in self.outputs:
            out.publish(record, line, result)
        if self.preview is not None:
            self.preview.offer(item.frame.image, result)
        end = time.monotonic()
        s.frames_processed += 1
        with self._lock:
            latency_ms = (end - item.capture_mono_s) * 1e3
            self._latencies.append(latency_ms)
            if self._interval is not None:
                self._interval.append(latency_ms)
            self._done_times.append(end)
            while self._done_times and self._done_times[0] < end - self.settings.fps_window_s:
                self._done_times.popleft()
            self._stage_ms = {k: v for k, v in result.timings_ms.items() if k in STAGES}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
