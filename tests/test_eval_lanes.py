"""TuSimple lane accuracy against a port of LaneEval and hand-made lanes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.eval.lanes import (
    LaneAccumulator,
    bench_frame,
    lane_angle,
    lane_mask_iou,
    line_accuracy,
    resample_polyline,
)
from perception.eval.segmentation import ConfusionMatrix

H = np.arange(160, 720, 10, dtype=np.float64)  # TuSimple's 56 rows


def _ref_bench(pred, gt, y_samples):
    """TuSimple LaneEval.bench (evaluate/lane.py), with np.polyfit in place of sklearn's LinearRegression."""
    if len(gt) + 2 < len(pred):
        return 0.0, 0.0, 1.0
    angles = []
    for xs in gt:
        xs = np.array(xs)
        ys = np.array(y_samples)[xs >= 0]
        xs = xs[xs >= 0]
        angles.append(np.arctan(np.polyfit(ys, xs, 1)[0]) if len(xs) > 1 else 0)
    threshs = [20 / np.cos(a) for a in angles]
    line_accs = []
    fn, matched = 0.0, 0.0
    for x_gts, thresh in zip(gt, threshs, strict=True):
        accs = []
        for x_preds in pred:
            p = np.array([v if v >= 0 else -100 for v in x_preds])
            g = np.array([v if v >= 0 else -100 for v in x_gts])
            accs.append(np.sum(np.where(np.abs(p - g) < thresh, 1.0, 0.0)) / len(g))
        max_acc = np.max(accs) if len(accs) > 0 else 0.0
        if max_acc < 0.85:
            fn += 1
        else:
            matched += 1
        line_accs.append(max_acc)
    fp = len(pred) - matched
    if len(gt) > 4 and fn > 0:
        fn -= 1
    s = sum(line_accs)
    if len(gt) > 4:
        s -= min(line_accs)
    return (s / max(min(4.0, len(gt)), 1.0), fp / len(pred) if len(pred) > 0 else 0.0, fn / max(min(len(gt), 4.0), 1.0))


def _vertical(x, y0=160, y1=710):
    return np.array([[x, y0], [x, y1]], np.float64)


def _slanted(x0, k, dx=0.0):
    """x = x0 + k (y - 160) + dx over rows 160..710."""
    return np.array([[x0 + dx, 160], [x0 + k * 550 + dx, 710]], np.float64)


@pytest.mark.parametrize("seed", range(30))
def test_matches_lane_eval_port(seed):
    rng = np.random.default_rng(seed)
    n_gt, n_pred = int(rng.integers(0, 7)), int(rng.integers(0, 8))
    gt = []
    for _ in range(n_gt):
        xs = rng.uniform(100, 1200) + rng.uniform(-1, 1) * (H - 160)
        xs[rng.random(len(H)) < 0.2] = -2
        gt.append(xs)
    pred = []
    for i in range(n_pred):
        base = gt[i % n_gt] if n_gt and rng.random() < 0.8 else rng.uniform(0, 1280, len(H))
        xs = np.where(base >= 0, base + rng.normal(0, 12, len(H)), rng.uniform(0, 1280, len(H)))
        xs[rng.random(len(H)) < 0.1] = -2
        pred.append(xs)
    frame = bench_frame(pred, gt, H)
    acc, fp, fn = _ref_bench(pred, gt, H)
    assert frame["acc"] == pytest.approx(acc, abs=1e-12)
    assert frame["fp"] == pytest.approx(fp, abs=1e-12)
    assert frame["fn"] == pytest.approx(fn, abs=1e-12)


def test_angle_adjusted_threshold():
    acc = LaneAccumulator()
    # vertical lane, 25 px off: outside 20 px everywhere
    vert = acc.add_sampled([resample_polyline(_vertical(625), H)], [resample_polyline(_vertical(600), H)], H)
    assert vert["acc"] == 0.0 and vert["fn"] == 1.0 and vert["fp"] == 1.0
    # 45 degree lane, 25 px horizontal offset: threshold 20 / cos(45) = 28.3 px, so every row passes
    gt = resample_polyline(_slanted(300, 1.0), H)
    assert lane_angle(gt, H) == pytest.approx(math.pi / 4)
    slant = acc.add_sampled([resample_polyline(_slanted(300, 1.0, dx=25), H)], [gt], H)
    assert slant["acc"] == 1.0 and slant["fn"] == 0.0 and slant["fp"] == 0.0
    out = acc.compute()
    assert out["lanes.tusimple_acc"] == 0.5 and out["lanes.fn_rate"] == 0.5 and out["lanes.frames"] == 2


def test_threshold_is_strict_and_explicit():
    gt = [resample_polyline(_vertical(600), H)]
    assert bench_frame([gt[0] + 20], gt, H)["acc"] == 0.0  # |dx| < thresh, strict as in LaneEval
    assert bench_frame([gt[0] + 19.5], gt, H)["acc"] == 1.0
    half = LaneAccumulator(pixel_thresh=10.0)
    assert half.add_sampled([gt[0] + 9], gt, H)["acc"] == 1.0
    assert half.add_sampled([gt[0] + 12], gt, H)["acc"] == 0.0


