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
from perception.frames import Frame
from perception.pipeline import build_pipeline
from perception.runner import run_source
from perception.sinks import SCHEMA_PATH
from perception.sources import BadFrame, ImageFolderSource, VideoFileSource, open_source


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
        "fusion",
        "render",
        "preprocess_cpu",
        "postprocess_cpu",
    }
    assert np.allclose([r["t"] for r in lines], np.arange(12) / 10.0, atol=1e-3)
    # No camera given: the run calibrates its own from the lane lines; 1.2 s of a random model's paint does
    # not calibrate it, so lanes stay in the image only and there are no distances, and the scene says so.
    assert all(r["scene"]["camera"]["source"] == "auto" for r in lines)
    assert all(r["scene"]["camera"]["state"] == "calibrating" for r in lines)
    assert all(ln["coeffs_m"] is None and ln["points_px"] for r in lines for ln in r["scene"]["lanes"])
    assert all(o["distance_m"] is None for r in lines for o in r["scene"]["objects"])
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text())
    for record in lines:
        jsonschema.validate(record, schema)
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


@pytest.mark.parametrize("batch_size, written", [(1, [0, 1, 2]), (4, list(range(12)))])
def test_interrupt_closes_outputs_and_flags_summary(fused_model, tmp_path, monkeypatch, batch_size, written):
    """Ctrl-C during the 4th network call: what was processed before it is written, nothing after."""
    pipeline = _pipeline(fused_model)
    calls = {"n": 0}
    real = pipeline.__class__.process_batch  # the runner calls process_batch (batch_size frames at a time)

    def interrupting(self, frames, fuse=True, prepared=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, frames, fuse, prepared)

    monkeypatch.setattr(pipeline.__class__, "process_batch", interrupting)
    summary = run_source(_SlowSource(50), pipeline, tmp_path, progress=False, batch_size=batch_size)
    assert summary.interrupted and summary.frames_processed == len(written)
    assert [r["frame"] for r in _lines(tmp_path / "results.jsonl")] == written
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


# --- batching ----------------------------------------------------------------------------------------------
def _record_batches(monkeypatch) -> list[int]:
    """Patch Pipeline.process_batch to record the size of every network call."""
    from perception.pipeline import Pipeline

    sizes: list[int] = []
    real = Pipeline.process_batch

    def recording(self, frames, fuse=True, prepared=None):
        sizes.append(len(frames))
        return real(self, frames, fuse, prepared)

    monkeypatch.setattr(Pipeline, "process_batch", recording)
    return sizes


