"""End to end on the real dashcam clip (../shared/data; skipped with a message where it is absent)."""

from __future__ import annotations

import json

import cv2
from conftest import require_real_clip

from perception.cli import main


def test_default_model_processes_every_frame_of_the_real_clip(tmp_path, capsys):
    clip = require_real_clip()
    code = main(["run", str(clip), "--out", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 221
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(221))
    assert all(r["size"] == [540, 960] for r in records)
    assert abs(records[-1]["t"] - 220 / 25) < 0.05
    cap = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 221
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 221, "annotated video decodes back frame for frame"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_processed"] == 221 and summary["problems"] == []


def test_scene_on_the_real_clip_keeps_both_ego_lines_tracks_cars_and_moves_smoothly(tmp_path, capsys):
    """Issue #7's real-clip check, with the clip's camera preset (configs/pipeline/solidwhiteright.yaml)."""
    from pathlib import Path

    clip = require_real_clip()
    preset = Path(__file__).resolve().parents[1] / "configs" / "pipeline" / "solidwhiteright.yaml"
    code = main(["run", str(clip), "--config", str(preset), "--out", str(tmp_path), "--no-video", "-q"])
    assert code == 0, capsys.readouterr().err
    scenes = [json.loads(line)["scene"] for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(scenes) == 221 and all(s["camera"] == "solidwhiteright_960x540" for s in scenes)
    egos = [s["ego_lane"] for s in scenes]
    # Both lines are painted and visible in every frame of this clip.
    assert all(e is not None for e in egos)
    assert sum(e["left_seen"] and e["right_seen"] for e in egos) >= 0.9 * len(egos)
    assert all({"ego_left", "ego_right"} <= {ln["side"] for ln in s["lanes"]} for s in scenes)
    assert all(3.2 <= e["width_m"] <= 4.2 for e in egos), "a US highway lane is 3.7 m"
    offsets = [e["offset_m"] for e in egos]
    assert max(abs(b - a) for a, b in zip(offsets, offsets[1:], strict=False)) < 0.1, "offset changes smoothly"
    # Cars are tracked with ground distances over many frames.
    life: dict[int, list[float]] = {}
    for s in scenes:
        for o in s["objects"]:
            if o["class"] == "car" and o["distance_source"] == "ground":
                life.setdefault(o["track_id"], []).append(o["distance_m"])
    long_tracks = [d for d in life.values() if len(d) >= 30]
    assert len(long_tracks) >= 2
    assert all(3.0 < v < 120.0 for d in long_tracks for v in d)


def test_with_no_camera_file_the_real_clip_calibrates_itself_and_agrees_with_the_calibrated_camera(tmp_path, capsys):
    """camera: auto (the default) against the clip's camera file: after calibrating, the ego-lane offset
    within 0.15 m and ground distances within 15 % of the file camera's run, on at least 90 % of frames."""
    from pathlib import Path

    import numpy as np

    clip = require_real_clip()
    preset = Path(__file__).resolve().parents[1] / "configs" / "pipeline" / "solidwhiteright.yaml"
    runs = {}
    for name, extra in (("auto", []), ("file", ["--config", str(preset)])):
        code = main(["run", str(clip), *extra, "--out", str(tmp_path / name), "--no-video", "-q"])
        assert code == 0, capsys.readouterr().err
        runs[name] = [
            json.loads(line)["scene"] for line in (tmp_path / name / "results.jsonl").read_text().splitlines()
        ]
    auto, file = runs["auto"], runs["file"]
    assert auto[0]["camera"]["state"] == "calibrating" and auto[0]["ego_lane"] is None
    assert all(ln["points_px"] and ln["coeffs_m"] is None for ln in auto[0]["lanes"])
    calibrated = [i for i, s in enumerate(auto) if s["camera"]["state"] == "calibrated"]
    assert calibrated and calibrated[0] < 150, "calibrated within 6 s of this straight highway"
    assert calibrated == list(range(calibrated[0], len(auto))), "and stays so"
    with_offset = [i for i in calibrated if auto[i]["ego_lane"] is not None]
    assert len(with_offset) >= 0.9 * len(calibrated)
    diff = np.array([auto[i]["ego_lane"]["offset_m"] - file[i]["ego_lane"]["offset_m"] for i in with_offset])
    assert np.mean(np.abs(diff) <= 0.15) >= 0.9
    ratios = []
    for i in calibrated:
        by_box = {tuple(o["box"]): o for o in file[i]["objects"]}
        for o in auto[i]["objects"]:
            ref = by_box.get(tuple(o["box"]))
            if ref and o["distance_m"] and ref["distance_m"] and ref["distance_source"] == "ground":
                ratios.append(o["distance_m"] / ref["distance_m"] - 1)
    assert len(ratios) > 100 and np.mean(np.abs(ratios) <= 0.15) >= 0.9
