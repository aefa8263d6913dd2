"""Lane metrics: TuSimple polyline accuracy (LaneEval), CULane-style F1, and lane-marking mask IoU.

TuSimple accuracy reproduces ``LaneEval.bench`` / ``bench_one_submit`` of the TuSimple benchmark
(github.com/TuSimple/tusimple-benchmark, ``evaluate/lane.py``). Lanes are given as x values at fixed image
rows ``h_samples`` (float64 [R]); a negative x (TuSimple writes -2) means the lane is absent on that row.
Every threshold is in the labels' pixels, whatever the image size (no rescaling by image width). Per
frame, with gt lanes ``G`` and predicted lanes ``P``:

1. If ``len(P) > len(G) + 2``, or the frame's run time is given and above 200 ms, the frame scores
   accuracy 0, FP 0, FN 1 (the original's early return). The run-time rule applies only when a run time
   is passed (``run_time_ms``); ``perception eval`` does not pass it (a model's accuracy should not depend
   on the machine's load) and reports the frames over 200 ms apart (``lanes.frames_over_200ms``).
2. Each gt lane's angle is ``arctan(k)`` of the least-squares fit ``x = k y + b`` over its present rows (0 if it
   has fewer than 2); its threshold is ``pixel_thresh / cos(angle)`` (``pixel_thresh`` = 20 px), so a slanted
   lane tolerates a larger horizontal error (the error measured across the lane stays ``pixel_thresh``).
3. ``line_accuracy(pred, gt) = #rows with |pred_x - gt_x| < thresh / R``, where absent x on either side is
   replaced by -100 first. As in the original, a row where both are absent counts as a hit and the
   denominator is all ``R`` rows (so published numbers are comparable). ``count_absent_rows=False`` gives
   the stricter "fraction of the gt lane's present rows matched by a present prediction" instead.
4. Each gt lane takes its best accuracy over all predictions (a prediction may serve several gt lanes;
   no one-to-one assignment). A gt lane whose best accuracy is < ``pt_thresh`` (0.85) is a miss (FN),
   otherwise matched; ``FP = len(P) - matched`` (can be negative if one prediction matches two gt lanes,
   as in the original).
5. At most 4 gt lanes count: with more than 4, the worst lane's accuracy is dropped from the sum and one
   FN forgiven (only one, as in the original: TuSimple frames have at most 5 lanes).
   Frame accuracy ``= sum / max(min(4, len(G)), 1)``, frame FP rate ``= FP / len(P)`` (0 if no prediction),
   frame FN rate ``= FN / max(min(len(G), 4), 1)``.

Dataset values (``bench_one_submit``): ``lanes.tusimple_acc``, ``lanes.fp_rate`` and ``lanes.fn_rate`` are the
per-frame values above summed over frames and divided by the number of frames. That is, TuSimple
normalises FP by the predicted lanes and FN by the gt lanes *within each frame* and then averages frames;
this is the benchmark's definition and is kept. The dataset-pooled counterparts are reported beside it:
``lanes.fp_rate_pooled = sum unmatched predictions / sum predictions`` and ``lanes.fn_rate_pooled =
sum missed gt lanes / sum gt lanes`` (no 4-lane rule; a rejected frame counts all its predictions as FP
and all its gt lanes as FN).

CULane-style F1 (``culane_frame``, ``CulaneAccumulator``): every lane with at least 2 present points (gt
and prediction alike; shorter ones are left out of both counts) is drawn as a polyline through its
present points, ``width`` (30) px thick (``cv2.polylines``), on a canvas of the labels' image size. The IoU of
every gt/prediction pair of masks is computed, gt and predictions are paired one to one so that the sum of
IoU is largest (Hungarian assignment, ``max_weight_matching``), and a pair with IoU >= ``iou_thresh``
(0.5) is a true positive. ``FP = predictions - TP``, ``FN = gt lanes - TP``, summed over the dataset:
``lanes.culane_precision = TP / (TP + FP)``, ``lanes.culane_recall = TP / (TP + FN)``, ``lanes.culane_f1 =
2 TP / (2 TP + FP + FN)``.

Lane-marking IoU from masks is the segmentation IoU of the lane class (``seg.iou.lane`` of
:class:`perception.eval.segmentation.ConfusionMatrix`); :func:`lane_mask_iou` returns it as ``lanes.iou``.

numpy and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from perception.data.tusimple import resample_polyline
from perception.eval.segmentation import ConfusionMatrix
from perception.fusion.association import linear_sum_assignment

PIXEL_THRESH = 20.0  # TuSimple: a point matches within 20 label pixels (before the angle correction)
PT_THRESH = 0.85  # TuSimple: a gt lane is matched when at least 85 % of its rows match
MAX_RUN_TIME_MS = 200.0  # TuSimple: a slower frame scores accuracy 0, FN 1 (when run times are given)
CULANE_WIDTH = 30  # CULane: lanes are drawn 30 px wide ...
CULANE_IOU = 0.5  # ... and a matched pair with IoU >= 0.5 is a true positive


def lane_angle(xs: np.ndarray, h_samples: np.ndarray) -> float:
    """arctan(k) of the least-squares line x = k y + b through the present (x >= 0) points; 0 if < 2 points."""
    xs = np.asarray(xs, np.float64)
    ys = np.asarray(h_samples, np.float64)
    ok = xs >= 0
    if ok.sum() <= 1:
        return 0.0
    x, y = xs[ok], ys[ok]
    dy = y - y.mean()
    den = float(np.dot(dy, dy))
    if den == 0:
        return 0.0
    return float(np.arctan(np.dot(dy, x - x.mean()) / den))


def line_accuracy(pred_xs: np.ndarray, gt_xs: np.ndarray, thresh: float, count_absent_rows: bool = True) -> float:
    """Fraction of rows where pred and gt x differ by < thresh (module docstring, step 3)."""
    pred = np.asarray(pred_xs, np.float64)
    gt = np.asarray(gt_xs, np.float64)
    if count_absent_rows:
        pred = np.where(pred >= 0, pred, -100.0)
        gt = np.where(gt >= 0, gt, -100.0)
        return float(np.sum(np.abs(pred - gt) < thresh) / len(gt)) if len(gt) else 0.0
    present = gt >= 0
    if not present.any():
        return 0.0
    hit = present & (pred >= 0) & (np.abs(pred - gt) < thresh)
    return float(hit.sum() / present.sum())


def bench_frame(
    pred_xs: Sequence[np.ndarray],
    gt_xs: Sequence[np.ndarray],
    h_samples: np.ndarray,
    pixel_thresh: float = PIXEL_THRESH,
    pt_thresh: float = PT_THRESH,
    count_absent_rows: bool = True,
    run_time_ms: float | None = None,
) -> dict[str, float | int]:
    """One frame as ``LaneEval.bench``: ``acc``, ``fp``, ``fn`` (rates) and pooled counts.

    Args:
        pred_xs, gt_xs: lists of float [R] x values at ``h_samples`` (negative = absent), in label pixels.
        h_samples: float [R] rows. pixel_thresh: in label pixels (TuSimple's 20, at any image size).
        run_time_ms: the frame's run time; above ``MAX_RUN_TIME_MS`` the frame is rejected as in LaneEval.
            None (default): the run-time rule is not applied.

    Returns:
        dict with ``acc``, ``fp``, ``fn`` (the frame's benchmark values) and ints ``fp_count``, ``fn_count``,
        ``matched``, ``pred``, ``gt``, ``rejected`` (1 if more than len(gt) + 2 predictions or too slow).
    """
    r = len(h_samples)
    for lane in list(pred_xs) + list(gt_xs):
        if len(lane) != r:
            raise ValueError(f"every lane needs one x per h_sample ({r}), got {len(lane)}")
    n_pred, n_gt = len(pred_xs), len(gt_xs)
    counts = {"pred": n_pred, "gt": n_gt}
    if n_gt + 2 < n_pred or (run_time_ms is not None and run_time_ms > MAX_RUN_TIME_MS):
        rejected = {"acc": 0.0, "fp": 0.0, "fn": 1.0, "fp_count": n_pred, "fn_count": n_gt, "matched": 0}
        return {**rejected, "rejected": 1, **counts}
    line_accs = []
    fn = 0
    matched = 0
    for gt in gt_xs:
        thresh = pixel_thresh / np.cos(lane_angle(gt, h_samples))
        accs = [line_accuracy(p, gt, thresh, count_absent_rows) for p in pred_xs]
        best = max(accs) if accs else 0.0
        if best < pt_thresh:
            fn += 1
        else:
            matched += 1
        line_accs.append(best)
    fp = n_pred - matched
    fn_count = fn
    s = sum(line_accs)
    if n_gt > 4:
        if fn > 0:
            fn -= 1
        s -= min(line_accs)
    return {
        "acc": s / max(min(4.0, n_gt), 1.0),
        "fp": fp / n_pred if n_pred > 0 else 0.0,
        "fn": fn / max(min(n_gt, 4.0), 1.0),
        "fp_count": max(fp, 0),
        "fn_count": fn_count,
        "matched": matched,
        "rejected": 0,
        **counts,
    }


class LaneAccumulator:
    """TuSimple lane accuracy over a dataset (definitions in the module docstring).

    Args:
        pixel_thresh: TuSimple's 20 px, in the labels' pixels (never rescaled by the image size).
        pt_thresh: a gt lane is matched at accuracy >= 0.85.
        count_absent_rows: True reproduces TuSimple exactly; False scores only the gt lane's present rows.
    """

    def __init__(
        self,
        pixel_thresh: float = PIXEL_THRESH,
        pt_thresh: float = PT_THRESH,
        count_absent_rows: bool = True,
    ) -> None:
        if pixel_thresh <= 0:
            raise ValueError(f"pixel_thresh must be > 0, got {pixel_thresh}")
        self.pixel_thresh = float(pixel_thresh)
        self.pt_thresh = float(pt_thresh)
        self.count_absent_rows = bool(count_absent_rows)
        self.sums = {k: 0.0 for k in ("acc", "fp", "fn")}
        self.counts = {k: 0 for k in ("frames", "rejected", "pred", "gt", "matched", "fp_count", "fn_count")}

    def add(
        self,
        pred_lanes: Sequence[np.ndarray],
        gt_lanes: Sequence[np.ndarray],
        h_samples: np.ndarray,
        run_time_ms: float | None = None,
    ) -> dict[str, float | int]:
        """One frame of polylines: each lane float [K, 2] (x, y) image pixels, resampled at ``h_samples`` [R]."""
        h = np.asarray(h_samples, np.float64)
        pred = [resample_polyline(p, h) for p in pred_lanes]
        return self.add_sampled(pred, [resample_polyline(g, h) for g in gt_lanes], h, run_time_ms)

    def add_sampled(
        self,
        pred_xs: Sequence[np.ndarray],
        gt_xs: Sequence[np.ndarray],
        h_samples: np.ndarray,
        run_time_ms: float | None = None,
    ) -> dict[str, float | int]:
        """One frame in TuSimple's format: lists of float [R] x values (negative = absent); returns the frame."""
        frame = bench_frame(
            pred_xs, gt_xs, h_samples, self.pixel_thresh, self.pt_thresh, self.count_absent_rows, run_time_ms
        )
        for k in self.sums:
            self.sums[k] += frame[k]
        self.counts["frames"] += 1
        for k in ("rejected", "pred", "gt", "matched", "fp_count", "fn_count"):
            self.counts[k] += int(frame[k])
        return frame

    def merge(self, other: LaneAccumulator) -> LaneAccumulator:
        """Add ``other``'s frames (same settings); returns self."""
        if (other.pixel_thresh, other.pt_thresh, other.count_absent_rows) != (
            self.pixel_thresh,
            self.pt_thresh,
            self.count_absent_rows,
        ):
            raise ValueError("cannot merge lane accumulators with different thresholds")
        for k in self.sums:
            self.sums[k] += other.sums[k]
        for k in self.counts:
            self.counts[k] += other.counts[k]
        return self

    def compute(self) -> dict[str, float | int]:
        """``lanes.tusimple_acc``, ``lanes.fp_rate``, ``lanes.fn_rate`` (TuSimple), pooled rates and counts."""
        n = self.counts["frames"]
        nan = float("nan")
        c = self.counts
        return {
            "lanes.tusimple_acc": self.sums["acc"] / n if n else nan,
            "lanes.fp_rate": self.sums["fp"] / n if n else nan,
            "lanes.fn_rate": self.sums["fn"] / n if n else nan,
            "lanes.fp_rate_pooled": c["fp_count"] / c["pred"] if c["pred"] else nan,
            "lanes.fn_rate_pooled": c["fn_count"] / c["gt"] if c["gt"] else nan,
            "lanes.frames": n,
            "lanes.frames_rejected": c["rejected"],
            "lanes.pred_lanes": c["pred"],
            "lanes.gt_lanes": c["gt"],
        }


def max_weight_matching(weights: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (row, column) with the largest total weight (Hungarian algorithm, exact).

    Args:
        weights: float [N, M], any N, M (a handful of lanes; O(n^3) in the larger side).

    Returns:
        min(N, M) pairs sorted by row; every row (or column, when M < N) gets exactly one partner.
    """
    w = np.asarray(weights, np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D matrix, got shape {list(w.shape)}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    rows, cols = linear_sum_assignment(-w)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)]


def lane_present_points(xs: np.ndarray, h_samples: np.ndarray) -> np.ndarray:
    """float64 [K, 2] (x, y) of a TuSimple lane's present rows (x >= 0), top to bottom as in ``h_samples``."""
    xs = np.asarray(xs, np.float64)
    ok = xs >= 0
    return np.column_stack([xs[ok], np.asarray(h_samples, np.float64)[ok]])


def lane_mask(points: np.ndarray, image_hw: tuple[int, int], width: int = CULANE_WIDTH) -> np.ndarray:
    """bool [H, W]: the polyline through ``points`` (float [K, 2] x, y pixels, K >= 2) drawn ``width`` px thick."""
    mask = np.zeros(image_hw, np.uint8)
    pts = np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(mask, [pts], False, 1, thickness=int(width))
    return mask.astype(bool)


def lane_iou_matrix(
    pred_points: Sequence[np.ndarray],
    gt_points: Sequence[np.ndarray],
    image_hw: tuple[int, int],
    width: int = CULANE_WIDTH,
) -> np.ndarray:
    """float64 [G, P]: IoU of every gt/prediction pair of lanes drawn ``width`` px thick (``lane_mask``)."""
    gt = [lane_mask(p, image_hw, width) for p in gt_points]
    pred = [lane_mask(p, image_hw, width) for p in pred_points]
    out = np.zeros((len(gt), len(pred)))
    areas_p = [int(m.sum()) for m in pred]
    for a, g in enumerate(gt):
        area_g = int(g.sum())
        for b, p in enumerate(pred):
            inter = int(np.count_nonzero(g & p))
            union = area_g + areas_p[b] - inter
            out[a, b] = inter / union if union else 0.0
    return out


def culane_frame(
    pred_xs: Sequence[np.ndarray],
    gt_xs: Sequence[np.ndarray],
    h_samples: np.ndarray,
    image_hw: tuple[int, int],
    width: int = CULANE_WIDTH,
    iou_thresh: float = CULANE_IOU,
) -> dict[str, int]:
    """One frame's CULane-style counts (module docstring): ``tp``, ``fp``, ``fn``, ``pred``, ``gt``.

    Args:
        pred_xs, gt_xs: lists of float [R] x values at ``h_samples`` (negative = absent), label pixels.
        image_hw: (height, width) of the labels' image: the canvas the lanes are drawn on.
    """
    pred = [p for p in (lane_present_points(x, h_samples) for x in pred_xs) if len(p) >= 2]
    gt = [g for g in (lane_present_points(x, h_samples) for x in gt_xs) if len(g) >= 2]
    iou = lane_iou_matrix(pred, gt, image_hw, width)
    tp = sum(1 for a, b in max_weight_matching(iou) if iou[a, b] >= iou_thresh)
    return {"tp": tp, "fp": len(pred) - tp, "fn": len(gt) - tp, "pred": len(pred), "gt": len(gt)}


class CulaneAccumulator:
    """CULane-style lane F1 pooled over a dataset: TP, FP and FN summed over frames (module docstring)."""

    def __init__(self, width: int = CULANE_WIDTH, iou_thresh: float = CULANE_IOU) -> None:
        if width < 1 or not 0 < iou_thresh <= 1:
            raise ValueError(f"width must be >= 1 and iou_thresh in (0, 1], got {width}, {iou_thresh}")
        self.width = int(width)
        self.iou_thresh = float(iou_thresh)
        self.counts = {"tp": 0, "fp": 0, "fn": 0}

    def add_sampled(
        self,
        pred_xs: Sequence[np.ndarray],
        gt_xs: Sequence[np.ndarray],
        h_samples: np.ndarray,
        image_hw: tuple[int, int],
    ) -> dict[str, int]:
        """One frame in TuSimple's format (lists of float [R] x values); returns its counts."""
        frame = culane_frame(pred_xs, gt_xs, h_samples, image_hw, self.width, self.iou_thresh)
        for k in self.counts:
            self.counts[k] += frame[k]
        return frame

    def merge(self, other: CulaneAccumulator) -> CulaneAccumulator:
        if (other.width, other.iou_thresh) != (self.width, self.iou_thresh):
            raise ValueError("cannot merge CULane accumulators with different widths or thresholds")
        for k in self.counts:
            self.counts[k] += other.counts[k]
        return self

    def compute(self) -> dict[str, float | int]:
        """``lanes.culane_f1``, ``lanes.culane_precision``, ``lanes.culane_recall`` (NaN when undefined) and counts."""
        tp, fp, fn = self.counts["tp"], self.counts["fp"], self.counts["fn"]
        nan = float("nan")
        return {
            "lanes.culane_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan,
            "lanes.culane_precision": tp / (tp + fp) if tp + fp else nan,
            "lanes.culane_recall": tp / (tp + fn) if tp + fn else nan,
            "lanes.culane_tp": tp,
            "lanes.culane_fp": fp,
            "lanes.culane_fn": fn,
        }


def lane_mask_iou(confusion: ConfusionMatrix, lane_class: str = "lane") -> dict[str, float]:
    """``{"lanes.iou": IoU of the lane class}`` from a dataset confusion matrix (NaN if the class never occurs)."""
    if lane_class not in confusion.class_names:
        raise ValueError(f"no class {lane_class!r} in {list(confusion.class_names)}")
    return {"lanes.iou": float(confusion.per_class()["iou"][confusion.class_names.index(lane_class)])}
