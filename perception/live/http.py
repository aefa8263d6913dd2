"""The node's HTTP endpoint: ``/health`` (JSON), ``/metrics`` (Prometheus text), ``/preview.mjpg``.

Bound to 127.0.0.1 unless another address is configured: a vehicle computer should not expose its camera
to every network it joins. ``/health`` answers 200 while the node is running (frames flowing) and 503
otherwise (starting, reconnecting, stalled, stuck, ended), so a container health check or a supervisor can
act on the status code alone.

The preview renders the overlay only while someone watches it, at most ``fps`` times a second, in its own
thread: the node's loop only hands over a reference to the latest frame and result. A client that
disconnects mid-frame ends its own handler; the server and the node carry on.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from perception.errors import OutputError
from perception.frames import FrameResult

log = logging.getLogger(__name__)

BOUNDARY = "perception-frame"


class PreviewRenderer:
    """Latest frame + result in, JPEG overlay out, rendered only while clients are connected.

    Args:
        fps: at most this many renders per second (a preview need not cost the node a full frame rate).
        quality: JPEG quality 1-100.
        max_width: frames wider than this are scaled down before encoding (bandwidth, CPU).
        alpha: overlay opacity of the masks.
    """

    def __init__(self, fps: float = 10.0, quality: int = 75, max_width: int = 960, alpha: float = 0.45):
        self.period = 1.0 / max(0.1, fps)
        self.quality = int(quality)
        self.max_width = max_width
        self.alpha = alpha
        self.clients = 0
        self.renders = 0
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, FrameResult] | None = None
        self._offered = 0
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._closed = False
        self._thread = threading.Thread(target=self._render_loop, name="preview", daemon=True)
        self._thread.start()

    def offer(self, image: np.ndarray, result: FrameResult) -> None:
        """Called by the node for every frame: keeps a reference, costs nothing else."""
        with self._cond:
            self._latest = (image, result)
            self._offered += 1
            if self.clients:
                self._cond.notify_all()

    def render(self, image: np.ndarray, result: FrameResult) -> bytes:
        from perception.viz import draw_scene

        out = draw_scene(image, result, self.alpha)
        h, w = out.shape[:2]
        if w > self.max_width:
            out = cv2.resize(out, (self.max_width, round(h * self.max_width / w)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def _render_loop(self) -> None:
        done = 0
        while True:
            with self._cond:
                while not self._closed and (self.clients == 0 or self._offered == done or self._latest is None):
                    self._cond.wait(0.5)
                if self._closed:
                    return
                image, result = self._latest
                done = self._offered
            t0 = time.monotonic()
            try:
                jpeg = self.render(image, result)
            except Exception:  # a drawing bug must not end the preview for good
                log.exception("preview render failed")
                jpeg = None
            with self._cond:
                if jpeg is not None:
                    self._jpeg = jpeg
                    self._jpeg_seq += 1
                    self.renders += 1
                self._cond.notify_all()
            rest = self.period - (time.monotonic() - t0)
            if rest > 0:
                time.sleep(rest)

    def next_jpeg(self, after_seq: int, timeout: float) -> tuple[int, bytes | None]:
        """Wait for a JPEG newer than ``after_seq``: (its seq, bytes), or (after_seq, None) on timeout/close."""
        with self._cond:
            deadline = time.monotonic() + timeout
            while not self._closed and self._jpeg_seq <= after_seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return after_seq, None
                self._cond.wait(left)
            if self._closed:
                return after_seq, None
            return self._jpeg_seq, self._jpeg

    def add_client(self, delta: int) -> None:
        with self._cond:
            self.clients += delta
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(2.0)


def prometheus_text(health: dict[str, Any], prefix: str = "perception") -> str:
    """The /health snapshot in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float | None]]) -> None:
        lines.append(f"# HELP {prefix}_{name} {help_text}")
        lines.append(f"# TYPE {prefix}_{name} {kind}")
        for labels, value in samples:
            if value is not None:
                lines.append(f"{prefix}_{name}{labels} {float(value):.15g}")  # counters exact past 1e6

    frames = health["frames"]
    metric(
        "up", "gauge", "1 when the node is running (frames flowing), else 0.", [("", 1.0 if health["healthy"] else 0.0)]
    )
    metric(
        "state",
        "gauge",
        "The node's state (1 for the current one).",
        [(f'{{state="{s}"}}', 1.0 if health["state"] == s else 0.0) for s in NODE_STATES],
    )
    metric("uptime_seconds", "gauge", "Seconds since the node started.", [("", health["uptime_s"])])
    metric("fps", "gauge", "Frames processed per second over the last seconds.", [("", health["fps"])])
    for key, help_text in (
        ("captured", "Frames read from the source."),
        ("processed", "Frames through the pipeline and published."),
        ("dropped", "Frames overwritten by a newer one before the pipeline took them."),
        ("stale", "Frames skipped for being older than the maximum age."),
        ("failed", "Frames the pipeline failed on."),
    ):
        metric(f"frames_{key}_total", "counter", help_text, [("", frames[key])])
    metric("reconnects_total", "counter", "Times the source was reopened.", [("", health["reconnects"])])
    metric(
        "stalls_total", "counter", "Times the source delivered nothing for the stall timeout.", [("", health["stalls"])]
    )
    lat = health["latency_ms"]
    metric(
        "latency_seconds",
        "gauge",
        "Capture-to-output latency over the recent frames (quantile label).",
        [
            (f'{{quantile="{q}"}}', None if lat[k] is None else lat[k] / 1e3)
            for q, k in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))
        ],
    )
    metric(
        "stage_seconds",
        "gauge",
        "Last frame's time per pipeline stage.",
        [(f'{{stage="{k}"}}', v / 1e3) for k, v in health["stage_ms"].items()],
    )
    metric(
        "output_sent_total",
        "counter",
        "Records sent per output.",
        [(f'{{output="{_label(k)}"}}', v["sent"]) for k, v in health["outputs"].items()],
    )
    metric(
        "output_errors_total",
        "counter",
        "Failed sends per output.",
        [(f'{{output="{_label(k)}"}}', v["errors"]) for k, v in health["outputs"].items()],
    )
    metric("resident_memory_bytes", "gauge", "Resident memory of the node process.", [("", health["rss_bytes"])])
    return "\n".join(lines) + "\n"


