"""The evaluation loop and `perception eval`: a perfect predictor scores 1, partial labels, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perception.data.base import Dataset
from perception.data.sample import DatasetError, Sample
from perception.eval.evaluate import evaluate
from perception.frames import Prediction


class Tiny(Dataset):
    kind = "tiny"

    def __init__(self, tmp_path, lane_labelled=True, broken=()):
        from perception.data.classmap import ClassMap

        super().__init__(tmp_path, "val", ClassMap())
        self.lane_labelled = lane_labelled
        self.broken = set(broken)
        self.names = [f"s{i}" for i in range(4)]

    def load(self, i):
        if i in self.broken:
            raise DatasetError(f"s{i}.png: corrupt")
        seg = np.zeros((40, 60), np.uint8)
        seg[20:, :] = 1
        seg[20:, 28:31] = 2
        seg[0, 0] = 255
        boxes = np.array([[5, 22, 15 + i, 35], [40, 25, 50, 38]], np.float32)
        return Sample(
            np.zeros((40, 60, 3), np.uint8),
            f"s{i}",
            seg,
            self.lane_labelled,
            boxes,
            np.array([0, 1], np.int64),
            np.zeros(2, bool),
        )


class Oracle:
    """Predicts the labels themselves (lane paint shown as lane even where the dataset does not label it)."""

    seg_classes = ("background", "drivable", "lane")
    det_classes = ("car", "pedestrian", "cyclist", "traffic_sign")

    def __init__(self, dataset):
        self.dataset = dataset
        self.i = 0

    def predict(self, image):
        while self.i in self.dataset.broken:
            self.i += 1
        s = self.dataset.load(self.i)
        self.i += 1
        seg = s.seg.copy()
        seg[seg == 255] = 0
        return Prediction(seg, s.boxes, np.array([0.9, 0.8], np.float32), s.labels)


def test_perfect_predictions_score_one(tmp_path):
    ds = Tiny(tmp_path)
    m = evaluate(Oracle(ds), ds).metrics
    assert m["seg.miou"] == 1.0 and m["seg.iou.lane"] == 1.0 and m["lanes.iou"] == 1.0
    assert m["det.map"] == pytest.approx(1.0) and m["det.ap50.car"] == pytest.approx(1.0)
    assert np.isnan(m["det.ap50.cyclist"])  # no ground truth: excluded, not zero
    assert m["seg.ignored"] == 4 and m["frames"] == 4


def test_unlabelled_lane_counts_lane_prediction_as_road_and_broken_samples_are_counted(tmp_path):
    ds = Tiny(tmp_path, lane_labelled=False, broken=(2,))
    # Without lane labels the dataset calls paint road (class 1): make its target so.
    ds_load = ds.load

    def load(i):
        s = ds_load(i)
        seg = s.seg.copy()
        seg[seg == 2] = 1
        return Sample(s.image, s.name, seg, False, s.boxes, s.labels, s.ignore)

    ds.load = load
    result = evaluate(Oracle(Tiny(tmp_path, broken=(2,))), ds)
    assert result.metrics["seg.iou.drivable"] == 1.0  # lane on paint is not punished as wrong road
    assert result.metrics["skipped"] == 1 and "s2.png" in result.skipped.examples[0]


def test_wrong_mask_size_and_class_mismatch_are_errors(tmp_path):
    ds = Tiny(tmp_path)

    class Bad(Oracle):
        def predict(self, image):
            return Prediction(np.zeros((10, 10), np.uint8), np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0))

    with pytest.raises(ValueError, match="prediction mask"):
        evaluate(Bad(ds), ds)
    other = Oracle(ds)
    other.det_classes = ("person",)
    with pytest.raises(ValueError, match="classes differ"):
        evaluate(other, ds)


def test_cli_eval_writes_metrics_and_compares(tmp_path, fused_model, capsys):
    from perception.cli import main
    from perception.data.synth.generate import SynthOptions, write_synth_dataset

    data = tmp_path / "syn"
    write_synth_dataset(data, 2, seed=3, val_fraction=0.5, opts=SynthOptions(size=(224, 128)))
    out = tmp_path / "ev"
    argv = ["eval", "--compare", str(fused_model), str(fused_model), "--data", f"synthetic:{data}", "--out", str(out)]
    assert main([*argv, "-q"]) == 0
    table = capsys.readouterr().out
    assert "seg.miou" in table and "diff" in table
    metrics = json.loads(next(out.glob("*/metrics.json")).read_text(), parse_constant=pytest.fail)["metrics"]
    assert {"seg.miou", "seg.miou_fg", "det.map", "det.map50", "lanes.iou", "speed.fps"} <= set(metrics)
    assert main(["eval", "--data", f"synthetic:{data}", "--split", "nope", "--out", str(out), "-q"]) == 1


def test_report_and_plots_are_written(tmp_path, fused_model):
    from perception.cli import main
    from perception.data.synth.generate import SynthOptions, write_synth_dataset

    data = tmp_path / "syn"
    write_synth_dataset(data, 2, seed=4, val_fraction=0.5, opts=SynthOptions(size=(224, 128)))
    out = tmp_path / "ev"
    assert main(["eval", "--model", str(fused_model), "--data", f"synthetic:{data}", "--out", str(out), "-q"]) == 0
    report = (out / "report.md").read_text()
    assert "| `seg.miou` |" in report and "| `det.map` |" in report
    for png in ("confusion.png", "worst_frames.png", "pr_curves.png"):
        assert (out / png).stat().st_size > 1000, png


def test_clip_frames_feed_the_video_metrics(tmp_path):
    ds = Tiny(tmp_path)
    load = ds.load

    def in_clip(i):
        s = load(i)
        return Sample(s.image, s.name, s.seg, True, s.boxes, s.labels, s.ignore, meta={"clip": "c0", "frame_index": i})

    ds.load = in_clip
    m = evaluate(Oracle(Tiny(tmp_path)), ds).metrics
    assert m["video.mask_iou.drivable"] == 1.0  # the oracle's road never moves
    assert m["video.box_triples"] == 2 * 2  # 4 frames -> 2 triples, 2 objects each
    assert m["video.box_jitter"] == pytest.approx(0.0)  # the car box grows 1 px a frame: constant change
    plain = evaluate(Oracle(Tiny(tmp_path)), Tiny(tmp_path)).metrics
    assert not any(k.startswith("video.") for k in plain)


def test_single_task_predictor_is_not_scored_on_the_other_task(tmp_path):
    ds = Tiny(tmp_path)
    seg_only = Oracle(ds)
    seg_only.det_classes = ()
    m = evaluate(seg_only, ds).metrics
    assert m["seg.miou"] == 1.0 and not any(k.startswith("det.") for k in m)
    det_only = Oracle(Tiny(tmp_path))
    det_only.seg_classes = ()
    m = evaluate(det_only, ds).metrics
    assert m["det.map50"] == pytest.approx(1.0) and not any(k.startswith("seg.") for k in m)


def test_road_predicted_on_the_bonnet_is_measured_on_frames_that_draw_one(tmp_path):
    from perception.data.synth.effects import hood_mask
    from perception.eval.evaluate import EvalAccumulator

    acc = EvalAccumulator(Oracle.seg_classes, Oracle.det_classes, do_seg=True, do_det=False)
    h, w, hood = 40, 60, 0.25
    mask = hood_mask(h, w, hood)
    assert mask[-1, w // 2] and not mask[0].any() and 0 < mask.mean() < hood
    seg = np.zeros((h, w), np.uint8)
    pred = seg.copy()
    rows, cols = np.nonzero(mask)
    pred[rows[:10], cols[:10]] = 1  # ten bonnet pixels called drivable, five called lane
    pred[rows[10:15], cols[10:15]] = 2
    pred[0, :] = 1  # road elsewhere does not count
    image = np.zeros((h, w, 3), np.uint8)
    with_hood = Sample(image, "a", seg, True, meta={"effects": {"hood": hood}})
    without = Sample(image, "b", seg, True, meta={"effects": {"hood": 0.0}})
    acc.add(0, with_hood, Prediction(pred, None, None, None), 0.01)
    acc.add(1, without, Prediction(np.ones_like(pred), None, None, None), 0.01)
    m = acc.result().metrics
    assert m["seg.hood_road_frac"] == pytest.approx(15 / mask.sum())
    plain = EvalAccumulator(Oracle.seg_classes, Oracle.det_classes, do_seg=True, do_det=False)
    plain.add(0, without, Prediction(pred, None, None, None), 0.01)
    assert "seg.hood_road_frac" not in plain.result().metrics
