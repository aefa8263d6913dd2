"""decode_grid / anchor_centers / select_detections against hand-computed values and slow loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.frames import Detections
from perception.postprocess.decode import BOX_ENCODINGS, anchor_centers, decode_grid, select_detections

# --------------------------------------------------------------------------------------------------------
# Slow references.


def ref_decode(cls_maps, box_maps, strides):
    """Loop-by-loop decode in float64: boxes [N, A, 4], scores [N, A, C]."""
    n, c = cls_maps[0].shape[:2]
    boxes = [[] for _ in range(n)]
    scores = [[] for _ in range(n)]
    for cls, box, s in zip(cls_maps, box_maps, strides, strict=True):
        h, w = cls.shape[2:]
        for b in range(n):
            for i in range(h):
                for j in range(w):
                    cx, cy = (j + 0.5) * s, (i + 0.5) * s
                    left, top, right, bottom = (math.log1p(math.exp(float(v))) for v in box[b, :, i, j])
                    boxes[b].append([cx - left * s, cy - top * s, cx + right * s, cy + bottom * s])
                    scores[b].append([1 / (1 + math.exp(-float(v))) for v in cls[b, :, i, j]])
    return np.array(boxes).reshape(n, -1, 4), np.array(scores).reshape(n, -1, c)


def ref_select(boxes, scores, score_threshold, iou_threshold, max_dets, class_agnostic=False):
    """Candidates by explicit loops, then one-box-at-a-time greedy NMS; returns (anchor, class) pairs."""
    box_list, score_list = boxes.tolist(), scores.tolist()  # float32 values as exact Python floats
    threshold = float(np.float32(score_threshold))
    cands = [(a, c) for a, row in enumerate(score_list) for c, score in enumerate(row) if score > threshold]
    order = sorted(range(len(cands)), key=lambda k: (-score_list[cands[k][0]][cands[k][1]], k))
    kept: list[int] = []
    for k in order:
        a, c = cands[k]
        if not any(
            (class_agnostic or cands[m][1] == c) and _iou(box_list[cands[m][0]], box_list[a]) > iou_threshold
            for m in kept
        ):
            kept.append(k)
    return [cands[k] for k in kept[:max_dets]]


def _iou(p, q) -> float:
    iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = iw * ih
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return inter / union if union > 0 else 0.0


def _inv_softplus(d: float) -> float:
    return math.log(math.expm1(d))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# --------------------------------------------------------------------------------------------------------
# anchor_centers / decode_grid.


def test_decode_hand_computed_2x2() -> None:
    # Input 16x16, stride 8: a 2x2 grid, centres (4, 4), (12, 4), (4, 12), (12, 12) in row-major order.
    cls = np.zeros((1, 2, 2, 2), np.float32)
    cls[0, 1, 0, 1] = _logit(0.75)
    cls[0, 0, 1, 0] = -_logit(0.9)
    box = np.full((1, 4, 2, 2), _inv_softplus(1.0), np.float32)  # distance 1 stride = 8 px on every side
    box[0, :, 0, 1] = [_inv_softplus(d) for d in (1.0, 0.5, 2.0, 0.25)]
    boxes, scores = decode_grid([cls], [box], [8])
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert boxes.shape == (1, 4, 4) and scores.shape == (1, 4, 2)
    expected_boxes = [
        [-4, -4, 12, 12],  # (0, 0): centre (4, 4)
        [4, 0, 28, 6],  # (0, 1): centre (12, 4), l=8, t=4, r=16, b=2
        [-4, 4, 12, 20],  # (1, 0): centre (4, 12)
        [4, 4, 20, 20],  # (1, 1): centre (12, 12)
    ]
    np.testing.assert_allclose(boxes[0], expected_boxes, atol=1e-4)
    expected_scores = [[0.5, 0.5], [0.5, 0.75], [0.1, 0.5], [0.5, 0.5]]
    np.testing.assert_allclose(scores[0], expected_scores, atol=1e-6)


def test_anchor_centers_level_order() -> None:
    centers, strides = anchor_centers([(2, 3), (1, 2)], [8, 16])
    assert centers.dtype == np.float32 and strides.dtype == np.float32
    expected = [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8], [24, 8]]
    assert centers.tolist() == expected
    assert strides.tolist() == [8] * 6 + [16] * 2
    empty_c, empty_s = anchor_centers([], [])
    assert empty_c.shape == (0, 2) and empty_s.shape == (0,)
    with pytest.raises(ValueError, match="strides"):
        anchor_centers([(2, 2)], [8, 16])
    with pytest.raises(ValueError, match="stride"):
        anchor_centers([(2, 2)], [0])


@pytest.mark.parametrize("seed", range(5))
def test_decode_matches_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    strides = (8, 16, 32)
    h, w, n, c = 64, 96, 2, 3
    cls = [rng.normal(0, 4, (n, c, h // s, w // s)).astype(np.float32) for s in strides]
    box = [rng.normal(0, 3, (n, 4, h // s, w // s)).astype(np.float32) for s in strides]
    boxes, scores = decode_grid(cls, box, strides)
    ref_boxes, ref_scores = ref_decode(cls, box, strides)
    a = sum((h // s) * (w // s) for s in strides)
    assert boxes.shape == (n, a, 4) and scores.shape == (n, a, c)
    np.testing.assert_allclose(boxes, ref_boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-7)


def test_decode_level_concatenation_order() -> None:
    # Level 0 (stride 8) on a 32x32 input is 4x4, level 1 (stride 16) 2x2; anchors 0..15 then 16..19.
    cls0 = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    cls1 = 100 + np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    far_negative = -50.0  # softplus ~ 0: each box collapses to its anchor point
    box0 = np.full((1, 4, 4, 4), far_negative, np.float32)
    box1 = np.full((1, 4, 2, 2), far_negative, np.float32)
    boxes, scores = decode_grid([cls0 / 10, cls1 / 10], [box0, box1], [8, 16])
    logits = np.concatenate([np.arange(16), 100 + np.arange(4)]) / 10
    np.testing.assert_allclose(scores[0, :, 0], 1 / (1 + np.exp(-logits)), rtol=1e-6)
    centers, _ = anchor_centers([(4, 4), (2, 2)], [8, 16])
    np.testing.assert_allclose(boxes[0, :, :2], centers, atol=1e-3)
    np.testing.assert_allclose(boxes[0, :, 2:], centers, atol=1e-3)
    assert boxes[0, 16, :2].tolist() == pytest.approx([8, 8], abs=1e-3)  # first cell of the stride-16 level
    # Reversing the level order reverses the blocks.
    boxes_r, scores_r = decode_grid([cls1 / 10, cls0 / 10], [box1, box0], [16, 8])
    np.testing.assert_array_equal(scores_r[0, :4], scores[0, 16:])
    np.testing.assert_array_equal(boxes_r[0, 4:], boxes[0, :16])


def test_decode_is_numerically_stable_and_keeps_inputs() -> None:
    cls = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0, 0, 0, 0], np.float32).reshape(1, 2, 2, 2)
    box = np.array([-1000.0, -30, 0, 30, 1000, 1, 2, 3] * 2, np.float32).reshape(1, 4, 2, 2)
    saved = cls.copy(), box.copy()
    cls.flags.writeable = False
    box.flags.writeable = False
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        boxes, scores = decode_grid([cls], [box], [4])
    assert np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores))
    # Logits -1000, 0 and 1000.
    assert scores[0, 0, 0] == 0.0 and scores[0, 2, 0] == 0.5 and scores[0, 0, 1] == 1.0
    assert 0 <= scores.min() and scores.max() <= 1
    # softplus(1000) = 1000 (no overflow): the top of anchor 0 (centre (2, 2), stride 4) is 1000 strides up.
    assert boxes[0, 0, 1] == pytest.approx(2 - 1000 * 4)
    assert boxes[0, 0, 0] == pytest.approx(2)  # softplus(-1000) = 0
    np.testing.assert_array_equal(cls, saved[0])
    np.testing.assert_array_equal(box, saved[1])


def test_decode_accepts_float16() -> None:
    cls = np.zeros((1, 1, 2, 2), np.float16)
    box = np.zeros((1, 4, 2, 2), np.float16)
    boxes, scores = decode_grid([cls], [box], [8])
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    d = 8 * math.log(2)  # softplus(0) strides
    np.testing.assert_allclose(boxes[0, 0], [4 - d, 4 - d, 4 + d, 4 + d], rtol=1e-6)
    np.testing.assert_allclose(scores, 0.5)


def test_decode_shape_errors() -> None:
    cls = np.zeros((1, 3, 4, 4), np.float32)
    box = np.zeros((1, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match="one stride per level"):
        decode_grid([cls], [box], [8, 16])
    with pytest.raises(ValueError, match="one stride per level"):
        decode_grid([cls, cls], [box], [8, 16])
    with pytest.raises(ValueError, match="one stride per level"):
        decode_grid([], [], [])
    with pytest.raises(ValueError, match="class map of level 0"):
        decode_grid([cls[0]], [box], [8])
    with pytest.raises(ValueError, match="box map of level 0"):
        decode_grid([cls], [box[:, :3]], [8])
    with pytest.raises(ValueError, match="box map of level 0"):
        decode_grid([cls], [box[:, :, :2]], [8])
    with pytest.raises(ValueError, match="class map of level 1"):
        decode_grid([cls, np.zeros((1, 2, 2, 2), np.float32)], [box, box[:, :, :2, :2]], [8, 16])
    with pytest.raises(ValueError, match="class map of level 1"):
        decode_grid([cls, np.zeros((2, 3, 2, 2), np.float32)], [box, box[:, :, :2, :2]], [8, 16])


def test_unknown_box_encoding_lists_valid_names() -> None:
    assert "ltrb_softplus" in BOX_ENCODINGS
    cls = np.zeros((1, 1, 1, 1), np.float32)
    box = np.zeros((1, 4, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"unknown box encoding 'ltrb_exp'.*ltrb_softplus"):
        decode_grid([cls], [box], [8], box_encoding="ltrb_exp")


# --------------------------------------------------------------------------------------------------------
# select_detections.


def _det_pairs(dets: Detections, boxes: np.ndarray) -> list[tuple[int, int]]:
    """(anchor, class) of each detection, finding the anchor by its (unique) box."""
    out = []
    for box, label in zip(dets.boxes_xyxy, dets.labels, strict=True):
        (anchor,) = np.flatnonzero(np.all(boxes == box, axis=1))
        out.append((int(anchor), int(label)))
    return out


def test_select_score_threshold_is_strict() -> None:
    boxes = np.array([[0, 0, 1, 1], [10, 0, 11, 1], [20, 0, 21, 1]], np.float32)
    scores = np.array([[0.25], [np.nextafter(np.float32(0.25), np.float32(1))], [0.1]], np.float32)
    dets = select_detections(boxes, scores, 0.25, 0.5, 100)
    assert dets.labels.tolist() == [0] and dets.boxes_xyxy.tolist() == [[10, 0, 11, 1]]
    # Compared in float32: a float32 score equal to float32(0.1) is not above a threshold of 0.1.
    assert len(select_detections(boxes, scores, 0.1, 0.5, 100)) == 2


def test_select_multi_label_one_anchor_two_classes() -> None:
    boxes = np.array([[0, 0, 4, 4], [10, 10, 14, 14]], np.float32)
    scores = np.array([[0.9, 0.1, 0.6], [0.2, 0.2, 0.2]], np.float32)
    dets = select_detections(boxes, scores, 0.5, 0.5, 100)
    assert isinstance(dets, Detections)
    assert dets.labels.tolist() == [0, 2]
    assert dets.scores.tolist() == pytest.approx([0.9, 0.6])
    assert dets.boxes_xyxy.tolist() == [[0, 0, 4, 4], [0, 0, 4, 4]]
    # Class-agnostic: the second label's copy of the same box is suppressed (IoU 1).
    agnostic = select_detections(boxes, scores, 0.5, 0.5, 100, class_agnostic=True)
    assert agnostic.labels.tolist() == [0]


def test_select_class_aware_vs_agnostic() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [2, 0, 12, 10]], np.float32)  # pairwise IoU > 0.6
    scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.7, 0.0]], np.float32)
    aware = select_detections(boxes, scores, 0.3, 0.5, 100)
    assert _det_pairs(aware, boxes) == [(0, 0), (1, 1)]
    agnostic = select_detections(boxes, scores, 0.3, 0.5, 100, class_agnostic=True)
    assert _det_pairs(agnostic, boxes) == [(0, 0)]


def test_select_max_dets_and_ties() -> None:
    boxes = np.array([[i * 10, 0, i * 10 + 5, 5] for i in range(5)], np.float32)
    scores = np.array([[0.5, 0.5], [0.9, 0.0], [0.3, 0.0], [0.0, 0.9], [0.5, 0.0]], np.float32)
    dets = select_detections(boxes, scores, 0.2, 0.5, 3)
    # 0.9 (anchor 1), 0.9 (anchor 3), then 0.5 ties broken by anchor, then class: (0, 0).
    assert _det_pairs(dets, boxes) == [(1, 0), (3, 1), (0, 0)]
    assert _det_pairs(select_detections(boxes, scores, 0.2, 0.5, 100), boxes) == [
        (1, 0),
        (3, 1),
        (0, 0),
        (0, 1),
        (4, 0),
        (2, 0),
    ]
    assert len(select_detections(boxes, scores, 0.2, 0.5, 0)) == 0


def test_select_empty() -> None:
    boxes = np.array([[0, 0, 1, 1]], np.float32)
    for dets in (
        select_detections(boxes, np.array([[0.1, 0.2]], np.float32), 0.5, 0.5, 10),
        select_detections(np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float32), 0.5, 0.5, 10),
    ):
        assert len(dets) == 0
        assert dets.boxes_xyxy.shape == (0, 4) and dets.scores.shape == (0,) and dets.labels.shape == (0,)


def test_select_bad_shapes() -> None:
    with pytest.raises(ValueError, match="boxes must be"):
        select_detections(np.zeros((3, 5)), np.zeros((3, 2)), 0.5, 0.5, 10)
    with pytest.raises(ValueError, match="scores must be"):
        select_detections(np.zeros((3, 4)), np.zeros((2, 2)), 0.5, 0.5, 10)
    with pytest.raises(ValueError, match="scores must be"):
        select_detections(np.zeros((3, 4)), np.zeros(3), 0.5, 0.5, 10)
    with pytest.raises(ValueError, match="max_dets"):
        select_detections(np.zeros((3, 4)), np.zeros((3, 2)), 0.5, 0.5, -1)


@pytest.mark.parametrize("seed", range(20))
def test_select_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, c = int(rng.integers(1, 150)), int(rng.integers(1, 5))
    xy = rng.uniform(0, 60, (a, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 25, (a, 2))], axis=1).astype(np.float32)
    scores = rng.random((a, c)).astype(np.float32)
    boxes.flags.writeable = False
    scores.flags.writeable = False
    for agnostic in (False, True):
        dets = select_detections(boxes, scores, 0.6, 0.45, 25, class_agnostic=agnostic)
        expected = ref_select(boxes, scores, 0.6, 0.45, 25, class_agnostic=agnostic)
        assert _det_pairs(dets, boxes) == expected
        assert dets.scores.tolist() == [float(scores[p]) for p in expected]


def test_decode_then_select_finds_planted_object() -> None:
    strides = (8, 16, 32)
    h, w, c = 64, 96, 4
    cls = [np.full((1, c, h // s, w // s), -8.0, np.float32) for s in strides]
    box = [np.zeros((1, 4, h // s, w // s), np.float32) for s in strides]
    # One confident class-2 object at stride 16, cell (row 1, col 3): centre (56, 24).
    cls[1][0, 2, 1, 3] = _logit(0.95)
    box[1][0, :, 1, 3] = [_inv_softplus(d) for d in (1.0, 0.5, 1.0, 0.5)]
    boxes, scores = decode_grid(cls, box, strides)
    dets = select_detections(boxes[0], scores[0], 0.25, 0.5, 100)
    assert dets.labels.tolist() == [2]
    assert dets.scores.tolist() == pytest.approx([0.95], abs=1e-6)
    np.testing.assert_allclose(dets.boxes_xyxy, [[40, 16, 72, 32]], atol=1e-3)
