"""The camera node's loop with a fake camera: frames carry ids and capture times, produced at a set rate.

Checks drop and staleness accounting, the latency bound, reconnect after the source dies or stalls, the
watchdog, clean shutdown, and a real video file as the source (lossless and real-time).
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from conftest import write_video

from perception.errors import InputError
from perception.frames import Detections, FrameResult, Letterbox
from perception.live.capture import LatestFrameCapture
from perception.live.node import CameraNode, NodeSettings, percentile
from perception.sinks import RotatingJsonlSink
from perception.sources import OpenCVGrabber, parse_camera_source


class FakeCamera:
    """A Grabber: ``fps`` frames per second, pixel [0, 0] holds the id (mod 256); it can end ("die") after
    ``die_after`` frames, or block in ``read`` after ``block_after`` frames until ``release`` is set."""

    def __init__(self, fps=100.0, die_after=None, block_after=None, pause_every=None, pause_s=0.0):
        self.fps = fps
        self.name = "fake"
        self.ended = False
        self.end_reason = ""
        self.die_after = die_after
        self.block_after = block_after
        self.pause_every, self.pause_s = pause_every, pause_s
        self.release = threading.Event()
        self.n = 0
        self.closed = False
        self._next = time.monotonic()

    def read(self):
        if self.die_after is not None and self.n >= self.die_after:
            self.end_reason = "unplugged"
            return None
        if self.block_after is not None and self.n >= self.block_after:
            self.release.wait(10)
            return None
        if self.pause_every and self.n and self.n % self.pause_every == 0:
            time.sleep(self.pause_s)
            self._next = time.monotonic()
        self._next += 1.0 / self.fps
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        image = np.zeros((24, 32, 3), np.uint8)
        image[0, 0, 0] = self.n % 256
        self.n += 1
        return image

    def close(self):
        self.closed = True


class Opener:
    """Hands out the given grabbers in turn; an exception in the list is raised instead (a failed open)."""

    def __init__(self, *items):
        self.items = list(items)
        self.opened = 0

    def __call__(self):
        item = self.items[min(self.opened, len(self.items) - 1)]
        self.opened += 1
        if isinstance(item, Exception):
            raise item
        return item() if callable(item) and not hasattr(item, "read") else item


class FakePipeline:
    """Frame → empty FrameResult after ``delay_s``; records (index, camera pixel id) of each frame seen."""

    def __init__(self, delay_s=0.0, fail_every=None, hang_on=None, hang_s=0.0):
        self.delay_s = delay_s
        self.fail_every = fail_every
        self.hang_on, self.hang_s = hang_on, hang_s
        self.seen: list[tuple[int, int]] = []

    def __call__(self, frame):
        self.seen.append((frame.index, int(frame.image[0, 0, 0])))
        if self.hang_on is not None and len(self.seen) == self.hang_on:
            time.sleep(self.hang_s)
        if self.fail_every and len(self.seen) % self.fail_every == 0:
            raise ValueError("model exploded")
        time.sleep(self.delay_s)
        h, w = frame.size_hw
        return FrameResult(
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            frame_size=(h, w),
            detections=Detections.empty(),
            det_class_names=("car",),
            seg=None,
            letterbox=Letterbox((h, w), (h, w), (0, 0, w, h), 1.0, 0, 0),
            timings_ms={"inference": self.delay_s * 1e3},
        )


class ListOutput:
    name = "list"

    def __init__(self):
        self.sent, self.errors, self.records, self.closed = 0, 0, [], False

    def publish(self, record, line, result):
        assert json.loads(line) == record
        self.records.append(record)
        self.sent += 1

    def close(self):
        self.closed = True


def _node(opener, pipeline, outputs=None, **kw):
    settings = NodeSettings(**{k: kw.pop(k) for k in list(kw) if k in ("max_age_s", "watchdog_s")})
    capture = LatestFrameCapture(opener, name="fake", reconnect_initial_s=0.05, reconnect_max_s=0.2, **kw)
    return CameraNode(capture, pipeline, outputs if outputs is not None else [ListOutput()], settings)


def _run(node, **kw):
    return node.run(threading.Event(), **kw)


def _watch_states(node, stop: threading.Event) -> list[str]:
    """The node's health state, sampled every 10 ms until ``stop``, in a background thread."""
    seen: list[str] = []

    def poll():
        while not stop.is_set():
            h = node.health()
            if not seen or seen[-1] != h["state"]:
                seen.append(h["state"])
            time.sleep(0.01)

    threading.Thread(target=poll, daemon=True).start()
    return seen


