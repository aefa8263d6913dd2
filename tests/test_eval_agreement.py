"""Teacher-agreement recall: references are boxes at least two teachers agree on; one-to-one matching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.eval.agreement import agreement_recall, match_one_to_one
from perception.frames import Prediction
from perception.teachers.ensemble import TeacherEnsemble

CLASSES = ("car", "pedestrian")


def pred(boxes, labels, scores=None) -> Prediction:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return Prediction(None, boxes, np.asarray(scores or [0.9] * n, np.float32), np.asarray(labels, np.int64))


class Fixed:
    """A teacher or model whose predictions are given per frame (frames are their index as an array)."""

    def __init__(self, name, per_frame):
        self.name, self.per_frame = name, per_frame

    def predict(self, frame):
        return self.per_frame[int(frame[0, 0, 0])]


def frame(i: int) -> np.ndarray:
    return np.full((100, 200, 3), i, np.uint8)


def test_match_is_one_to_one_by_decreasing_iou():
    ref = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], np.float32)
    one = np.array([[1, 0, 11, 10]], np.float32)  # overlaps both: matches one only
    assert match_one_to_one(ref, one, 0.5).sum() == 1
    exact = np.array([[2, 0, 12, 10], [0, 0, 10, 10]], np.float32)
    assert match_one_to_one(ref, exact, 0.5).all()
    assert not match_one_to_one(ref, np.zeros((0, 4), np.float32), 0.5).any()
    half = np.array([[0, 0, 10, 5]], np.float32)  # IoU exactly 0.5 matches
    assert match_one_to_one(ref[:1], half, 0.5).all()
    assert not match_one_to_one(ref[:1], half, 0.51).any()


def test_only_objects_two_teachers_box_with_score_count():
    car, car2, person = [10, 10, 50, 40], [100, 10, 140, 40], [60, 50, 70, 90]
    teachers = [
        Fixed("a", {0: pred([car, car2, person], [0, 0, 1]), 1: pred([car], [0])}),
        Fixed("b", {0: pred([car, person], [0, 1], [0.9, 0.4]), 1: pred([car], [0])}),  # person below 0.5
        Fixed("c", {0: pred([car2], [0], [0.7]), 1: pred([], [])}),
    ]
    ensemble = TeacherEnsemble(teachers, skip_box_thr=0.5)
    model = Fixed("m", {0: pred([[11, 10, 50, 41]], [0]), 1: pred([car, person], [1, 1])})  # frame 1: wrong class
    counts = agreement_recall(model, ensemble, [frame(0), frame(1)], CLASSES)
    m = counts.metrics()
    # frame 0: car (a+b) and car2 (a+c) agreed, person only by a (b's is below 0.5); frame 1: car (a+b)
    assert m["agree.refs.car"] == 3 and m["agree.refs.pedestrian"] == 0
    assert m["agree.recall.car"] == pytest.approx(1 / 3)
    assert m["agree.frames_all_found.car"] == 0.0
    assert math.isnan(m["agree.recall.pedestrian"]) and m["frames"] == 2


def test_agreement_command_on_the_real_clip(tmp_path, capsys):
    import json

    from conftest import require_real_clip

    from perception.cli import main
    from perception.errors import ModelError
    from perception.teachers.detectors import YOLOX_FILE, weight_path

    clip = require_real_clip()
    try:
        weight_path(YOLOX_FILE)
    except ModelError as err:  # the weights folder is absent on this machine
        pytest.skip(str(err))
    out = tmp_path / "agree"
    args = ["agreement", str(clip), "--model", "default", "--max-frames", "3", "--threads", "1", "--out", str(out)]
    assert main([*args, "-q"]) == 0
    m = json.loads((out / "agreement.json").read_text())["metrics"]["default"]
    assert m["frames"] == 3 and m["agree.refs.car"] >= 3, "the teachers agree on the cars ahead"
    assert 0.0 <= m["agree.recall.car"] <= 1.0
    assert "car" in capsys.readouterr().out
    assert main(["agreement", str(clip), "--teachers", "yolox,detr", "--out", str(out)]) == 1