def _assert_same_results(a: list[dict], b: list[dict]) -> None:
    """Line by line: same frame, time, size, error, classes; boxes, scores, seg_area to rounding (timings ignored)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in ("detections", "seg_area", "timings_ms")} == {
            k: v for k, v in y.items() if k not in ("detections", "seg_area", "timings_ms")
        }
        assert ("error" in x) == ("error" in y)
        if "error" in x:
            continue
        assert [d["class_id"] for d in x["detections"]] == [d["class_id"] for d in y["detections"]], x["frame"]
        np.testing.assert_allclose([d["box"] for d in x["detections"]], [d["box"] for d in y["detections"]], atol=0.011)
        np.testing.assert_allclose(
            [d["score"] for d in x["detections"]], [d["score"] for d in y["detections"]], atol=2e-4
        )
        assert x["seg_area"] == pytest.approx(y["seg_area"], abs=2e-5)


def test_batch_4_writes_the_lines_of_batch_1_in_order(fused_model, tmp_path, monkeypatch):
    video = write_video(tmp_path / "clip.mp4", n=10)  # batches of 4, 4 and a last partial one of 2
    pipeline = _pipeline(fused_model)
    sizes = _record_batches(monkeypatch)
    one = run_source(VideoFileSource(video), pipeline, tmp_path / "b1", progress=False, write_video=False)
    assert sizes == [1] * 10
    sizes.clear()
    four = run_source(
        VideoFileSource(video), pipeline, tmp_path / "b4", progress=False, write_video=False, batch_size=4
    )
    assert sizes == [4, 4, 2]
    a, b = _lines(tmp_path / "b1" / "results.jsonl"), _lines(tmp_path / "b4" / "results.jsonl")
    assert [r["frame"] for r in b] == list(range(10))
    assert sum(len(r["detections"]) for r in b) > 0
    assert len({json.dumps(r["detections"]) for r in b}) > 1, "frames differ, so a mix-up would show"
    _assert_same_results(a, b)
    assert one.ok and four.ok and four.frames_processed == four.frames_read == 10
    # Per-frame timings of a batch are the batch's time divided by its size: present for every frame.
    assert all({"preprocess", "inference", "postprocess"} <= set(r["timings_ms"]) for r in b)
    saved = json.loads((tmp_path / "b4" / "summary.json").read_text())
    assert saved["peak_rss_mb"] > 0 and saved["frames_processed"] == 10
    assert four.peak_rss_mb > 0 and "peak resident memory" in four.format()


def test_batched_run_keeps_bad_frames_at_their_position(fused_model, tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"{i:03d}.png"), synthetic_frame(i))
    (folder / "003.png").write_bytes(b"not a png")
    cv2.imwrite(str(folder / "005.png"), synthetic_frame(5, 100, 80))
    pipeline = _pipeline(fused_model)
    sizes = _record_batches(monkeypatch)
    run_source(ImageFolderSource(folder), pipeline, tmp_path / "b1", progress=False, write_video=False)
    sizes.clear()
    summary = run_source(
        ImageFolderSource(folder), pipeline, tmp_path / "b4", progress=False, write_video=False, batch_size=4
    )
    assert sizes == [3, 1, 2], "a bad frame flushes the frames before it"
    lines = _lines(tmp_path / "b4" / "results.jsonl")
    assert [r["frame"] for r in lines] == list(range(8)), "exactly one line per frame position, in order"
    assert [i for i, r in enumerate(lines) if "error" in r] == [3, 5]
    assert "not an image" in lines[3]["error"] and lines[5]["error"] == "frame is 100x80, the stream is 192x108"
    assert all("detections" in r for i, r in enumerate(lines) if i not in (3, 5))
    _assert_same_results(_lines(tmp_path / "b1" / "results.jsonl"), lines)
    assert summary.frames_processed == 6 and summary.frames_failed == 2 and summary.frames_read == 8
    assert "2 frame(s) skipped" in summary.problems[0] and "003.png" in summary.problems[0]
    assert json.loads((tmp_path / "b4" / "summary.json").read_text())["peak_rss_mb"] > 0


def test_cli_batch_option_and_preset(capsys, fused_model, video, tmp_path, monkeypatch):
    from perception.cli import main

    sizes = _record_batches(monkeypatch)
    out = tmp_path / "o"
    code = main(["run", str(video), "--model", str(fused_model), "--out", str(out), "--batch", "3", "--no-video", "-q"])
    assert code == 0, capsys.readouterr().err
    assert sizes == [3, 3, 3, 3]
    assert [r["frame"] for r in _lines(out / "results.jsonl")] == list(range(12))
    sizes.clear()
    preset = tmp_path / "preset.yaml"
    preset.write_text(f"model: {fused_model}\noutput:\n  video: false\nrunner:\n  batch_size: 5\n")
    assert main(["run", str(video), "--config", str(preset), "--out", str(tmp_path / "p"), "-q"]) == 0
    assert sizes == [5, 5, 2]
    assert len(_lines(tmp_path / "p" / "results.jsonl")) == 12


def test_preprocessing_overlaps_in_the_decode_thread_and_matches_inline(fused_model, tmp_path):
    """The runner preprocesses in its decode thread; results equal the inline path frame for frame."""
    pipeline = _pipeline(fused_model)
    threads: set[str] = set()
    real_prepare = pipeline.prepare

    def prepare(frame):
        threads.add(threading.current_thread().name)
        return real_prepare(frame)

    pipeline.prepare = prepare
    summary = run_source(_SlowSource(6), pipeline, tmp_path / "a", progress=False, write_video=False, batch_size=2)
    assert summary.ok and threads == {"decode"}
    assert "preprocess" in summary.stage_ms
    inline = [pipeline.process_batch([f])[0] for f in _SlowSource(6)]
    for record, ref in zip(_lines(tmp_path / "a" / "results.jsonl"), inline, strict=True):
        assert [d["box"] for d in record["detections"]] == [
            [round(float(v), 2) for v in b] for b in ref.detections.boxes_xyxy
        ]


def test_sources_read_a_range_with_the_whole_sources_indices_timestamps_and_images(tmp_path):
    video = write_video(tmp_path / "clip.mp4", n=30, fps=10.0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(7):
        cv2.imwrite(str(folder / f"{i:03d}.png"), synthetic_frame(i))
    for path, start, end in ((video, 13, 21), (video, 25, None), (folder, 2, 5)):
        whole = [f for f in open_source(path) if start <= f.index and (end is None or f.index < end)]
        part = list(open_source(path, start=start, end=end))
        assert [f.index for f in part] == [f.index for f in whole] and part
        assert [f.timestamp_s for f in part] == [f.timestamp_s for f in whole]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(part, whole, strict=True))
    assert list(open_source(video, start=40)) == [], "a range past the end is empty, not an error"