def test_latest_frame_wins_and_every_frame_is_accounted_for():
    cam = FakeCamera(fps=200)
    out = ListOutput()
    pipeline = FakePipeline(delay_s=0.02)  # 50 frames/s against a 200 frames/s camera
    node = _node(Opener(cam), pipeline, [out], max_age_s=1.0)
    s = _run(node, duration_s=1.0)
    assert s.stopped_by == "duration" and out.closed
    assert 30 <= s.frames_processed <= 60
    assert s.frames_dropped > 2 * s.frames_processed  # the camera is 4x faster: most frames are dropped
    # Every captured frame was processed, dropped, skipped as stale, or was still in the slot at the end.
    accounted = s.frames_processed + s.frames_dropped + s.frames_stale + s.frames_failed
    assert s.frames_captured - accounted in (0, 1)
    seqs = [r["live"]["seq"] for r in out.records]
    assert seqs == sorted(set(seqs)), "frames in capture order, none twice"
    # The ids the camera painted into the pixels match the capture sequence: the frame is the one captured.
    assert all(seq % 256 == pixel for seq, pixel in pipeline.seen)
    # The sequence numbers missing from the output are exactly the dropped and stale frames (plus the
    # last captured one if it was still waiting in the slot).
    missing = s.frames_captured - len(seqs)
    assert missing - (s.frames_dropped + s.frames_stale) in (0, 1)
    assert seqs[-1] < s.frames_captured


def test_no_frame_older_than_max_age_is_processed():
    # The camera pauses 250 ms every 5 frames while the pipeline takes 60 ms a frame: the frame waiting in
    # the slot through a pause grows old and must be skipped, not processed.
    cam = FakeCamera(fps=100, pause_every=5, pause_s=0.25)
    out = ListOutput()
    node = _node(Opener(cam), FakePipeline(delay_s=0.06), [out], max_age_s=0.1)
    s = _run(node, duration_s=1.5)
    ages = [r["live"]["age_ms"] for r in out.records]
    assert ages and max(ages) <= 100.0
    assert s.frames_processed > 5
    for r in out.records:
        live = r["live"]
        assert live["latency_ms"] >= live["age_ms"] >= 0
        assert abs(live["capture_unix_s"] - time.time()) < 10


def test_stale_frames_are_counted():
    class SlowTaker(FakePipeline):
        """The first frame takes 0.3 s: meanwhile the camera (10 frames/s) leaves a frame in the slot."""

    cam = FakeCamera(fps=10)
    node = _node(Opener(cam), SlowTaker(hang_on=1, hang_s=0.35), max_age_s=0.05)
    s = _run(node, duration_s=1.2)
    assert s.frames_stale >= 1 and s.frames_processed >= 3


def test_reconnects_after_the_source_dies_and_reports_it():
    first = FakeCamera(fps=100, die_after=10)
    opener = Opener(first, InputError("fake: cannot open the camera device"), lambda: FakeCamera(fps=100))
    out = ListOutput()
    node = _node(opener, FakePipeline(), [out], max_age_s=1.0)
    stop_watch = threading.Event()
    states = _watch_states(node, stop_watch)
    s = _run(node, max_frames=30)
    stop_watch.set()
    assert s.frames_processed == 30 and s.reconnects == 1 and opener.opened == 3
    assert first.closed, "the dead source was released"
    assert "reconnecting" in states and states.index("reconnecting") < len(states) - 1
    assert states[states.index("reconnecting") + 1 :].count("running") >= 1
    assert node.capture.last_error  # what went wrong stays visible in /health
    seqs = [r["live"]["seq"] for r in out.records]
    assert seqs == sorted(set(seqs)), "the sequence continues across the reconnect"


def test_a_stalled_source_is_abandoned_and_reopened():
    stuck = FakeCamera(fps=100, block_after=5)
    opener = Opener(stuck, lambda: FakeCamera(fps=100))
    node = _node(opener, FakePipeline(), max_age_s=1.0, stall_timeout_s=0.3)
    try:
        s = _run(node, max_frames=20)
    finally:
        stuck.release.set()  # let the abandoned reader return
    assert s.frames_processed == 20 and node.capture.counters.stalls == 1 and s.reconnects == 1
    assert "no frame for" in node.capture.last_error