NODE_STATES = ("starting", "running", "reconnecting", "stalled", "stuck", "ended", "stopping")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


class StatusServer:
    """HTTP server in its own threads. ``health`` returns the node's snapshot; ``preview`` may be None.

    Raises OutputError at construction when the address cannot be bound (port in use, no permission).
    ``port`` 0 picks a free port; :attr:`port` is the one bound.
    """

    def __init__(self, host: str, port: int, health: Callable[[], dict[str, Any]], preview: PreviewRenderer | None):
        self.health = health
        self.preview = preview
        handler = _make_handler(self)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise OutputError(
                    f"http://{host}:{port}: port already in use (another node? choose another --http port)"
                ) from None
            raise OutputError(f"http://{host}:{port}: cannot listen ({err.strerror or err})") from None
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
        )
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> StatusServer:
        self._thread.start()
        log.info("serving %s/health, /metrics%s", self.url, ", /preview.mjpg" if self.preview else "")
        return self

    def close(self) -> None:
        self.stopping.set()
        if self.preview is not None:
            self.preview.close()
        if self._thread.is_alive():  # shutdown() waits for serve_forever, forever when it never ran
            self._server.shutdown()
        self._server.server_close()


def _make_handler(server: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "perception-camera"
        protocol_version = "HTTP/1.0"

        def log_message(self, fmt: str, *args: Any) -> None:  # the access log goes to debug, not stderr
            log.debug("http %s: " + fmt, self.client_address[0], *args)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            try:
                if path == "/health":
                    h = server.health()
                    self._send(200 if h["healthy"] else 503, json.dumps(h).encode() + b"\n", "application/json")
                elif path == "/metrics":
                    self._send(
                        200, prometheus_text(server.health()).encode(), "text/plain; version=0.0.4; charset=utf-8"
                    )
                elif path in ("/preview.mjpg", "/preview") and server.preview is not None:
                    self._stream_preview()
                elif path == "/":
                    links = '<a href="/health">/health</a> <a href="/metrics">/metrics</a>'
                    img = '<br><img src="/preview.mjpg">' if server.preview is not None else ""
                    body = f"<!doctype html><title>perception camera</title>{links}{img}\n".encode()
                    self._send(200, body, "text/html; charset=utf-8")
                else:
                    self._send(404, b"not found: try /health, /metrics or /preview.mjpg\n", "text/plain")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the client went away mid-answer; nothing to clean up beyond this handler

        def _stream_preview(self) -> None:
            preview = server.preview
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            preview.add_client(+1)
            try:
                seq = 0
                while not server.stopping.is_set():
                    seq, jpeg = preview.next_jpeg(seq, timeout=1.0)
                    if jpeg is None:
                        continue
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    self.wfile.write(head.encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            finally:
                preview.add_client(-1)

    return Handler
