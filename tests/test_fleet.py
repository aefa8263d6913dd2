"""`perception fleet` on a local Ray cluster: equal to one process frame for frame, a killed worker loses
nothing, a re-run skips finished work, sharded evaluation equals the single-process one."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_video

pytest.importorskip("ray")

from perception.cli import main  # noqa: E402
from perception.config import PipelineConfig  # noqa: E402
from perception.errors import InputError  # noqa: E402
from perception.fleet.inputs import gather_inputs  # noqa: E402
from perception.fleet.merge import MergeError, load_ranges  # noqa: E402
from perception.fleet.ranges import plan_ranges  # noqa: E402
from perception.fleet.run import run_fleet  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    import ray

    yield
    if ray.is_initialized():
        ray.shutdown()


def _single_process(video: Path, model: Path, out: Path) -> list[dict]:
    code = main(["-q", "run", str(video), "--model", str(model), "--out", str(out), "--no-video", "--batch", "4"])
    assert code == 0
    return _lines(out / "results.jsonl")


def _lines(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("timings_ms", None)  # timings differ between any two runs
    return rows


def _drives(tmp_path: Path, lengths: list[int]) -> list[Path]:
    folder = tmp_path / "drives"
    folder.mkdir()
    return [write_video(folder / f"drive{i}.mp4", n=n, fps=10.0) for i, n in enumerate(lengths)]


def test_plan_ranges_tile_the_drive_and_leave_the_last_open():
    assert plan_ranges(25, 10) == [(0, 10), (10, 20), (20, None)]
    assert plan_ranges(20, 10) == [(0, 10), (10, None)]
    assert plan_ranges(None, 10) == [(0, None)]
    assert plan_ranges(3, 10) == [(0, None)]
    with pytest.raises(ValueError):
        plan_ranges(10, 0)


def test_inputs_from_manifests_globs_and_paths(tmp_path):
    videos = _drives(tmp_path, [3, 3])
    (tmp_path / "frames").mkdir()
    cam = tmp_path / "cam.yaml"
    cam.write_text("x: 1\n")
    csv = tmp_path / "m.csv"
    csv.write_text(f"path,id,camera\ndrives/drive0.mp4,car7_monday,cam.yaml\n{tmp_path / 'frames'},,\n")
    items = gather_inputs([str(csv), str(tmp_path / "drives" / "*.mp4")])
    assert [(i.id, i.kind) for i in items] == [("car7_monday", "video"), ("frames", "images"), ("drive1", "video")]
    assert items[0].camera == str(cam.resolve()) and items[2].camera is None  # drive0 listed twice: kept once
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(json.dumps({"path": str(videos[0])}) + "\n" + json.dumps({"path": str(videos[1])}) + "\n")
    assert [i.id for i in gather_inputs([str(jsonl)])] == ["drive0", "drive1"]
    with pytest.raises(InputError, match=r"m2.csv:3: .*missing.mp4: no such file"):
        (tmp_path / "m2.csv").write_text(f"path\n{videos[0]}\n{tmp_path / 'missing.mp4'}\n")
        gather_inputs([str(tmp_path / "m2.csv")])
    with pytest.raises(InputError, match="needs a 'path' column"):
        (tmp_path / "m3.csv").write_text("file\nx.mp4\n")
        gather_inputs([str(tmp_path / "m3.csv")])
    with pytest.raises(InputError, match="matches nothing"):
        gather_inputs([str(tmp_path / "*.avi")])


def test_two_workers_equal_one_process_frame_for_frame(fused_model, tmp_path):
    videos = _drives(tmp_path, [23, 17, 9])
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    import cv2
    from conftest import synthetic_frame

    for i in range(11):
        cv2.imwrite(str(frames_dir / f"{i:04d}.png"), synthetic_frame(i))
    inputs = gather_inputs([*map(str, videos), str(frames_dir)])
    config = PipelineConfig(model=str(fused_model))
    summary = run_fleet(inputs, tmp_path / "out", config, workers=2, range_frames=5, batch=4, progress=False)
    assert not summary.failed and summary.ranges_run == 5 + 4 + 2 + 3
    for item, video in zip(inputs, [*videos, frames_dir], strict=True):
        single = _single_process(video, fused_model, tmp_path / "single" / item.id)
        fleet = _lines(tmp_path / "out" / item.id / "results.jsonl")
        assert fleet == single, item.id
    totals = json.loads((tmp_path / "out" / "fleet_summary.json").read_text())["totals"]
    assert totals["frames"] == 23 + 17 + 9 + 11 and totals["drives"] == 4
    per_class = totals["detections_per_class"]
    assert sum(per_class.values()) == sum(
        len(r["detections"]) for d in inputs for r in _lines(tmp_path / "out" / d.id / "results.jsonl")
    )
    assert (tmp_path / "out" / "fleet_drives.parquet").is_file()


def test_killing_a_worker_mid_run_loses_and_duplicates_nothing(fused_model, tmp_path):
    videos = _drives(tmp_path, [60, 60, 60])
    inputs = gather_inputs([str(v) for v in videos])
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_one(pids: list[int]) -> None:
        def killer():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # once a few ranges are done, mid-run
                if len(list(out.glob("*/ranges/*.npz"))) >= 3:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
                time.sleep(0.002)

        threading.Thread(target=killer, daemon=True).start()

    summary = run_fleet(
        inputs,
        out,
        PipelineConfig(model=str(fused_model)),
        workers=2,
        range_frames=3,
        batch=1,
        progress=False,
        on_workers=kill_one,
    )
    assert killed, "the worker was killed"
    assert summary.worker_restarts >= 1, "ranges were finished by the restarted worker: the kill came mid-run"
    assert not summary.failed
    for item in inputs:
        rows = _lines(out / item.id / "results.jsonl")
        assert [r["frame"] for r in rows] == list(range(60)), "every frame once, in order"
        assert len(list((out / item.id / "ranges").glob("*.npz"))) == 20  # a killed write leaves only a temp
    single = _single_process(videos[0], fused_model, tmp_path / "single")
    assert _lines(out / inputs[0].id / "results.jsonl") == single


def test_a_rerun_skips_finished_drives_and_ranges(fused_model, tmp_path):
    videos = _drives(tmp_path, [12, 12])
    inputs = gather_inputs([str(v) for v in videos])
    out = tmp_path / "out"
    config = PipelineConfig(model=str(fused_model))
    first = run_fleet(inputs, out, config, workers=2, range_frames=4, progress=False)
    assert first.ranges_run == 6
    before = _lines(out / "drive1" / "results.jsonl")
    # Simulate a crash in drive1's merge after one of its ranges was lost: only that range is redone.
    (out / "drive1" / "summary.json").unlink()
    (out / "drive1" / "results.jsonl").unlink()
    (out / "drive1" / "ranges" / "000000004-000000008.npz").unlink()
    again = run_fleet(inputs, out, config, workers=2, range_frames=4, progress=False)
    assert (again.skipped_drives, again.ranges_run, again.ranges_skipped) == (1, 1, 2)
    assert _lines(out / "drive1" / "results.jsonl") == before
    assert [d["id"] for d in again.drives] == ["drive0", "drive1"]


def test_merge_refuses_ranges_that_do_not_tile_the_drive(fused_model, tmp_path):
    videos = _drives(tmp_path, [12])
    out = tmp_path / "out"
    run_fleet(
        gather_inputs([str(videos[0])]),
        out,
        PipelineConfig(model=str(fused_model)),
        workers=2,
        range_frames=4,
        progress=False,
    )
    ranges = out / "drive0" / "ranges"
    assert sum(len(r["frame"]) for r in load_ranges(ranges)) == 12
    (ranges / "000000004-000000008.npz").unlink()
    with pytest.raises(MergeError, match="range starting at frame 8, expected one at 4"):
        load_ranges(ranges)


def test_fleet_eval_equals_single_process_eval(fused_model, tmp_path):
    from perception.data.registry import build_dataset
    from perception.eval.evaluate import evaluate
    from perception.eval.predictors import build_predictor
    from perception.fleet.evaluate import fleet_evaluate

    data = tmp_path / "synth"
    assert main(["-q", "synth", "--n", "0", "--clips", "1", "--clip-frames", "13", "--size", "320x180",
                 "--workers", "1", "--seed", "5", "--out", str(data)]) == 0  # fmt: skip
    single = evaluate(
        build_predictor(str(fused_model), threads=1), build_dataset("synthetic", str(data), split="clips")
    )
    sharded = fleet_evaluate(str(fused_model), "synthetic", str(data), "clips", workers=2, shard_size=4, progress=False)
    assert set(single.metrics) == set(sharded.metrics)
    assert any(k.startswith("video.") for k in single.metrics) and "det.map50" in single.metrics
    for k, v in single.metrics.items():
        if k.startswith("speed."):
            continue  # timings
        w = sharded.metrics[k]
        assert (math.isnan(v) and math.isnan(w)) or w == pytest.approx(v, rel=1e-12, abs=1e-12), k
    assert np.array_equal(single.confusion, sharded.confusion)
    assert [f["index"] for f in sharded.frames] == list(range(13))


def test_fleet_commands_from_the_command_line(fused_model, tmp_path, capsys):
    videos = _drives(tmp_path, [8, 8])
    out = tmp_path / "out"
    code = main(["-q", "fleet", "run", str(tmp_path / "drives" / "*.mp4"), "--out", str(out), "--model",
                 str(fused_model), "--workers", "2", "--range-frames", "3"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0 and "fleet: 2 drives, 16 frames" in stdout
    assert {p.name for p in out.iterdir()} >= {"drive0", "drive1", "fleet_summary.json"}
    assert json.loads((out / "drive0" / "summary.json").read_text())["frames"] == 8
    code = main(["-q", "fleet", "scale", str(videos[0]), "--out", str(tmp_path / "scale"), "--model",
                 str(fused_model), "--workers", "1,2", "--range-frames", "2"])  # fmt: skip
    table = capsys.readouterr().out
    assert code == 0 and "efficiency" in table
    assert [line.split()[0] for line in table.splitlines()[2:4]] == ["1", "2"]


def test_fleet_run_writes_annotated_videos_and_fleet_eval_from_the_command_line(fused_model, tmp_path, capsys):
    import cv2

    videos = _drives(tmp_path, [9])
    out = tmp_path / "out"
    assert main(["-q", "fleet", "run", str(videos[0]), "--out", str(out), "--model", str(fused_model),
                 "--range-frames", "4", "--video"]) == 0  # fmt: skip
    cap = cv2.VideoCapture(str(out / "drive0" / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 9
    cap.release()
    data = tmp_path / "synth"
    assert main(["-q", "synth", "--n", "0", "--clips", "1", "--clip-frames", "6", "--size", "320x180",
                 "--workers", "1", "--seed", "9", "--out", str(data)]) == 0  # fmt: skip
    capsys.readouterr()
    code = main(["-q", "fleet", "eval", "--data", f"synthetic:{data}", "--split", "clips", "--model",
                 str(fused_model), "--shard-size", "4", "--out", str(tmp_path / "ev")])  # fmt: skip
    assert code == 0 and "seg.iou.drivable" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["metrics"]["frames"] == 6 and metrics["workers"] == 2
    bad = main(["-q", "fleet", "eval", "--data", f"synthetic:{tmp_path / 'nothing'}", "--model", str(fused_model)])
    assert bad != 0


def test_remote_inputs_through_fsspec_are_fetched_once_and_processed(fused_model, tmp_path):
    """fsspec URLs (memory:// stands in for s3:// or gs://): globbed, copied to the cache, processed."""
    fsspec = pytest.importorskip("fsspec")
    videos = _drives(tmp_path, [7, 5])
    fs = fsspec.filesystem("memory")
    for v in videos:
        fs.pipe(f"/bucket/{v.name}", v.read_bytes())
    inputs = gather_inputs(["memory://bucket/*.mp4"])
    assert [(i.id, i.kind, i.is_remote) for i in inputs] == [("drive0", "video", True), ("drive1", "video", True)]
    out = tmp_path / "out"
    summary = run_fleet(inputs, out, PipelineConfig(model=str(fused_model)), workers=2, range_frames=3, progress=False)
    assert [d["frames"] for d in summary.drives] == [7, 5]
    assert len(list((out / ".cache").iterdir())) == 2, "each remote file copied once"
    single = _single_process(videos[0], fused_model, tmp_path / "single")
    assert _lines(out / "drive0" / "results.jsonl") == single
    with pytest.raises(InputError, match="cannot fetch"):
        from perception.fleet.inputs import FleetInput, local_copy

        local_copy(FleetInput("x", "memory://bucket/missing.mp4", "video"), tmp_path / "cache")