def test_watchdog_flags_a_stuck_pipeline_and_health_says_so():
    node = _node(Opener(FakeCamera(fps=50)), FakePipeline(hang_on=3, hang_s=0.8), watchdog_s=0.3, max_age_s=1.0)
    stop_watch = threading.Event()
    states = _watch_states(node, stop_watch)
    s = _run(node, max_frames=8)
    stop_watch.set()
    assert "stuck" in states and s.frames_processed == 8
    assert states.index("stuck") < len(states) - 1, "it recovers once the frame comes through"


def test_failing_frames_are_counted_and_the_node_stays_up():
    out = ListOutput()
    node = _node(Opener(FakeCamera(fps=100)), FakePipeline(fail_every=3), [out], max_age_s=1.0)
    s = _run(node, max_frames=10)
    assert s.frames_processed == 10 and s.frames_failed >= 4 and len(out.records) == 10


def test_stop_event_ends_the_run_and_flushes_outputs(tmp_path):
    log_out = RotatingJsonlSink(tmp_path / "logs")
    node = _node(Opener(FakeCamera(fps=100)), FakePipeline(delay_s=0.005), [log_out], max_age_s=1.0)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    s = node.run(stop)
    assert s.stopped_by == "signal" and node.capture.state == "stopped"
    lines = [json.loads(x) for f in log_out.files for x in f.read_text().splitlines()]
    assert len(lines) == s.frames_processed > 10
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name.startswith("capture") or t.name == "watchdog"]


def test_health_snapshot_counts_and_latency():
    node = _node(Opener(FakeCamera(fps=100)), FakePipeline(delay_s=0.01), max_age_s=1.0)
    stop = threading.Event()
    snapshots = []
    threading.Timer(0.6, lambda: snapshots.append(node.health())).start()
    threading.Timer(0.8, stop.set).start()
    node.run(stop)
    h = snapshots[0]
    assert h["state"] == "running" and h["healthy"] is True
    assert 40 <= h["fps"] <= 110 and h["frames"]["processed"] > 20
    lat = h["latency_ms"]
    assert 10 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] < 200
    assert h["rss_bytes"] > 10 * 2**20 and h["outputs"] == {"list": {"sent": h["frames"]["processed"], "errors": 0}}
    assert node.health()["state"] == "stopping" and node.health()["healthy"] is False


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0