def test_missing_points():
    gt = resample_polyline(_vertical(600), H)  # present on all 56 rows
    half = resample_polyline(_vertical(600, 160, 430), H)  # rows 160..430: 28 rows
    assert (half >= 0).sum() == 28
    frame = bench_frame([half], [gt], H)
    assert frame["acc"] == 0.5 and frame["fn"] == 1.0  # 0.5 < 0.85
    # gt absent on rows 440..: TuSimple counts rows absent in both as hits
    short_gt = resample_polyline(_vertical(600, 160, 430), H)
    assert line_accuracy(half, short_gt, 20) == 1.0
    assert line_accuracy(gt, short_gt, 20) == 0.5  # prediction where gt has none: miss
    # the strict variant scores only the gt lane's present rows
    assert line_accuracy(gt, short_gt, 20, count_absent_rows=False) == 1.0
    assert line_accuracy(half, gt, 20, count_absent_rows=False) == 0.5
    assert line_accuracy(half, np.full(len(H), -2.0), 20, count_absent_rows=False) == 0.0


def test_false_positive_and_false_negative():
    gts = [resample_polyline(_vertical(x), H) for x in (300, 600)]
    extra = resample_polyline(_vertical(1000), H)
    fp = bench_frame([gts[0] + 3, gts[1] - 3, extra], gts, H)
    assert (fp["acc"], fp["fp"], fp["fn"]) == (1.0, pytest.approx(1 / 3), 0.0)
    fn = bench_frame([gts[0]], gts, H)
    assert (fn["acc"], fn["fp"], fn["fn"]) == (0.5, 0.0, 0.5)
    none = bench_frame([], gts, H)
    assert (none["acc"], none["fp"], none["fn"]) == (0.0, 0.0, 1.0)
    empty = bench_frame([], [], H)
    assert (empty["acc"], empty["fp"], empty["fn"]) == (0.0, 0.0, 0.0)


def test_more_than_gt_plus_two_predictions_scores_zero():
    gt = [resample_polyline(_vertical(600), H)]
    three = bench_frame([gt[0]] * 3, gt, H)  # len(gt) + 2 = 3: allowed
    assert three["acc"] == 1.0 and three["fp"] == pytest.approx(2 / 3) and three["rejected"] == 0
    four = bench_frame([gt[0]] * 4, gt, H)
    assert (four["acc"], four["fp"], four["fn"], four["rejected"]) == (0.0, 0.0, 1.0, 1)


def test_more_than_four_gt_lanes_drops_the_worst():
    gts = [resample_polyline(_vertical(x), H) for x in (100, 300, 500, 700, 900)]
    frame = bench_frame(gts[:4], gts, H)  # 4 perfect, 1 missed
    assert frame["acc"] == 1.0 and frame["fn"] == 0.0 and frame["fp"] == 0.0


def test_accumulator_polylines_merge_and_pooled_rates():
    gts = [_vertical(300), _vertical(600)]
    a, b, whole = LaneAccumulator(), LaneAccumulator(), LaneAccumulator()
    frames = [([gts[0], gts[1], _vertical(1000)], gts), ([gts[0]], gts), ([_vertical(5)] * 5, gts[:1])]
    for i, (p, g) in enumerate(frames):
        whole.add(p, g, H)
        (a if i < 2 else b).add(p, g, H)
    out = whole.compute()
    assert a.merge(b).compute() == out
    assert out["lanes.tusimple_acc"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert out["lanes.fp_rate"] == pytest.approx((1 / 3 + 0 + 0) / 3)
    assert out["lanes.fn_rate"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert out["lanes.pred_lanes"] == 9 and out["lanes.gt_lanes"] == 5 and out["lanes.frames_rejected"] == 1
    assert out["lanes.fp_rate_pooled"] == pytest.approx((1 + 0 + 5) / 9)
    assert out["lanes.fn_rate_pooled"] == pytest.approx((0 + 1 + 1) / 5)
    assert math.isnan(LaneAccumulator().compute()["lanes.tusimple_acc"])
    with pytest.raises(ValueError, match="merge"):
        LaneAccumulator().merge(LaneAccumulator(pixel_thresh=10.0))


def test_resample_polyline():
    lane = np.array([[110.0, 200.0], [100.0, 100.0], [130.0, 300.0]])  # unsorted in y
    xs = resample_polyline(lane, np.array([50.0, 100.0, 150.0, 250.0, 300.0, 310.0]))
    assert xs.tolist() == [-2.0, 100.0, 105.0, 120.0, 130.0, -2.0]
    assert resample_polyline(np.zeros((0, 2)), H).tolist() == [-2.0] * len(H)
    assert resample_polyline(np.array([[5.0, 170.0]]), H)[:3].tolist() == [-2.0, 5.0, -2.0]
    with pytest.raises(ValueError, match=r"\[K, 2\]"):
        resample_polyline(np.zeros((3, 3)), H)
    with pytest.raises(ValueError, match="one x per h_sample"):
        bench_frame([np.zeros(3)], [np.zeros(len(H))], H)


def test_lane_mask_iou_is_seg_lane_iou():
    cm = ConfusionMatrix(("background", "drivable", "lane"))
    cm.add(np.array([[2, 2, 0, 1]], np.uint8), np.array([[2, 0, 2, 1]], np.uint8))
    assert lane_mask_iou(cm) == {"lanes.iou": cm.compute()["seg.iou.lane"]}
    assert lane_mask_iou(cm)["lanes.iou"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no class"):
        lane_mask_iou(cm, "paint")
