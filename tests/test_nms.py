"""nms and box_iou against a slow pure-Python reference, OpenCV, hand-computed values and edge cases."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.postprocess import nms as nms_module
from perception.postprocess.nms import box_iou, nms

# --------------------------------------------------------------------------------------------------------
# Slow reference: scalar float64 IoU, one candidate at a time.


def ref_iou(a, b) -> float:
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    inter_w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    inter_h = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = inter_w * inter_h
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def ref_nms(boxes, scores, iou_threshold, labels=None, max_output=None) -> list[int]:
    """Greedy NMS, one box at a time, scalar float64 IoU (the formula of ``ref_iou``, inlined for speed)."""
    boxes = [tuple(float(v) for v in box) for box in np.asarray(boxes).tolist()]  # Python floats (float64)
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes]
    scores = [float(s) for s in np.asarray(scores).tolist()]
    labels = [0] * len(scores) if labels is None else np.asarray(labels).tolist()
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        bx1, by1, bx2, by2 = boxes[i]
        suppressed = False
        for k in kept:
            if labels[k] != labels[i]:
                continue
            ax1, ay1, ax2, ay2 = boxes[k]
            # min / max / max(0, .) of ref_iou, written as conditionals (several times faster in CPython).
            w = (bx2 if bx2 < ax2 else ax2) - (bx1 if bx1 > ax1 else ax1)  # noqa: FURB136
            h = (by2 if by2 < ay2 else ay2) - (by1 if by1 > ay1 else ay1)  # noqa: FURB136
            inter = (w if w > 0.0 else 0.0) * (h if h > 0.0 else 0.0)  # noqa: FURB136
            union = areas[k] + areas[i] - inter
            if (inter / union if union > 0 else 0.0) > iou_threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
    return kept if max_output is None else kept[:max_output]


def random_case(seed: int, max_n: int = 300, n_labels: int = 3):
    """Boxes in heavy-overlap clusters plus scattered ones; integer or float coordinates; distinct scores."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, max_n + 1))
    integer = seed % 2 == 0
    n_clusters = int(rng.integers(1, 6))
    centres = rng.uniform(0, 100, (n_clusters, 2))
    which = rng.integers(0, n_clusters, n)
    scattered = rng.random(n) < 0.2
    xy = np.where(scattered[:, None], rng.uniform(0, 100, (n, 2)), centres[which] + rng.normal(0, 3, (n, 2)))
    wh = rng.uniform(0.5, 20, (n, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    if integer:
        boxes = np.round(boxes).astype(np.int64)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])  # keep x1 <= x2 after rounding
    else:
        boxes = boxes.astype(np.float32 if seed % 4 == 1 else np.float64)
    # Distinct even in float32: a permutation of k / (n + 1).
    scores = ((rng.permutation(n) + 1) / (n + 1)).astype(np.float32)
    labels = rng.integers(0, n_labels, n)
    return boxes, scores, labels


SEEDS = range(200)
THRESHOLDS = (0.0, 0.3, 0.5, 0.7)  # 1.0 (nothing suppressed) has its own test below


def _threshold(seed: int) -> float:
    return THRESHOLDS[seed % len(THRESHOLDS)] if seed % 7 else float(np.random.default_rng(seed).random())


# --------------------------------------------------------------------------------------------------------
# Random cases against the reference.


@pytest.mark.parametrize("seed", SEEDS)
def test_nms_matches_reference(seed: int) -> None:
    boxes, scores, labels = random_case(seed)
    thr = _threshold(seed)
    got_agnostic = nms(boxes, scores, thr)
    got_aware = nms(boxes, scores, thr, labels=labels)
    assert got_agnostic.dtype == np.int64 and got_aware.dtype == np.int64
    assert got_agnostic.tolist() == ref_nms(boxes, scores, thr)
    assert got_aware.tolist() == ref_nms(boxes, scores, thr, labels=labels)