def test_a_video_file_read_losslessly_gives_every_frame(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", n=15, fps=25.0)
    spec = parse_camera_source(str(clip), realtime=False)
    out = ListOutput()
    capture = LatestFrameCapture(lambda: OpenCVGrabber(spec), name=spec.name, lossless=True, give_up_after=1)
    s = CameraNode(capture, FakePipeline(delay_s=0.01), [out], NodeSettings(max_age_s=10.0)).run(threading.Event())
    assert s.stopped_by == "end of source"
    assert s.frames_processed == 15 and s.frames_dropped == 0 and s.frames_stale == 0
    assert [r["live"]["seq"] for r in out.records] == list(range(15))


def test_a_video_file_in_real_time_plays_at_its_frame_rate(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", n=15, fps=25.0)
    spec = parse_camera_source(str(clip), realtime=True)
    out = ListOutput()
    capture = LatestFrameCapture(lambda: OpenCVGrabber(spec), name=spec.name, give_up_after=1)
    t0 = time.monotonic()
    s = CameraNode(capture, FakePipeline(), [out], NodeSettings(max_age_s=1.0)).run(threading.Event())
    wall = time.monotonic() - t0
    assert s.frames_processed == 15 and wall >= 14 / 25 * 0.95
    t = [r["t"] for r in out.records]
    assert (t[-1] - t[0]) == pytest.approx(14 / 25, abs=0.08), "capture times follow the clip's rate"


def test_a_looping_file_restarts_at_its_end(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", n=5, fps=25.0)
    spec = parse_camera_source(str(clip), realtime=False, loop=True)
    capture = LatestFrameCapture(lambda: OpenCVGrabber(spec), name=spec.name, lossless=True)
    pipeline = FakePipeline()
    s = CameraNode(capture, pipeline, [ListOutput()], NodeSettings(max_age_s=10.0)).run(
        threading.Event(), max_frames=12
    )
    assert s.frames_processed == 12 and s.reconnects == 0


def test_a_file_that_cannot_be_decoded_ends_the_node_with_its_reason(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"not a video " * 100)
    spec = parse_camera_source(str(bad))
    capture = LatestFrameCapture(lambda: OpenCVGrabber(spec), name=spec.name, give_up_after=1)
    s = CameraNode(capture, FakePipeline(), [ListOutput()]).run(threading.Event())
    assert s.frames_processed == 0 and "cannot open the video" in s.stopped_by


@pytest.mark.parametrize(
    "text, kind, target",
    [
        ("0", "v4l2", 0),
        ("/dev/video2", "v4l2", "/dev/video2"),
        ("rtsp://10.0.0.5:554/stream", "stream", "rtsp://10.0.0.5:554/stream"),
        ("http://cam.local/mjpg", "stream", "http://cam.local/mjpg"),
        ("videotestsrc ! videoconvert ! appsink", "gstreamer", "videotestsrc ! videoconvert ! appsink"),
    ],
)
def test_source_kinds(text, kind, target):
    spec = parse_camera_source(text)
    assert (spec.kind, spec.target) == (kind, target)


def test_bad_sources_are_named_in_the_error(tmp_path):
    with pytest.raises(InputError, match=r"missing\.mp4: no such file or device"):
        parse_camera_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="is a folder"):
        parse_camera_source(str(tmp_path))
    with pytest.raises(InputError, match="unknown stream scheme 'ftp://'"):
        parse_camera_source("ftp://x/y")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty.mp4: file is empty"):
        parse_camera_source(str(tmp_path / "empty.mp4"))
    with pytest.raises(InputError, match="--source is empty"):
        parse_camera_source("  ")


def test_soak_latency_histogram_matches_exact_percentiles_to_the_bin():
    from perception.live.soak import LatencyHistogram

    rng = np.random.default_rng(3)
    values = list(rng.gamma(4.0, 6.0, 5000)) + [2500.0]  # one beyond the histogram's range
    hist = LatencyHistogram(max_ms=2000.0, bin_ms=0.1)
    hist.add(values[:2000])
    hist.add(values[2000:])
    assert hist.n == len(values) and hist.max_ms == 2500.0
    for q in (50, 90, 99):
        exact = percentile(values, q)
        assert exact <= hist.percentile(q) <= exact + 0.1 + 1e-9
    assert hist.percentile(100) == 2500.0
    assert LatencyHistogram().percentile(50) is None


def test_ros2_detection_fields_carry_centre_size_class_score_and_track_id():
    """What the ROS 2 output puts in each vision_msgs/Detection2D, without ROS: boxes as centre and size in
    frame pixels, the class name, the score, and the id of the tracked object the box belongs to."""
    from perception.frames import Scene, SceneObject, Track
    from perception.live.ros2 import detection_fields

    dets = Detections(
        np.array([[100, 50, 140, 80], [300, 60, 320, 100], [10, 10, 20, 20]], np.float32),
        np.array([0.9, 0.7, 0.4], np.float32),
        np.array([0, 1, 0], np.int32),
    )
    tracked = SceneObject(track=Track(7, np.array([101, 51, 141, 81], np.float32), 0.9, 0))
    # Same place as detection 1 but another class: it must not lend its id.
    other_class = SceneObject(track=Track(9, np.array([300, 60, 320, 100], np.float32), 0.7, 0))
    result = FrameResult(
        frame_index=0,
        timestamp_s=0.0,
        frame_size=(200, 400),
        detections=dets,
        det_class_names=("car", "pedestrian"),
        seg=None,
        letterbox=Letterbox((200, 400), (200, 400), (0, 0, 400, 200), 1.0, 0, 0),
        scene=Scene(objects=(tracked, other_class)),
    )
    fields = detection_fields(result)
    assert [f["id"] for f in fields] == ["7", "", ""]
    assert [f["class_id"] for f in fields] == ["car", "pedestrian", "car"]
    assert fields[0]["center_x"] == 120.0 and fields[0]["center_y"] == 65.0
    assert (fields[1]["size_x"], fields[1]["size_y"]) == (20.0, 40.0)
    assert fields[2]["score"] == pytest.approx(0.4)
