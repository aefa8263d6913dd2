"""The node's HTTP endpoint with real clients: /health, /metrics (parsed as Prometheus text), the MJPEG preview.

The health callable returns a dict with the keys of ``CameraNode.health()``; the preview gets a real
FrameResult (image, boxes, segmentation) offered from a thread, the way the node's loop offers each frame.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from perception.errors import OutputError
from perception.frames import Detections, FrameResult, Letterbox, SegMap
from perception.live.http import BOUNDARY, NODE_STATES, PreviewRenderer, StatusServer, prometheus_text
from perception.live.transports import parse_host_port

TIMEOUT = 3.0


class FakeHealth:
    """A health callable shaped like CameraNode.health(); tests change its fields."""

    def __init__(self):
        self.state = "running"
        self.dropped = 1234567  # above 1e6: must come out exact, not as 1.23457e+06
        self.p99 = 48.0
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        return {
            "state": self.state,
            "healthy": self.state == "running",
            "source": "rtsp://cam/stream",
            "model": "tiny",
            "uptime_s": 3600.5,
            "fps": 29.97,
            "source_fps": 30.0,
            "frames": {"captured": 2000000, "processed": 1765430, "dropped": self.dropped, "stale": 3, "failed": 0},
            "reconnects": 2,
            "stalls": 1,
            "last_error": None,
            "last_frame_age_s": 0.021,
            "latency_ms": {"p50": 12.5, "p90": 20.0, "p99": self.p99, "max": 61.2, "window_frames": 1000},
            "stage_ms": {"preprocess": 1.25, "inference": 8.5, "postprocess": 0.75},
            "outputs": {
                "udp://127.0.0.1:9000": {"sent": 1765430, "errors": 0},
                'jsonl:/tmp/a"b': {"sent": 7, "errors": 2},
            },
            "rss_bytes": 1536000123,
        }


def get(server: StatusServer, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


@pytest.fixture()
def health():
    return FakeHealth()


@pytest.fixture()
def server(health):
    srv = StatusServer("127.0.0.1", 0, health, preview=None).start()
    yield srv
    srv.close()


# --------------------------------------------------------------------------------------------------------
# /health, /metrics, errors, binding


def test_health_is_200_json_while_running(server, health):
    status, ctype, body = get(server, "/health")
    assert status == 200 and ctype == "application/json"
    assert json.loads(body) == health()


@pytest.mark.parametrize("state", [s for s in NODE_STATES if s != "running"])
def test_health_is_503_json_when_not_running(server, health, state):
    health.state = state
    status, ctype, body = get(server, "/health?verbose=1")  # a query string does not change the route
    assert status == 503 and ctype == "application/json"
    got = json.loads(body)
    assert got["healthy"] is False and got["state"] == state


def parse_prometheus(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Text exposition 0.0.4 → {metric name: {sorted label pairs: value}}; asserts the format on the way:
    every sample line is ``name{labels} value`` with a float value, and its metric's # HELP and # TYPE
    lines come before its first sample."""
    assert text.endswith("\n")
    helped, typed = set(), {}
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    sample_re = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
    for line in text.splitlines():
        assert line, "blank line in the exposition"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert help_text and name not in helped, line
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped"), line
            assert name in helped and name not in typed and name not in samples, line
            typed[name] = kind
            continue
        assert not line.startswith("#"), line
        m = sample_re.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        name, label_text, value = m.groups()
        assert name in helped and name in typed, f"{name}: sample before its # HELP / # TYPE"
        labels = []
        if label_text:
            pos = 0
            while pos < len(label_text):
                lm = label_re.match(label_text, pos)
                assert lm, f"bad labels in {line!r}"
                labels.append((lm[1], re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e[1], e[1]), lm[2])))
                pos = lm.end()
        key = tuple(sorted(labels))
        assert key not in samples.setdefault(name, {}), f"duplicate sample {line!r}"
        samples[name][key] = float(value)
        if typed[name] == "counter":
            assert name.endswith("_total") and samples[name][key] >= 0, line
    return samples