@pytest.mark.parametrize("seed", range(1, 200, 8))
def test_nms_small_blocks_match_reference(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # nms walks the sorted boxes in blocks of _BLOCK_BOXES (1024); small blocks exercise the hand-over
    # between blocks (block size 1 would be the classic one-box-at-a-time loop).
    boxes, scores, labels = random_case(seed)
    thr = _threshold(seed)
    expected_agnostic = ref_nms(boxes, scores, thr)
    expected_aware = ref_nms(boxes, scores, thr, labels=labels)
    for block in (1, 7, 64) if seed < 20 else (7, 64):
        monkeypatch.setattr(nms_module, "_BLOCK_BOXES", block)
        assert nms(boxes, scores, thr).tolist() == expected_agnostic
        assert nms(boxes, scores, thr, labels=labels).tolist() == expected_aware
        assert nms(boxes, scores, thr, max_output=5).tolist() == expected_agnostic[:5]


def test_nms_threshold_one_keeps_everything_in_score_order() -> None:
    for seed in range(0, 200, 10):
        boxes, scores, labels = random_case(seed)
        expected = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        assert nms(boxes, scores, 1.0).tolist() == expected, seed
        assert nms(boxes, scores, 1.0, labels=labels).tolist() == expected, seed


def test_nms_pair_chunking_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny chunks: the overlapping-pair sweep and the kept-vs-block test split their work into many pieces.
    monkeypatch.setattr(nms_module, "_BLOCK_ELEMENTS", 7)
    monkeypatch.setattr(nms_module, "_BLOCK_BOXES", 50)
    for seed in range(10):
        boxes, scores, labels = random_case(seed)
        assert nms(boxes, scores, 0.5, labels=labels).tolist() == ref_nms(boxes, scores, 0.5, labels=labels)


def test_nms_max_output_is_a_prefix() -> None:
    for seed in range(20):
        boxes, scores, labels = random_case(seed)
        full = nms(boxes, scores, 0.5, labels=labels).tolist()
        for cap in (0, 1, 3, len(full) // 2, len(full), len(full) + 5):
            assert nms(boxes, scores, 0.5, labels=labels, max_output=cap).tolist() == full[:cap], (seed, cap)


def test_nms_many_rounds_chain() -> None:
    # A chain where each box overlaps only its neighbour and scores fall along the chain: kept and
    # suppressed alternate, the worst case for deciding boxes in rounds.
    n = 101
    boxes = np.stack([np.arange(n) * 0.5, np.zeros(n), np.arange(n) * 0.5 + 1, np.ones(n)], axis=1)
    scores = np.linspace(1, 0.01, n)
    assert nms(boxes, scores, 0.3).tolist() == list(range(0, n, 2))
    assert nms(boxes, scores, 0.3).tolist() == ref_nms(boxes, scores, 0.3)


def test_negative_threshold_suppresses_everything_but_the_best_per_class() -> None:
    boxes = np.array([[0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21]], float)
    scores = np.array([0.2, 0.9, 0.5])
    assert nms(boxes, scores, -0.1).tolist() == [1] == ref_nms(boxes, scores, -0.1)
    labels = np.array([0, 1, 0])
    assert nms(boxes, scores, -0.1, labels=labels).tolist() == [1, 2] == ref_nms(boxes, scores, -0.1, labels)


# --------------------------------------------------------------------------------------------------------
# OpenCV (cv2.dnn.NMSBoxes takes [x, y, w, h], suppresses on IoU > threshold, returns kept indices).


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    b = np.asarray(boxes, np.float64)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1).tolist()


def _cv2_nms(boxes, scores, thr, labels=None) -> list[int]:
    if len(scores) == 0:
        return []
    if labels is None:
        idx = cv2.dnn.NMSBoxes(_xywh(boxes), scores.tolist(), 0.0, thr)
    else:
        idx = cv2.dnn.NMSBoxesBatched(_xywh(boxes), scores.tolist(), labels.tolist(), 0.0, thr)
    return sorted(np.asarray(idx, np.int64).reshape(-1).tolist())


@pytest.mark.parametrize("seeds", [range(k, 100, 4) for k in range(4)], ids=lambda r: f"seeds{r.start}mod4")
def test_nms_matches_opencv(seeds: range) -> None:
    thr = (0.3, 0.45, 0.5, 0.65)[seeds.start]
    for seed in seeds:
        boxes, scores, labels = random_case(seed)
        # OpenCV treats two zero-area boxes as IoU 1 (jaccardDistance of empty rects is 0); drop them here.
        b = np.asarray(boxes, np.float64)
        positive = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) > 0
        boxes, scores, labels = boxes[positive], scores[positive], labels[positive]
        assert sorted(nms(boxes, scores, thr).tolist()) == _cv2_nms(boxes, scores, thr), seed
        aware = sorted(nms(boxes, scores, thr, labels=labels).tolist())
        assert aware == _cv2_nms(boxes, scores, thr, labels), seed


def test_opencv_exact_threshold_agrees() -> None:
    xywh = [[0, 0, 2, 1], [0, 0, 1, 1]]  # IoU exactly 1/2
    assert list(cv2.dnn.NMSBoxes(xywh, [0.9, 0.8], 0.0, 0.5)) == [0, 1]
    assert list(cv2.dnn.NMSBoxes(xywh, [0.9, 0.8], 0.0, 0.4999)) == [0]


