"""Segmentation metrics against a pure-Python reference and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.eval.segmentation import BoundaryAccumulator, ConfusionMatrix, boundary_iou

NAMES = ("background", "drivable", "lane")


def _ref_matrix(pred, target, c, ignore=255):
    m = [[0] * c for _ in range(c)]
    ignored = 0
    for t, p in zip(target.ravel().tolist(), pred.ravel().tolist(), strict=True):
        if t == ignore:
            ignored += 1
            continue
        m[t][p] += 1
    return m, ignored


def _ref_metrics(m):
    c = len(m)
    iou, dice = [], []
    for k in range(c):
        tp = m[k][k]
        fp = sum(m[r][k] for r in range(c)) - tp
        fn = sum(m[k]) - tp
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else None)
        dice.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None)
    return iou, dice


def _eq(a, b):
    return (a is None and math.isnan(b)) or (a is not None and a == pytest.approx(b, rel=1e-12, abs=0))


@pytest.mark.parametrize("seed", range(25))
def test_matches_python_reference(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 6))
    h, w = rng.integers(1, 12, size=2)
    classes = rng.choice(c, size=int(rng.integers(1, c + 1)), replace=False)  # some classes missing
    target = rng.choice(classes, size=(h, w)).astype(np.uint8)
    target[rng.random((h, w)) < 0.2] = 255
    pred = rng.choice(classes if seed % 2 else np.arange(c), size=(h, w)).astype(np.uint8)
    names = [f"c{i}" for i in range(c)]
    cm = ConfusionMatrix(names)
    cm.add(pred, target)
    m, ignored = _ref_matrix(pred, target, c)
    assert cm.matrix.tolist() == m and cm.matrix.dtype == np.int64
    out = cm.compute()
    assert out["seg.ignored"] == ignored
    assert out["seg.pixels"] == sum(map(sum, m))
    iou, dice = _ref_metrics(m)
    for k in range(c):
        assert _eq(iou[k], out[f"seg.iou.c{k}"])
        assert _eq(dice[k], out[f"seg.dice.c{k}"])
    defined = [v for v in iou if v is not None]
    if defined:
        assert out["seg.miou"] == pytest.approx(sum(defined) / len(defined), rel=1e-12)
    fg = [v for v in iou[1:] if v is not None]
    if fg:
        assert out["seg.miou_fg"] == pytest.approx(sum(fg) / len(fg), rel=1e-12)
    else:
        assert math.isnan(out["seg.miou_fg"])


def test_hand_computed_3x3():
    # target / pred pixels:  rows = target, cols = pred
    target = np.array([[0, 0, 1, 1], [1, 2, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]], np.uint8)
    cm = ConfusionMatrix(NAMES)
    cm.add(pred, target)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 1]]
    out = cm.compute()
    # bg: tp1 fp1 fn1 ; drivable: tp2 fp1 fn1 ; lane: tp1 fp1 fn1
    assert out["seg.iou.background"] == pytest.approx(1 / 3)
    assert out["seg.iou.drivable"] == pytest.approx(2 / 4)
    assert out["seg.iou.lane"] == pytest.approx(1 / 3)
    assert out["seg.dice.drivable"] == pytest.approx(4 / 6)
    assert out["seg.dice.lane"] == pytest.approx(2 / 4)
    assert out["seg.precision.drivable"] == pytest.approx(2 / 3)
    assert out["seg.recall.background"] == pytest.approx(1 / 2)
    assert out["seg.pixel_acc"] == pytest.approx(4 / 7)
    assert out["seg.mean_acc"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert out["seg.miou"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert out["seg.miou_fg"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert out["seg.mdice"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert out["seg.fw_iou"] == pytest.approx(2 / 7 * 1 / 3 + 3 / 7 * 1 / 2 + 2 / 7 * 1 / 3)
    assert out["seg.pixels"] == 7 and out["seg.ignored"] == 1


def test_absent_class_is_nan_and_left_out_of_means():
    target = np.array([[0, 1]], np.uint8)
    cm = ConfusionMatrix(NAMES)
    cm.add(target.copy(), target)
    out = cm.compute()
    assert math.isnan(out["seg.iou.lane"]) and math.isnan(out["seg.dice.lane"])
    assert math.isnan(out["seg.precision.lane"]) and math.isnan(out["seg.recall.lane"])
    assert out["seg.miou"] == 1.0 and out["seg.miou_fg"] == 1.0 and out["seg.mdice"] == 1.0


def test_predicted_only_class_counts_as_zero():
    target = np.array([[1, 1]], np.uint8)
    pred = np.array([[1, 2]], np.uint8)
    cm = ConfusionMatrix(NAMES)
    cm.add(pred, target)
    out = cm.compute()
    assert out["seg.iou.lane"] == 0.0 and out["seg.miou_fg"] == pytest.approx(0.25)
    assert math.isnan(out["seg.recall.lane"]) and out["seg.precision.lane"] == 0.0


def test_empty_and_all_ignored():
    cm = ConfusionMatrix(NAMES)
    out = cm.compute()
    assert out["seg.pixels"] == 0 and math.isnan(out["seg.miou"]) and math.isnan(out["seg.pixel_acc"])
    cm.add(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8))
    out = cm.compute()
    assert out["seg.ignored"] == 4 and out["seg.pixels"] == 0 and math.isnan(out["seg.fw_iou"])


def test_dataset_metric_is_not_per_image_mean():
    cm = ConfusionMatrix(NAMES)
    cm.add(np.array([[1]], np.uint8), np.array([[1]], np.uint8))  # IoU 1 on image 1
    cm.add(np.array([[0, 0, 0]], np.uint8), np.array([[1, 1, 1]], np.uint8))  # IoU 0 on image 2
    assert cm.compute()["seg.iou.drivable"] == pytest.approx(1 / 4)  # not (1 + 0) / 2


@pytest.mark.parametrize("seed", range(5))
def test_merge_of_halves_equals_whole(seed):
    rng = np.random.default_rng(100 + seed)
    preds = [rng.integers(0, 3, (6, 7)).astype(np.uint8) for _ in range(6)]
    targets = [rng.choice([0, 1, 2, 255], (6, 7)).astype(np.uint8) for _ in range(6)]
    whole, a, b = ConfusionMatrix(NAMES), ConfusionMatrix(NAMES), ConfusionMatrix(NAMES)
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        whole.add(p, t)
        (a if i < 3 else b).add(p, t)
    assert a.merge(b) is a
    assert np.array_equal(a.matrix, whole.matrix) and a.ignored == whole.ignored
    wa, wb = a.compute(), whole.compute()
    assert wa.keys() == wb.keys()
    assert all((v == wb[k]) or (math.isnan(v) and math.isnan(wb[k])) for k, v in wa.items())


def test_merge_rejects_other_classes():
    with pytest.raises(ValueError, match="cannot merge"):
        ConfusionMatrix(NAMES).merge(ConfusionMatrix(("a", "b")))


def test_merge_pred_for_unlabelled_lanes():
    # CamVid: paint labelled as drivable; the model predicts lane on paint
    target = np.array([[1, 1, 1, 0]], np.uint8)
    pred = np.array([[1, 2, 2, 0]], np.uint8)
    plain = ConfusionMatrix(NAMES)
    plain.add(pred, target)
    assert plain.compute()["seg.iou.drivable"] == pytest.approx(1 / 3)
    merged = ConfusionMatrix(NAMES)
    merged.add(pred, target, merge_pred={2: 1})
    out = merged.compute()
    assert merged.matrix.tolist() == [[1, 0, 0], [0, 3, 0], [0, 0, 0]]
    assert out["seg.iou.drivable"] == 1.0 and math.isnan(out["seg.iou.lane"])
    # the mapping is simultaneous, not chained, and does not change the caller's array
    swap = ConfusionMatrix(NAMES)
    swap.add(pred, target, merge_pred={1: 2, 2: 1})
    assert swap.matrix.tolist() == [[1, 0, 0], [0, 2, 1], [0, 0, 0]]
    assert pred.tolist() == [[1, 2, 2, 0]]
    with pytest.raises(ValueError, match="merge_pred"):
        swap.add(pred, target, merge_pred={2: 7})


def test_bad_inputs_raise_clear_errors():
    cm = ConfusionMatrix(NAMES)
    t = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match=r"prediction values outside \[0, 3\): \[3, 7\]"):
        cm.add(np.array([[0, 3], [7, 0]], np.uint8), t)
    with pytest.raises(ValueError, match=r"prediction values outside .*\[-1\]"):
        cm.add(np.array([[0, -1], [0, 0]], np.int32), t)
    with pytest.raises(ValueError, match=r"target values .*\[5\]"):
        cm.add(t, np.array([[0, 5], [255, 0]], np.uint8))
    with pytest.raises(ValueError, match=r"pred \[2, 3\], target \[2, 2\]"):
        cm.add(np.zeros((2, 3), np.uint8), t)
    with pytest.raises(ValueError, match="integer"):
        cm.add(np.zeros((2, 2), np.float32), t)
    with pytest.raises(ValueError, match="integer"):
        cm.add(np.zeros((1, 2, 2), np.uint8), t)
    with pytest.raises(ValueError, match="unique"):
        ConfusionMatrix(("a", "a"))
    with pytest.raises(ValueError, match="collides"):
        ConfusionMatrix(NAMES, ignore_index=1)
    assert cm.matrix.sum() == 0 and cm.ignored == 0  # failed adds left no partial counts


def _line_masks(shift):
    target = np.zeros((20, 20), np.uint8)
    target[:, 10] = 2
    pred = np.zeros((20, 20), np.uint8)
    pred[:, 10 + shift] = 2
    return pred, target


def test_boundary_shifted_line():
    pred, target = _line_masks(1)
    tol1 = boundary_iou(pred, target, 2, 1)
    assert tol1["seg.boundary.2.precision"] == 1.0 and tol1["seg.boundary.2.recall"] == 1.0
    assert tol1["seg.boundary.2.f1"] == 1.0 and tol1["seg.boundary.2.iou"] == 1.0
    tol0 = boundary_iou(pred, target, 2, 0)
    assert tol0["seg.boundary.2.precision"] == 0.0 and tol0["seg.boundary.2.iou"] == 0.0
    pred2, _ = _line_masks(2)
    assert boundary_iou(pred2, target, 2, 1)["seg.boundary.2.f1"] == 0.0
    assert boundary_iou(pred2, target, 2, 2)["seg.boundary.2.f1"] == 1.0


def test_boundary_diagonal_distance_is_euclidean():
    target = np.zeros((5, 5), np.uint8)
    target[0, 0] = 2
    pred = np.zeros((5, 5), np.uint8)
    pred[1, 1] = 2  # distance sqrt(2)
    assert boundary_iou(pred, target, 2, 1)["seg.boundary.2.precision"] == 0.0
    assert boundary_iou(pred, target, 2, 1.5)["seg.boundary.2.precision"] == 1.0
    assert boundary_iou(pred, target, 2, math.sqrt(2))["seg.boundary.2.precision"] == 1.0


def _ref_within(mask, tol):
    points = list(zip(*np.nonzero(mask), strict=True))
    out = np.zeros_like(mask)
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            out[y, x] = any((y - a) ** 2 + (x - b) ** 2 <= tol * tol for a, b in points)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_boundary_matches_brute_force_and_tol0_equals_iou(seed):
    rng = np.random.default_rng(seed)
    tol = [0, 1, 1.5, 2, 3][seed % 5]
    acc = BoundaryAccumulator(2, tol, class_name="lane")
    cm = ConfusionMatrix(NAMES)
    pm = pp = tm = tp = 0
    for _ in range(3):
        target = rng.choice([0, 2, 255], size=(9, 11), p=[0.75, 0.15, 0.1]).astype(np.uint8)
        pred = rng.choice([0, 2], size=(9, 11), p=[0.85, 0.15]).astype(np.uint8)
        acc.add(pred, target)
        cm.add(pred, target)
        valid = target != 255
        p, t = (pred == 2) & valid, (target == 2) & valid
        pm += int((p & _ref_within(t, tol)).sum())
        tm += int((t & _ref_within(p, tol)).sum())
        pp, tp = pp + int(p.sum()), tp + int(t.sum())
    out = acc.compute()
    assert (acc.pred_matched, acc.pred_pixels, acc.target_matched, acc.target_pixels) == (pm, pp, tm, tp)
    assert out["seg.boundary.lane.precision"] == pytest.approx(pm / pp)
    assert out["seg.boundary.lane.recall"] == pytest.approx(tm / tp)
    if tol == 0:
        seg = cm.compute()
        assert out["seg.boundary.lane.iou"] == pytest.approx(seg["seg.iou.lane"], rel=1e-12)
        assert out["seg.boundary.lane.f1"] == pytest.approx(seg["seg.dice.lane"], rel=1e-12)


def test_boundary_empty_and_merge():
    acc = BoundaryAccumulator(2, 1)
    out = acc.compute()
    assert math.isnan(out["seg.boundary.2.precision"]) and math.isnan(out["seg.boundary.2.iou"])
    pred, target = _line_masks(1)
    a, b, whole = BoundaryAccumulator(2, 1), BoundaryAccumulator(2, 1), BoundaryAccumulator(2, 1)
    p2, _ = _line_masks(3)
    a.add(pred, target)
    b.add(p2, target)
    whole.add(pred, target)
    whole.add(p2, target)
    assert a.merge(b).compute() == whole.compute()
    assert whole.compute()["seg.boundary.2.precision"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        BoundaryAccumulator(2, 1).merge(BoundaryAccumulator(2, 2))
    with pytest.raises(ValueError, match="tolerance_px"):
        BoundaryAccumulator(2, -1)
    with pytest.raises(ValueError, match="shapes differ"):
        acc.add(np.zeros((2, 2), np.uint8), np.zeros((3, 2), np.uint8))
