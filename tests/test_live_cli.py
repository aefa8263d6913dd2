"""`perception camera` and `perception soak` end to end: a tiny model, a generated clip, real sockets."""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from importlib import resources

import pytest
from conftest import write_video

from perception.cli import build_parser, main
from perception.cli.live import build_camera_node


def _udp_listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Room for a whole run's datagrams (a few kB each): the test reads them only at the end.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    return sock


def _drain(sock) -> list[dict]:
    out = []
    while True:
        try:
            out.append(json.loads(sock.recv(70000)))
        except TimeoutError:
            return out


def _validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(resources.files("perception").joinpath("schema/frame.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def test_camera_on_a_file_publishes_every_frame_over_udp_and_to_log_files(fused_model, tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", n=10, fps=25.0)
    sock = _udp_listener()
    summary = tmp_path / "summary.json"
    code = main(
        [
            "camera",
            "--source",
            str(clip),
            "--model",
            str(fused_model),
            "--udp",
            f"127.0.0.1:{sock.getsockname()[1]}",
            "--log-dir",
            str(tmp_path / "logs"),
            "--summary",
            str(summary),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    records = _drain(sock)
    assert [r["live"]["seq"] for r in records] == list(range(10)), "a file read losslessly: every frame, in order"
    validator = _validator()
    for r in records:
        validator.validate(r)
        assert r["live"]["latency_ms"] >= r["live"]["age_ms"] >= 0
    logged = [
        json.loads(line) for f in (tmp_path / "logs").glob("camera-*.jsonl") for line in f.read_text().splitlines()
    ]
    assert [r["frame"] for r in logged] == list(range(10))
    s = json.loads(summary.read_text())
    assert s["frames_processed"] == 10 and s["stopped_by"] == "end of source"
    assert "dropped 0" in err and "udp://127.0.0.1" in err


def test_camera_in_real_time_serves_health_metrics_and_preview(fused_model, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", n=40, fps=25.0)
    args = build_parser().parse_args(
        ["camera", "--source", str(clip), "--model", str(fused_model), "--realtime", "--http", "127.0.0.1:0"]
    )
    node, server = build_camera_node(args)
    assert server.host == "127.0.0.1", "loopback unless an address is configured"
    server.start()
    stop = threading.Event()
    runner = threading.Thread(target=lambda: node.run(stop), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        health = None
        while time.monotonic() < deadline:
            try:
                health = json.loads(urllib.request.urlopen(f"{server.url}/health", timeout=2).read())
                if health["frames"]["processed"] >= 5:
                    break
            except urllib.error.HTTPError as err:
                assert err.code == 503  # starting: no frame yet
            time.sleep(0.05)
        assert health is not None and health["state"] == "running" and health["source_fps"] == 25.0
        metrics = urllib.request.urlopen(f"{server.url}/metrics", timeout=2).read().decode()
        assert "perception_up 1" in metrics and "perception_frames_processed_total" in metrics
        stream = urllib.request.urlopen(f"{server.url}/preview.mjpg", timeout=5)
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        data = b""
        while b"\xff\xd9" not in data:  # the end of the first JPEG
            data += stream.read(1024)
        stream.close()
        assert b"Content-Type: image/jpeg" in data and b"\xff\xd8" in data
    finally:
        stop.set()
        runner.join(5)
        server.close()
    assert not runner.is_alive()


def test_a_port_in_use_is_a_clear_error_before_the_model_loads(fused_model, tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", n=3)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        code = main(["camera", "--source", str(clip), "--model", str(fused_model), "--http", f"127.0.0.1:{port}"])
    finally:
        busy.close()
    assert code == 1
    assert f"127.0.0.1:{port}: port already in use" in capsys.readouterr().err


def test_missing_sources_are_named(fused_model, tmp_path, capsys):
    assert main(["camera", "--source", str(tmp_path / "nope.mp4"), "--model", str(fused_model)]) == 1
    assert "nope.mp4: no such file or device" in capsys.readouterr().err
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 200)
    assert main(["camera", "--source", str(bad), "--model", str(fused_model)]) == 1
    assert "bad.mp4: cannot open the video" in capsys.readouterr().err


def test_an_absent_camera_device_keeps_the_node_retrying(fused_model, capsys):
    """No such V4L2 device: the node stays up, reconnecting with back-off, and says why at the end."""
    code = main(["camera", "--source", "/dev/video63", "--model", str(fused_model), "--duration", "1.0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "/dev/video63: cannot open the camera device" in err and "stopped by: duration" in err


def test_soak_writes_its_report(fused_model, tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", n=10, fps=25.0)
    out = tmp_path / "soak"
    code = main(
        [
            "soak",
            "--source",
            str(clip),
            "--model",
            str(fused_model),
            "--minutes",
            "0.06",
            "--interval-s",
            "1",
            "--warmup-s",
            "0",
            "--out",
            str(out),
        ]
    )
    report = json.loads((out / "soak.json").read_text())
    assert code == (0 if report["ok"] else 1)
    rows = (out / "soak.csv").read_text().splitlines()
    assert rows[0].startswith("t_s,rss_mb,fps") and len(rows) - 1 >= 3
    # A looping 25 frames/s clip for ~3.6 s: about 90 frames, all in real time.
    assert 50 <= report["frames_processed"] <= 100 and report["frames_failed"] == 0
    assert report["rss_start_mb"] > 0 and report["latency_ms"]["p99"] > 0
    assert (out / "soak.png").stat().st_size > 1000
    assert "verdict:" in capsys.readouterr().out


def test_live_config_section_is_validated(tmp_path, fused_model, capsys):
    cfg = tmp_path / "node.yaml"
    cfg.write_text("live:\n  max_age_ms: 100\n  htpp: 8080\n")
    code = main(["camera", "--source", "0", "--config", str(cfg), "--model", str(fused_model)])
    assert code == 1 and "unknown key 'live.htpp'" in capsys.readouterr().err


def test_unparseable_addresses_are_config_errors(tmp_path, fused_model, capsys):
    clip = write_video(tmp_path / "clip.mp4", n=3)
    code = main(["camera", "--source", str(clip), "--model", str(fused_model), "--udp", "localhost:notaport"])
    assert code == 1 and "--udp 'localhost:notaport'" in capsys.readouterr().err
    assert isinstance(build_parser().parse_args(["camera", "--source", "0"]), argparse.Namespace)


class MjpegCamera:
    """A minimal HTTP MJPEG camera on 127.0.0.1 (what an IP camera serves); ``garbage`` sends random bytes."""

    def __init__(self, port: int = 0, frames_per_s: float = 20.0, garbage: bool = False):
        import http.server

        import cv2
        import numpy as np
        from conftest import synthetic_frame

        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=f")
                self.end_headers()
                i = 0
                try:
                    while not camera.stopping:
                        if garbage:
                            self.wfile.write(np.random.default_rng(i).bytes(4096))
                        else:
                            jpg = cv2.imencode(".jpg", synthetic_frame(i))[1].tobytes()
                            head = f"--f\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n"
                            self.wfile.write(head.encode() + jpg + b"\r\n")
                        self.wfile.flush()
                        i += 1
                        time.sleep(1.0 / frames_per_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._handler = Handler
        self.port = port
        self.start()

    def start(self):
        """Listen (again, on the same port after ``close``); OSError while the port is still taken."""
        import http.server

        class Server(http.server.ThreadingHTTPServer):
            # The old server's last connection may linger (FIN_WAIT) while the client holds it open: a
            # camera that comes back on its port must still be able to bind it.
            allow_reuse_port = True

        self.server = Server(("127.0.0.1", self.port), self._handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.stopping = False
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        if not self.stopping:
            self.stopping = True
            self.server.shutdown()
            self.server.server_close()


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return cond()


def _stream_node(fused_model, url: str):
    from perception.config import PipelineConfig
    from perception.live.capture import LatestFrameCapture
    from perception.live.node import CameraNode, NodeSettings
    from perception.pipeline import build_pipeline
    from perception.sources import OpenCVGrabber, parse_camera_source

    spec = parse_camera_source(url)
    assert spec.kind == "stream"
    capture = LatestFrameCapture(
        lambda: OpenCVGrabber(spec), name=spec.name, stall_timeout_s=1.0, reconnect_initial_s=0.1, reconnect_max_s=0.3
    )
    pipeline = build_pipeline(PipelineConfig(model=str(fused_model)))
    return CameraNode(capture, pipeline, [], NodeSettings(max_age_s=1.0))


def test_an_http_stream_that_dies_is_reconnected_when_it_comes_back(fused_model):
    """An IP-camera-like MJPEG stream: frames flow; the server goes away (the node keeps running and says
    it is reconnecting); a server comes back on the same port; frames flow again."""
    camera = MjpegCamera()
    node = _stream_node(fused_model, f"http://127.0.0.1:{camera.port}/stream.mjpg")
    stop = threading.Event()
    runner = threading.Thread(target=lambda: node.run(stop), daemon=True)
    runner.start()
    try:
        assert _wait(lambda: node.summary.frames_processed >= 5, 20) and node.state() == "running"
        camera.close()
        assert _wait(lambda: node.state() in ("reconnecting", "stalled"), 10), node.state()
        before = node.summary.frames_processed
        assert _wait(lambda: _restart(camera), 5), "the port is free again"
        assert _wait(lambda: node.summary.frames_processed >= before + 5, 20), "frames flow after the reconnect"
        assert node.capture.counters.reconnects >= 1 and node.state() == "running"
    finally:
        stop.set()
        runner.join(10)
        camera.close()
    assert not runner.is_alive()


def _restart(camera: MjpegCamera) -> bool:
    try:
        camera.start()
    except OSError:
        return False
    return True


def test_a_stream_of_garbage_never_crashes_the_node(fused_model):
    """Random bytes instead of video: no frame comes through; the node keeps retrying and stays up."""
    camera = MjpegCamera(garbage=True)
    node = _stream_node(fused_model, f"http://127.0.0.1:{camera.port}/stream.mjpg")
    try:
        summary = node.run(threading.Event(), duration_s=3.0)
    finally:
        camera.close()
    assert summary.stopped_by == "duration" and summary.frames_processed == 0 and summary.frames_failed == 0
    assert node.capture.last_error, "why no frame came is reported"


@pytest.mark.realtime
def test_the_real_clip_as_a_camera_at_its_rate_with_health_preview_and_udp():
    """Issue 8's check: the real clip played at its 25 frames/s through the shipped model and its camera,
    /health and a preview served, every processed frame published over UDP, drops reported."""
    from conftest import require_real_clip

    clip = require_real_clip()
    sock = _udp_listener()
    args = build_parser().parse_args(
        [
            "camera",
            "--source",
            str(clip),
            "--realtime",
            "--config",
            "configs/pipeline/solidwhiteright.yaml",
            "--http",
            "127.0.0.1:0",
            "--udp",
            f"127.0.0.1:{sock.getsockname()[1]}",
        ]  # fmt: skip
    )
    node, server = build_camera_node(args)
    server.start()
    stop = threading.Event()
    records: list[dict] = []

    def receive():  # read as they come, as a consumer would (no reliance on the socket's buffer)
        while not stop.is_set() or records_pending():
            try:
                records.append(json.loads(sock.recv(70000)))
            except TimeoutError:
                continue

    def records_pending() -> bool:
        return len(records) < node.summary.frames_processed

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    summaries = []
    runner = threading.Thread(target=lambda: summaries.append(node.run(stop, max_frames=75)), daemon=True)
    runner.start()
    try:
        assert _wait(lambda: node.summary.frames_processed >= 40, 20)
        health = json.loads(urllib.request.urlopen(f"{server.url}/health", timeout=2).read())
        assert health["state"] == "running" and health["source_fps"] == 25.0
        assert "dropped" in health["frames"] and "stale" in health["frames"]
        stream = urllib.request.urlopen(f"{server.url}/preview.mjpg", timeout=5)
        data = b""
        while b"\xff\xd9" not in data:
            data += stream.read(4096)
        stream.close()
        runner.join(20)
    finally:
        stop.set()
        server.close()
        receiver.join(5)
    (s,) = summaries
    assert s.frames_processed == 75
    assert 75 / s.wall_s == pytest.approx(25.0, rel=0.15), "played at the clip's rate, not faster"
    assert len(records) == 75 and all(r["scene"]["ego_lane"] is not None for r in records[5:])
    assert s.latency_ms["p99"] < 100