def test_metrics_is_prometheus_text_with_the_health_values(server, health):
    status, ctype, body = get(server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    m = parse_prometheus(body.decode())
    assert m["perception_frames_dropped_total"] == {(): 1234567.0}
    assert m["perception_frames_captured_total"] == {(): 2000000.0}
    assert m["perception_up"] == {(): 1.0}
    assert m["perception_state"] == {(("state", s),): float(s == "running") for s in NODE_STATES}
    lat = m["perception_latency_seconds"]
    assert lat == {
        (("quantile", "0.5"),): pytest.approx(0.0125),
        (("quantile", "0.9"),): pytest.approx(0.020),
        (("quantile", "0.99"),): pytest.approx(0.048),
    }
    assert m["perception_stage_seconds"][(("stage", "inference"),)] == pytest.approx(0.0085)
    assert m["perception_uptime_seconds"] == {(): 3600.5}
    assert m["perception_resident_memory_bytes"] == {(): 1536000123.0}
    # output names become label values, escaped so that a quote in a path survives
    assert m["perception_output_sent_total"] == {
        (("output", "udp://127.0.0.1:9000"),): 1765430.0,
        (("output", 'jsonl:/tmp/a"b'),): 7.0,
    }
    assert m["perception_output_errors_total"][(("output", 'jsonl:/tmp/a"b'),)] == 2.0


def test_metrics_while_not_running_and_before_any_latency(health):
    health.state = "reconnecting"
    h = health()
    h["latency_ms"] = {"p50": None, "p90": None, "p99": None, "max": None, "window_frames": 0}
    h["stage_ms"], h["outputs"] = {}, {}
    m = parse_prometheus(prometheus_text(h))
    assert m["perception_up"] == {(): 0.0}
    assert m["perception_state"][(("state", "reconnecting"),)] == 1.0
    assert sum(m["perception_state"].values()) == 1.0
    assert "perception_latency_seconds" not in m  # HELP/TYPE only: no sample for an unknown value
    assert "# TYPE perception_latency_seconds gauge" in prometheus_text(h)


@pytest.mark.parametrize("path", ["/nope", "/health/x", "/preview.mjpg", "/metrics.json"])
def test_unknown_path_is_404(server, path):
    status, _, body = get(server, path)  # /preview.mjpg too: this server has no preview
    assert status == 404 and b"/health" in body


def test_index_page_links_the_endpoints(server):
    status, ctype, body = get(server, "/")
    assert status == 200 and ctype.startswith("text/html")
    assert b'href="/health"' in body and b'href="/metrics"' in body and b"preview.mjpg" not in body


def test_a_second_server_on_the_same_port_is_an_output_error(server, health):
    with pytest.raises(OutputError, match=rf"127\.0\.0\.1:{server.port}: port already in use"):
        StatusServer("127.0.0.1", server.port, health, preview=None)
    assert get(server, "/health")[0] == 200  # the first one is unaffected


def test_loopback_by_default(health):
    host, port = parse_host_port("0", what="--http")  # what `--http 0` means: loopback, a free port
    srv = StatusServer(host, port, health, preview=None).start()
    try:
        assert srv.host == "127.0.0.1" and srv.port > 0
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert srv._server.socket.getsockname()[0] == "127.0.0.1"
        assert get(srv, "/health")[0] == 200
    finally:
        srv.close()


def test_close_stops_the_server(health):
    srv = StatusServer("127.0.0.1", 0, health, preview=None).start()
    port = srv.port
    assert get(srv, "/health")[0] == 200
    srv.close()
    assert not srv._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def test_close_without_start_returns(health):
    """The CLI closes a server it never started when a later start-up step fails (model, port in use)."""
    preview = PreviewRenderer()
    srv = StatusServer("127.0.0.1", 0, health, preview=preview)
    closer = threading.Thread(target=srv.close, daemon=True)
    closer.start()
    closer.join(TIMEOUT)
    assert not closer.is_alive(), "close() hung"
    assert not preview._thread.is_alive()
    StatusServer("127.0.0.1", srv.port, health, preview=None).close()  # the port is free again


# --------------------------------------------------------------------------------------------------------
# MJPEG preview

H, W = 120, 160
NAMES = ("car", "pedestrian")


def make_result(index: int = 0) -> tuple[np.ndarray, FrameResult]:
    rng = np.random.default_rng(index)
    coarse = rng.integers(0, 256, (H // 10, W // 10, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_LINEAR)  # random but smooth: JPEG keeps it
    ids = np.zeros((96, 128), np.uint8)
    ids[60:, :] = 1
    ids[60:, 60:68] = 2
    result = FrameResult(
        frame_index=index,
        timestamp_s=index / 30,
        frame_size=(H, W),
        detections=Detections([[10, 20, 50, 60], [80, 40, 120, 100], [0, 0, 159, 119]], [0.9, 0.6, 0.35], [0, 1, 0]),
        det_class_names=NAMES,
        seg=SegMap(ids, ("background", "drivable", "lane")),
        letterbox=Letterbox((H, W), (96, 128), (0, 0, W, H), 0.8, 0, 0),
    )
    return image, result


class MjpegClient:
    """A raw-socket client of /preview.mjpg: parses the multipart stream part by part."""

    def __init__(self, port: int, path: str = "/preview.mjpg"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        self.f = self.sock.makefile("rb")
        self.status = self.f.readline().split()[1]
        self.headers = self._headers()

    def _headers(self) -> dict[str, str]:
        headers = {}
        while (line := self.f.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        return headers

    def read_part(self) -> tuple[dict[str, str], bytes]:
        assert self.f.readline() == f"--{BOUNDARY}\r\n".encode()
        headers = self._headers()
        body = self.f.read(int(headers["content-length"]))
        assert self.f.read(2) == b"\r\n"
        return headers, body

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def wait_for(condition, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture()
def preview_server(health):
    """(server, preview) with a thread offering a new frame every 10 ms, as a running node would."""
    preview = PreviewRenderer(fps=50, quality=80, max_width=128)
    srv = StatusServer("127.0.0.1", 0, health, preview=preview).start()
    stop = threading.Event()
    frames = [make_result(i) for i in range(3)]

    def offer():
        i = 0
        while not stop.wait(0.01):
            preview.offer(*frames[i % len(frames)])
            i += 1

    offerer = threading.Thread(target=offer, name="offer", daemon=True)
    offerer.start()
    yield srv, preview
    stop.set()
    offerer.join(TIMEOUT)
    srv.close()


def test_preview_streams_jpeg_parts_of_the_scaled_overlay(preview_server):
    srv, preview = preview_server
    client = MjpegClient(srv.port)
    try:
        assert client.status == b"200"
        assert client.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        for _ in range(3):
            headers, body = client.read_part()
            assert headers["content-type"] == "image/jpeg"
            image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (96, 128, 3)  # 160x120 scaled to max_width 128
    finally:
        client.close()


def test_preview_render_is_the_overlay_at_frame_size():
    image, result = make_result()
    preview = PreviewRenderer(quality=95)
    try:
        decoded = cv2.imdecode(np.frombuffer(preview.render(image, result), np.uint8), cv2.IMREAD_COLOR)
    finally:
        preview.close()
    from perception.viz import draw_scene

    assert decoded.shape == (H, W, 3)
    error = np.abs(decoded.astype(np.int16) - draw_scene(image, result, preview.alpha)).mean()
    assert error < 10 and error < np.abs(decoded.astype(np.int16) - image).mean() / 2  # the overlay, not the frame
    assert preview.renders == 0  # render() itself is not the render loop


def test_preview_renders_only_while_a_client_watches(preview_server):
    srv, preview = preview_server
    time.sleep(0.3)  # ~30 frames offered, nobody watching
    assert preview.renders == 0
    assert get(srv, "/health")[0] == 200 and preview.renders == 0  # other requests do not render either
    client = MjpegClient(srv.port)
    try:
        client.read_part()
        assert preview.clients == 1
        assert wait_for(lambda: preview.renders >= 3)
    finally:
        client.close()
    assert wait_for(lambda: preview.clients == 0), "the handler of a closed client did not end"
    time.sleep(0.1)  # a render that began before the client left may still finish
    settled = preview.renders
    time.sleep(0.3)
    assert preview.renders == settled


def test_a_client_that_leaves_mid_stream_does_not_break_the_server(preview_server):
    srv, preview = preview_server
    first = MjpegClient(srv.port)
    first.read_part()
    first.f.read(100)  # part-way into the next part
    first.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    first.close()
    assert wait_for(lambda: preview.clients == 0), "the handler of a closed client did not end"
    second = MjpegClient(srv.port)
    try:
        for _ in range(2):
            _, body = second.read_part()
            assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (96, 128, 3)
        status, _, body = get(srv, "/health")
        assert status == 200 and json.loads(body)["healthy"] is True
    finally:
        second.close()


def test_two_clients_at_once_share_the_renders(preview_server):
    srv, preview = preview_server
    a, b = MjpegClient(srv.port), MjpegClient(srv.port)
    try:
        a.read_part(), b.read_part()
        assert preview.clients == 2
        before = preview.renders
        time.sleep(0.3)
        assert preview.renders - before <= 0.3 * 50 + 2  # one render per frame for all clients, at most fps
    finally:
        a.close(), b.close()


def test_close_ends_the_stream_and_the_renderer(preview_server):
    srv, preview = preview_server
    client = MjpegClient(srv.port)
    try:
        client.read_part()
        t0 = time.monotonic()
        srv.close()
        assert time.monotonic() - t0 < 2.0
        assert not preview._thread.is_alive()
        assert not srv._thread.is_alive()
        # the open stream ends: whatever was in flight, then end of stream (or a reset)
        try:
            while client.f.read(65536):
                pass
        except ConnectionResetError:
            pass
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT).close()
    finally:
        client.close()
