"""COCO detection metrics: hand-computed cases, exact agreement with pycocotools, shard merging."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.eval.detection import (
    COCO_IOU_THRESHOLDS,
    COCO_REC_THRESHOLDS,
    DetectionAccumulator,
    box_iou_coco,
)

CLASSES = ("car", "pedestrian", "cyclist", "traffic_sign")


def _img(gt=(), gl=(), gi=None, det=(), ds=(), dl=()):
    """One image as a dict of arrays (gt/det boxes xyxy float32)."""
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    det = np.asarray(det, np.float32).reshape(-1, 4)
    return {
        "gt_boxes": gt,
        "gt_labels": np.asarray(gl, np.int64).reshape(-1),
        "gt_ignore": np.zeros(len(gt), bool) if gi is None else np.asarray(gi, bool),
        "det_boxes": det,
        "det_scores": np.asarray(ds, np.float32).reshape(-1),
        "det_labels": np.asarray(dl, np.int64).reshape(-1),
    }


def _ours(images, classes=CLASSES, **kw):
    acc = DetectionAccumulator(classes, **kw)
    for i, im in enumerate(images):
        acc.add(i, **im)
    return acc.compute()


def _coco(images, n_classes):
    """Run pycocotools' COCOeval (bbox, default params) on the same arrays; returns (stats, per-class AP)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        b = np.asarray(b, np.float64)
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    imgs = [{"id": i + 1, "width": 2000, "height": 2000} for i in range(len(images))]
    cats = [{"id": k + 1, "name": str(k)} for k in range(n_classes)]
    gts, dts = [], []
    for i, im in enumerate(images):
        for b, lab, ign in zip(im["gt_boxes"], im["gt_labels"], im["gt_ignore"], strict=True):
            bb = xywh(b)
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": i + 1,
                    "category_id": int(lab) + 1,
                    "bbox": bb,
                    "area": bb[2] * bb[3],
                    "iscrowd": int(ign),
                }
            )
        for b, s, lab in zip(im["det_boxes"], im["det_scores"], im["det_labels"], strict=True):
            dts.append({"image_id": i + 1, "category_id": int(lab) + 1, "bbox": xywh(b), "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": imgs, "categories": cats, "annotations": gts}
        gt.createIndex()
        if dts:
            dt = gt.loadRes(dts)
        else:  # loadRes cannot take an empty list
            dt = COCO()
            dt.dataset = {"images": imgs, "categories": cats, "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
    per_class = np.array([np.mean(p[p > -1]) if np.any(p > -1) else -1.0 for p in np.moveaxis(prec, 2, 0)])
    return np.asarray(ev.stats), per_class, ev.eval


def _assert_matches_coco(images, n_classes):
    classes = tuple(f"c{k}" for k in range(n_classes))
    res = _ours(images, classes)
    stats, per_class, ev = _coco(images, n_classes)
    ours_stats = np.where(np.isnan(res.stats), -1.0, res.stats)
    np.testing.assert_allclose(ours_stats, stats, atol=1e-6, rtol=0)
    ours_cls = np.where(np.isnan(res.ap_per_class), -1.0, res.ap_per_class)
    np.testing.assert_allclose(ours_cls, per_class, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.nan_to_num(res.precision, nan=-1.0), ev["precision"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(np.nan_to_num(res.recall, nan=-1.0), ev["recall"], atol=1e-12, rtol=0)
    return res


# ---------------------------------------------------------------- hand-computed cases
def test_thresholds_are_cocos():
    np.testing.assert_array_equal(COCO_IOU_THRESHOLDS, np.linspace(0.5, 0.95, 10))
    assert len(COCO_REC_THRESHOLDS) == 101


def test_iou_plain_and_crowd():
    d = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    g = np.array([[5, 0, 15, 10], [0, 0, 40, 40]], np.float32)
    iou = box_iou_coco(d, g, np.array([False, True]))
    # det0 vs gt0: inter 50, union 150; det0 vs crowd gt1: inter 100 / det area 100
    np.testing.assert_allclose(iou, [[50 / 150, 1.0], [0.0, 1.0]])
    # touching boxes do not overlap
    assert box_iou_coco(d[:1], np.array([[10, 0, 20, 10]], np.float32), np.array([False]))[0, 0] == 0.0


def test_perfect_detection_ap_one():
    res = _ours([_img(gt=[[10, 10, 60, 60]], gl=[0], det=[[10, 10, 60, 60]], ds=[0.9], dl=[0])])
    assert res.map == pytest.approx(1.0)
    assert res.map50 == pytest.approx(1.0)
    d = res.as_dict()
    assert d["det.ap.car"] == pytest.approx(1.0)
    assert np.isnan(d["det.ap.pedestrian"])  # no gt for this class
    assert d["det.best_f1.car"] == pytest.approx(1.0)
    assert d["det.best_f1_score.car"] == pytest.approx(0.9)
    assert d["det.ar100"] == pytest.approx(1.0)
    assert d["det.map_medium"] == pytest.approx(1.0)  # area 2500 is medium
    assert np.isnan(d["det.map_small"]) and np.isnan(d["det.map_large"])


def test_false_positive_above_true_positive():
    # FP scored 0.9, TP scored 0.8; 1 gt. Ranked: FP (P=0, R=0), TP (P=1/2, R=1).
    # Envelope: precision 0.5 at every recall threshold 0..1 -> AP = 0.5 at every IoU threshold.
    im = _img(gt=[[0, 0, 50, 50]], gl=[0], det=[[200, 200, 250, 250], [0, 0, 50, 50]], ds=[0.9, 0.8], dl=[0, 0])
    res = _assert_matches_coco([im], 1)
    assert res.map == pytest.approx(0.5)
    assert res.best_f1[0].f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert res.best_f1[0].score == pytest.approx(0.8)
    np.testing.assert_allclose(res.pr_curves[0].precision, [0.0, 0.5])
    np.testing.assert_allclose(res.pr_curves[0].recall, [0.0, 1.0])


def test_duplicate_detection_is_false_positive():
    # TP at 0.9 then a duplicate at 0.8: P = 1, then 1/2; R = 1 from the first -> AP 1, best F1 at 0.9.
    im = _img(gt=[[0, 0, 50, 50]], gl=[0], det=[[0, 0, 50, 50], [1, 1, 50, 50]], ds=[0.9, 0.8], dl=[0, 0])
    res = _assert_matches_coco([im], 1)
    assert res.map == pytest.approx(1.0)
    assert res.best_f1[0].score == pytest.approx(0.9)
    assert res.best_f1[0].f1 == pytest.approx(1.0)
    # two gt, TP at 0.9, duplicate FP at 0.8, second TP at 0.7: P = 1, 1/2, 2/3; R = .5, .5, 1
    # envelope: 1 for r <= .5 (51 thresholds), 2/3 for .5 < r <= 1 (50 thresholds)
    im2 = _img(
        gt=[[0, 0, 50, 50], [100, 100, 150, 150]],
        gl=[0, 0],
        det=[[0, 0, 50, 50], [1, 1, 50, 50], [100, 100, 150, 150]],
        ds=[0.9, 0.8, 0.7],
        dl=[0, 0, 0],
    )
    res2 = _assert_matches_coco([im2], 1)
    assert res2.map == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)


def test_detection_on_ignored_gt_is_neither_tp_nor_fp():
    # crowd region absorbs two detections (IoU uses det area); the real gt is found at 0.5 -> AP 1
    im = _img(
        gt=[[0, 0, 100, 100], [300, 300, 350, 350]],
        gl=[0, 0],
        gi=[True, False],
        det=[[10, 10, 30, 30], [40, 40, 60, 60], [300, 300, 350, 350]],
        ds=[0.95, 0.9, 0.5],
        dl=[0, 0, 0],
    )
    res = _assert_matches_coco([im], 1)
    assert res.map == pytest.approx(1.0)
    assert len(res.pr_curves[0].scores) == 1  # ignored detections are not on the curve
    # without the ignore flag it is one gt missed and two FPs above the TP
    im["gt_ignore"] = np.array([False, False])
    res2 = _assert_matches_coco([im], 1)
    assert res2.map < 0.5


def test_empty_images_and_no_detections_and_class_without_gt():
    empty = _img()
    # only empty images: nothing defined
    res = _ours([empty, empty])
    assert np.all(np.isnan(res.stats))
    assert all(np.isnan(v) for v in res.as_dict().values())
    # gt but no detections at all: AP 0, AR 0, best F1 0 with no threshold
    res = _assert_matches_coco([empty, _img(gt=[[0, 0, 10, 10]], gl=[1])], 2)
    assert res.map == 0.0 and res.stats[8] == 0.0
    assert np.isnan(res.ap_per_class[0]) and res.ap_per_class[1] == 0.0
    assert res.best_f1[1].f1 == 0.0 and np.isnan(res.best_f1[1].score)
    # detections of a class with no gt: that class is NaN (pycocotools -1) and excluded from the mean
    im = _img(gt=[[0, 0, 10, 10]], gl=[0], det=[[0, 0, 10, 10], [5, 5, 9, 9]], ds=[0.5, 0.9], dl=[0, 1])
    res = _assert_matches_coco([im, empty], 2)
    assert res.map == pytest.approx(1.0)
    assert np.isnan(res.as_dict()["det.ap.c1"])


def test_max_dets_and_ar_at_one():
    # two gt in one image, both found, but with maxDet 1 only the top detection counts
    im = _img(
        gt=[[0, 0, 50, 50], [100, 100, 150, 150]],
        gl=[0, 0],
        det=[[0, 0, 50, 50], [100, 100, 150, 150]],
        ds=[0.9, 0.8],
        dl=[0, 0],
    )
    res = _assert_matches_coco([im], 1)
    assert res.stats[6] == pytest.approx(0.5)  # AR@1
    assert res.stats[7] == pytest.approx(1.0)  # AR@10


def test_input_validation():
    acc = DetectionAccumulator(CLASSES)
    acc.add("a", **_img())
    with pytest.raises(ValueError, match="already added"):
        acc.add("a", **_img())
    with pytest.raises(ValueError, match="class indices"):
        acc.add("b", **_img(gt=[[0, 0, 1, 1]], gl=[7]))
    with pytest.raises(ValueError, match="x2 >= x1"):
        acc.add("c", **_img(det=[[5, 0, 1, 1]], ds=[0.5], dl=[0]))
    with pytest.raises(ValueError, match="max_dets"):
        DetectionAccumulator(CLASSES, max_dets=5)


def test_inputs_not_modified():
    im = _img(gt=[[0, 0, 10, 10]], gl=[0], gi=[True], det=[[0, 0, 10, 10]], ds=[0.5], dl=[0])
    before = {k: v.copy() for k, v in im.items()}
    _ours([im])
    for k in im:
        np.testing.assert_array_equal(im[k], before[k])


# ---------------------------------------------------------------- pycocotools on adversarial fixed cases
def test_identical_scores_across_and_within_images():
    ims = [
        _img(
            gt=[[0, 0, 40, 40], [50, 50, 90, 90]],
            gl=[0, 0],
            det=[[0, 0, 40, 40], [200, 0, 240, 40], [50, 50, 90, 90]],
            ds=[0.5, 0.5, 0.5],
            dl=[0, 0, 0],
        ),
        _img(gt=[[0, 0, 40, 40]], gl=[0], det=[[300, 0, 340, 40], [0, 0, 40, 40]], ds=[0.5, 0.5], dl=[0, 0]),
    ]
    _assert_matches_coco(ims, 1)


def test_iou_exactly_at_half():
    # det [0,0,20,10] vs gt [0,0,10,10] (and vice versa): IoU exactly 0.5 -> TP at 0.5 only
    ims = [
        _img(gt=[[0, 0, 10, 10]], gl=[0], det=[[0, 0, 20, 10]], ds=[0.7], dl=[0]),
        _img(gt=[[0, 0, 20, 10]], gl=[0], det=[[0, 0, 10, 10]], ds=[0.7], dl=[0]),
    ]
    assert box_iou_coco(ims[0]["det_boxes"], ims[0]["gt_boxes"], np.array([False]))[0, 0] == 0.5
    res = _assert_matches_coco(ims, 1)
    assert res.map50 == pytest.approx(1.0)
    assert res.map == pytest.approx(0.1)


def test_equal_iou_tie_goes_to_later_gt():
    # det0 has IoU exactly 0.5 with both gts; pycocotools keeps the later one (A), so det1 (= B) is a TP.
    # Taking the earlier one instead would leave det1 with IoU 0.25 against A: a FP.
    b, a = [0, 0, 10, 5], [0, 0, 20, 10]
    im = _img(gt=[b, a], gl=[0, 0], det=[[0, 0, 10, 10], b], ds=[0.9, 0.8], dl=[0, 0])
    res = _assert_matches_coco([im], 1)
    assert res.ap[0, 0] == pytest.approx(1.0)


def test_detections_without_gt_and_all_gt_ignored():
    ims = [
        _img(det=[[0, 0, 10, 10], [5, 5, 30, 30]], ds=[0.3, 0.6], dl=[0, 1]),
        _img(gt=[[0, 0, 10, 10], [0, 0, 200, 200]], gl=[0, 1], gi=[True, True], det=[[0, 0, 10, 10]], ds=[0.9], dl=[0]),
    ]
    res = _assert_matches_coco(ims, 2)
    assert np.all(np.isnan(res.stats))
    res = _assert_matches_coco(ims + [_img(gt=[[0, 0, 5, 5]], gl=[1])], 2)
    assert res.map == 0.0


def test_area_range_borders_tiny_and_huge():
    # areas exactly 32**2 and 96**2 belong to two ranges each; tiny (1 px, 0-area) and huge boxes
    ims = [
        _img(
            gt=[[0, 0, 32, 32], [100, 100, 196, 196], [500, 500, 501, 501], [0, 0, 1900, 1900]],
            gl=[0, 0, 0, 1],
            det=[[0, 0, 33, 32], [100, 100, 195, 196], [500, 500, 501, 501], [10, 10, 1890, 1900], [7, 7, 7, 9]],
            ds=[0.9, 0.8, 0.7, 0.6, 0.95],
            dl=[0, 0, 0, 1, 0],
        ),
        _img(
            gt=[[0, 0, 31, 33], [0, 0, 97, 95]],
            gl=[0, 0],
            gi=[False, True],
            det=[[0, 0, 33, 31], [0, 0, 96, 96], [0, 0, 97, 95]],
            ds=[0.5, 0.4, 0.3],
            dl=[0, 0, 0],
        ),
    ]
    _assert_matches_coco(ims, 2)


def test_more_than_max_dets():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (130, 2))
    det = np.concatenate([xy, xy + rng.uniform(5, 60, (130, 2))], 1)
    gt = det[::3] + rng.uniform(-3, 3, (44, 4))
    gt[:, 2:] = np.maximum(gt[:, 2:], gt[:, :2] + 1)
    ims = [_img(gt=gt, gl=np.zeros(44), det=det, ds=np.round(rng.uniform(0, 1, 130), 2), dl=np.zeros(130))]
    _assert_matches_coco(ims, 1)


# ---------------------------------------------------------------- pycocotools on random cases
def _random_images(seed: int, n_classes: int, n_images: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        ng, nd = int(rng.integers(0, 9)), int(rng.integers(0, 13))
        scale = rng.choice([8.0, 30.0, 60.0, 150.0])
        xy = np.round(rng.uniform(0, 200, (ng, 2)))
        wh = np.round(rng.uniform(1, scale, (ng, 2)))
        gt = np.concatenate([xy, xy + wh], 1)
        gl = rng.integers(0, n_classes, ng)
        gi = rng.random(ng) < 0.2
        dets, dl = [], []
        for _ in range(nd):
            kind = rng.integers(0, 4)
            if ng and kind < 3:
                j = int(rng.integers(0, ng))
                b = gt[j].copy()
                if kind == 0:  # jitter: near-duplicates and partial overlaps
                    b = b + np.round(rng.normal(0, 0.15, 4) * (b[2:] - b[:2]).repeat(2))
                elif kind == 1:  # double the width: IoU exactly 0.5 with the gt
                    b[2] = b[0] + 2 * (b[2] - b[0])
                b[2:] = np.maximum(b[2:], b[:2])
                dets.append(b)
                dl.append(gl[j] if rng.random() < 0.85 else rng.integers(0, n_classes))
            else:
                p = np.round(rng.uniform(0, 200, 2))
                dets.append(np.concatenate([p, p + np.round(rng.uniform(1, scale, 2))]))
                dl.append(rng.integers(0, n_classes))
        scores = np.round(rng.uniform(0, 1, nd), 1)  # coarse: many ties
        images.append(_img(gt=gt, gl=gl, gi=gi, det=dets, ds=scores, dl=dl))
    return images


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(1, 4), n_images=st.integers(1, 3))
def test_matches_pycocotools_random(seed, n_classes, n_images):
    _assert_matches_coco(_random_images(seed, n_classes, n_images), n_classes)


# ---------------------------------------------------------------- merging shards
def test_merge_equals_single_pass():
    images = _random_images(123, 3, 12)
    classes = ("a", "b", "c")
    full = _ours(images, classes)
    left, right = DetectionAccumulator(classes), DetectionAccumulator(classes)
    for i, im in enumerate(images):
        (left if i < 6 else right).add(i, **im)
    merged = left.merge(right).compute()
    np.testing.assert_array_equal(merged.precision, full.precision)
    np.testing.assert_array_equal(merged.recall, full.recall)
    np.testing.assert_array_equal(merged.stats, full.stats)
    assert merged.as_dict().keys() == full.as_dict().keys()
    for k, v in full.as_dict().items():
        assert (np.isnan(v) and np.isnan(merged.as_dict()[k])) or v == merged.as_dict()[k], k
    with pytest.raises(ValueError, match="both"):
        left.merge(right)
    with pytest.raises(ValueError, match="different"):
        left.merge(DetectionAccumulator(("a",)))