def test_opencv_differs_on_zero_area_boxes() -> None:
    # Documented difference: OpenCV gives two zero-area boxes IoU 1 wherever they are; we give 0.
    boxes = np.array([[1, 1, 1, 1], [5, 5, 5, 5]], float)
    scores = np.array([0.9, 0.8])
    assert list(cv2.dnn.NMSBoxes(_xywh(boxes), scores.tolist(), 0.0, 0.5)) == [0]
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]


# --------------------------------------------------------------------------------------------------------
# Edge cases.


def test_empty_input() -> None:
    for boxes, scores in ((np.zeros((0, 4)), np.zeros(0)), ([], [])):
        out = nms(boxes, scores, 0.5)
        assert out.dtype == np.int64 and out.shape == (0,)
    out = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5, labels=np.zeros(0, np.int64))
    assert out.dtype == np.int64 and out.shape == (0,)


def test_one_box() -> None:
    assert nms(np.array([[0, 0, 1, 1]]), np.array([0.3]), 0.5).tolist() == [0]
    assert nms(np.array([[0, 0, 1, 1]]), np.array([0.3]), 0.5, max_output=0).tolist() == []


def test_identical_boxes_identical_scores_keep_lowest_index() -> None:
    boxes = np.tile(np.array([[2.0, 3.0, 7.0, 9.0]]), (5, 1))
    assert nms(boxes, np.full(5, 0.7), 0.5).tolist() == [0]
    assert nms(boxes, np.full(5, 0.7), 0.99).tolist() == [0]


def test_identical_boxes_different_scores_keep_highest() -> None:
    boxes = np.tile(np.array([[2.0, 3.0, 7.0, 9.0]]), (4, 1))
    assert nms(boxes, np.array([0.2, 0.9, 0.5, 0.1]), 0.5).tolist() == [1]


def test_ties_ordered_by_index() -> None:
    boxes = np.array([[0, 0, 1, 1], [10, 0, 11, 1], [20, 0, 21, 1], [30, 0, 31, 1]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.5, 0.9]), 0.5).tolist() == [1, 3, 0, 2]


def test_iou_exactly_at_threshold_is_kept() -> None:
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1]])  # IoU exactly 1/2
    scores = np.array([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.4999).tolist() == [0]
    assert nms(boxes.astype(np.float32), scores.astype(np.float32), np.float32(0.5)).tolist() == [0, 1]
    # Same when the pair is class-aware and shares a label.
    assert nms(boxes, scores, 0.5, labels=np.array([3, 3])).tolist() == [0, 1]
    assert nms(boxes, scores, 0.4999, labels=np.array([3, 3])).tolist() == [0]


def test_zero_area_boxes_never_suppress() -> None:
    boxes = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 4, 4], [2, 0, 2, 4]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.0).tolist() == [0, 1, 2, 3]
    assert box_iou(boxes[:2], boxes[:2]).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_threshold_zero_and_one() -> None:
    boxes = np.array([[0, 0, 2, 2], [1, 1, 3, 3], [2, 0, 4, 2], [0, 0, 2, 2]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # 0: any positive overlap suppresses; touching boxes (box 2 touches box 0 at x=2) do not overlap.
    assert nms(boxes, scores, 0.0).tolist() == [0, 2]
    # 1: nothing is suppressed, not even an identical box (IoU exactly 1 is not > 1).
    assert nms(boxes, scores, 1.0).tolist() == [0, 1, 2, 3]


def test_max_output() -> None:
    boxes = np.array([[i * 10, 0, i * 10 + 5, 5] for i in range(6)], float)
    scores = np.array([0.1, 0.6, 0.3, 0.9, 0.2, 0.5])
    assert nms(boxes, scores, 0.5, max_output=3).tolist() == [3, 1, 5]
    assert nms(boxes, scores, 0.5, max_output=100).tolist() == [3, 1, 5, 2, 4, 0]


def test_class_aware_identical_boxes_different_labels_both_kept() -> None:
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4]], float)
    scores = np.array([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5, labels=np.array([0, 1, 0])).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5).tolist() == [0]


