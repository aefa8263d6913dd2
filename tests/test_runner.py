"""The offline loop: one JSONL line per frame, in order, flushed; video written; accounting of bad frames."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import synthetic_frame, write_video

from perception.config import PipelineConfig
from perception.errors import InputError
from perception.pipeline import build_pipeline
from perception.runner import run_source
from perception.sources import BadFrame, ImageFolderSource, VideoFileSource, open_source
from perception.types import Frame


def _pipeline(model):
    return build_pipeline(PipelineConfig(model=str(model)))


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_run_writes_one_valid_line_per_frame_and_a_playable_video(fused_model, video, tmp_path):
    summary = run_source(VideoFileSource(video), _pipeline(fused_model), tmp_path / "out", progress=False)
    lines = _lines(tmp_path / "out" / "results.jsonl")
    assert [r["frame"] for r in lines] == list(range(12))
    assert summary.ok and summary.frames_processed == 12 and summary.frames_read == 12
    first = lines[0]
    assert first["size"] == [108, 192]
    assert set(first["seg_area"]) == {"background", "drivable", "lane"}
    assert abs(sum(first["seg_area"].values()) - 1.0) < 1e-3
    assert set(first["timings_ms"]) == {
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "render",
        "preprocess_cpu",
        "postprocess_cpu",
    }
    assert np.allclose([r["t"] for r in lines], np.arange(12) / 10.0, atol=1e-3)
    boxes = [d for r in lines for d in r["detections"]]
    assert boxes, "the cls_prior=0.3 test model yields detections"
    for d in boxes:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= 192 and 0 <= y1 <= y2 <= 108, "boxes are in frame pixels, clipped to the frame"
        assert d["class"] in ("car", "pedestrian", "cyclist", "traffic_sign") and 0 < d["score"] <= 1
    cap = cv2.VideoCapture(str(tmp_path / "out" / "annotated.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 12 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 192
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["frames_processed"] == 12 and set(saved["stage_median_ms"]) >= {"decode", "inference", "write"}


def test_results_match_the_pipeline_run_frame_by_frame(fused_model, video, tmp_path):
    """The threaded runner must not reorder or mix frames: compare with a direct pipeline call."""
    pipeline = _pipeline(fused_model)
    run_source(VideoFileSource(video), pipeline, tmp_path, progress=False, write_video=False, queue_size=1)
    lines = _lines(tmp_path / "results.jsonl")
    for frame, line in zip(VideoFileSource(video), lines, strict=True):
        direct = pipeline(frame)
        assert line["frame"] == frame.index
        assert len(line["detections"]) == len(direct.detections)
        if len(direct.detections):
            np.testing.assert_allclose([d["box"] for d in line["detections"]], direct.detections.boxes_xyxy, atol=0.01)


def test_image_folder_with_unreadable_and_wrong_size_images(fused_model, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i:03d}.png"), synthetic_frame(i))
    (folder / "002.png").write_bytes(b"not a png")
    cv2.imwrite(str(folder / "003.png"), synthetic_frame(3, 100, 80))
    summary = run_source(ImageFolderSource(folder), _pipeline(fused_model), tmp_path / "out", progress=False)
    lines = _lines(tmp_path / "out" / "results.jsonl")
    assert [r["frame"] for r in lines] == [0, 1, 2, 3, 4]
    assert "error" in lines[2] and "not an image" in lines[2]["error"]
    assert lines[3]["error"] == "frame is 100x80, the stream is 192x108"
    assert "detections" in lines[4]
    assert summary.frames_processed == 3 and summary.frames_failed == 2 and not summary.ok
    assert "2 frame(s) skipped" in summary.problems[0] and "002.png" in summary.problems[0]


def test_truncated_video_keeps_results_and_says_how_many_frames_were_read(fused_model, tmp_path):
    full = write_video(tmp_path / "full.avi", n=40, fourcc="MJPG")
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    summary = run_source(VideoFileSource(cut), _pipeline(fused_model), tmp_path / "out", progress=False)
    lines = _lines(tmp_path / "out" / "results.jsonl")
    assert 0 < summary.frames_read < 40 and len(lines) == summary.frames_read
    assert [r["frame"] for r in lines] == list(range(len(lines)))
    assert not summary.ok
    assert f"decoding stopped after {summary.frames_read} of 40 frames" in summary.problems[0]


def test_max_frames_stops_early_without_reporting_truncation(fused_model, video, tmp_path):
    summary = run_source(VideoFileSource(video), _pipeline(fused_model), tmp_path, progress=False, max_frames=5)
    assert summary.frames_processed == 5 and summary.ok
    assert len(_lines(tmp_path / "results.jsonl")) == 5


class _SlowSource:
    """Frames with ids and timestamps at a set rate; raises mid-stream if asked."""

    name = "fake"
    fps = 100.0

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at
        self.expected_frames = n
        self.frames_read = 0
        self.closed = False

    def __iter__(self):
        for i in range(self.n):
            if i == self.fail_at:
                raise InputError("fake: camera vanished")
            time.sleep(0.002)
            self.frames_read += 1
            yield Frame(i, i / self.fps, synthetic_frame(i), "fake")

    def close(self):
        self.closed = True


def test_source_error_mid_stream_keeps_lines_written_so_far(fused_model, tmp_path):
    source = _SlowSource(10, fail_at=6)
    with pytest.raises(InputError, match="camera vanished"):
        run_source(source, _pipeline(fused_model), tmp_path, progress=False)
    assert source.closed
    assert [r["frame"] for r in _lines(tmp_path / "results.jsonl")] == list(range(6))
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["frames_processed"] == 6 and saved["problems"] == ["stopped early: fake: camera vanished"]


def test_interrupt_closes_outputs_and_flags_summary(fused_model, tmp_path, monkeypatch):
    pipeline = _pipeline(fused_model)
    calls = {"n": 0}
    real = pipeline.__class__.__call__

    def interrupting(self, frame):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, frame)

    monkeypatch.setattr(pipeline.__class__, "__call__", interrupting)
    summary = run_source(_SlowSource(50), pipeline, tmp_path, progress=False)
    assert summary.interrupted and summary.frames_processed == 3
    assert [r["frame"] for r in _lines(tmp_path / "results.jsonl")] == [0, 1, 2]
    assert not [t for t in threading.enumerate() if t.name in ("decode", "write")]


def test_sources_refuse_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no images"):
        open_source(tmp_path / "empty")
    (tmp_path / "notes.mp4").write_text("hello " * 100)
    with pytest.raises(InputError, match=r"notes\.mp4: not a video"):
        open_source(tmp_path / "notes.mp4")
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"zero\.mp4: file is empty"):
        open_source(tmp_path / "zero.mp4")


def test_single_image_file_is_a_one_frame_source(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), synthetic_frame(0))
    items = list(open_source(tmp_path / "a.jpg"))
    assert len(items) == 1 and isinstance(items[0], Frame)
    (tmp_path / "b.png").write_bytes(b"xx")
    assert isinstance(list(open_source(tmp_path / "b.png"))[0], BadFrame)
