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