@pytest.mark.parametrize("block", [1024, 5])
def test_inputs_read_only_and_unchanged(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Read-only inputs: any in-place write (on the caller's array or a view of it) raises.
    monkeypatch.setattr(nms_module, "_BLOCK_BOXES", block)
    boxes, scores, labels = random_case(3)
    boxes, scores, labels = boxes.astype(np.float32), scores.copy(), labels.copy()
    saved = boxes.copy(), scores.copy(), labels.copy()
    for arr in (boxes, scores, labels):
        arr.flags.writeable = False
    nms(boxes, scores, 0.5, labels=labels, max_output=10)
    nms(boxes, scores, -1.0)
    nms(boxes, scores, 0.5)
    box_iou(boxes, boxes)
    for arr, before in zip((boxes, scores, labels), saved, strict=True):
        np.testing.assert_array_equal(arr, before)
        assert not arr.flags.writeable


@pytest.mark.parametrize(
    ("boxes", "scores", "labels", "match"),
    [
        (np.zeros((3, 5)), np.zeros(3), None, "boxes_xyxy must be"),
        (np.zeros(4), np.zeros(1), None, "boxes_xyxy must be"),
        (np.zeros((2, 2, 4)), np.zeros(2), None, "boxes_xyxy must be"),
        (np.zeros((3, 4)), np.zeros(2), None, "scores must be"),
        (np.zeros((3, 4)), np.zeros((3, 1)), None, "scores must be"),
        (np.zeros((3, 4)), np.zeros(3), np.zeros(2, int), "labels must be"),
        (np.zeros((3, 4)), np.zeros(3), np.zeros(3, float), "labels must be integer"),
        (np.array([["a", "b", "c", "d"]]), np.zeros(1), None, "real numbers"),
    ],
)
def test_bad_shapes_raise(boxes, scores, labels, match) -> None:
    with pytest.raises(ValueError, match=match):
        nms(boxes, scores, 0.5, labels=labels)


def test_bad_arguments_raise() -> None:
    boxes, scores = np.zeros((2, 4)), np.zeros(2)
    with pytest.raises(ValueError, match="max_output"):
        nms(boxes, scores, 0.5, max_output=-1)
    with pytest.raises(ValueError, match="NaN"):
        nms(boxes, scores, float("nan"))
    with pytest.raises(ValueError, match="a must be"):
        box_iou(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="b must be"):
        box_iou(np.zeros((2, 4)), np.zeros(4))


# --------------------------------------------------------------------------------------------------------
# box_iou.


def test_box_iou_hand_computed() -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 2, 1]], float)
    b = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [5, 5, 6, 6], [2, 0, 4, 2], [0, 0, 1, 1]], float)
    got = box_iou(a, b)
    assert got.dtype == np.float64 and got.shape == (2, 5)
    expected = [
        [1.0, 2 / 6, 0.0, 0.0, 1 / 4],  # identical, half overlap (2/(4+4-2)), disjoint, touching, inside
        [2 / 4, 1 / 5, 0.0, 0.0, 1 / 2],
    ]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    assert got[1, 4] == 0.5  # exact


def test_box_iou_empty_and_reference() -> None:
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert box_iou(np.zeros((2, 4)), np.zeros((0, 4))).shape == (2, 0)
    boxes, _, _ = random_case(11, max_n=40)
    got = box_iou(boxes, boxes[::-1])
    as_float = [[float(v) for v in box] for box in boxes.tolist()]
    expected = [[ref_iou(p, q) for q in as_float[::-1]] for p in as_float]
    assert got.tolist() == expected  # bit-exact with the scalar float64 reference


# --------------------------------------------------------------------------------------------------------
# Properties.


@st.composite
def box_sets(draw):
    n = draw(st.integers(0, 25))
    coords = st.integers(0, 20)
    boxes = []
    for _ in range(n):
        x1, y1 = draw(coords), draw(coords)
        boxes.append([x1, y1, x1 + draw(st.integers(0, 10)), y1 + draw(st.integers(0, 10))])
    scores = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))  # many ties on purpose
    labels = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return (
        np.array(boxes, np.int64).reshape(-1, 4),
        np.array(scores, np.float64) / 5,
        np.array(labels, np.int64),
    )


@settings(max_examples=100, deadline=None)
@given(data=box_sets(), thr=st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 0.75, 1.0]), aware=st.booleans())
def test_nms_properties(data, thr: float, aware: bool) -> None:
    boxes, scores, labels = data
    lab = labels if aware else np.zeros_like(labels)
    keep = nms(boxes, scores, thr, labels=labels if aware else None)
    assert keep.tolist() == ref_nms(boxes, scores, thr, labels=lab)
    # Sorted by descending score, ties by index.
    assert keep.tolist() == sorted(keep.tolist(), key=lambda i: (-scores[i], i))
    iou = box_iou(boxes, boxes)
    kept = set(keep.tolist())
    rank = {i: r for r, i in enumerate(sorted(range(len(scores)), key=lambda i: (-scores[i], i)))}
    for i in kept:
        for j in kept:
            if i != j and lab[i] == lab[j]:
                assert iou[i, j] <= thr
    for j in set(range(len(scores))) - kept:
        assert any(lab[i] == lab[j] and iou[i, j] > thr and rank[i] < rank[j] for i in kept)
