"""Lane metrics: TuSimple polyline accuracy (LaneEval) and lane-marking mask IoU.

TuSimple accuracy reproduces ``LaneEval.bench`` / ``bench_one_submit`` of the TuSimple benchmark
(github.com/TuSimple/tusimple-benchmark, ``evaluate/lane.py``). Lanes are given as x values at fixed image
rows ``h_samples`` (float64 [R]); a negative x (TuSimple writes -2) means the lane is absent on that row.
Per frame, with gt lanes ``G`` and predicted lanes ``P``:

1. If ``len(P) > len(G) + 2`` the frame scores accuracy 0, FP 0, FN 1 (the original's early return; its other
   condition, run time > 200 ms, is not applied here: we take no run time).
2. Each gt lane's angle is ``arctan(k)`` of the least-squares fit ``x = k y + b`` over its present rows (0 if it
   has fewer than 2); its threshold is ``pixel_thresh / cos(angle)``, so a slanted lane tolerates a larger
   horizontal error (the error measured across the lane stays ``pixel_thresh``).
3. ``line_accuracy(pred, gt) = #rows with |pred_x - gt_x| < thresh / R``, where absent x on either side is
   replaced by -100 first. As in the original, a row where both are absent counts as a hit and the
   denominator is all ``R`` rows (so published numbers are comparable). ``count_absent_rows=False`` gives
   the stricter "fraction of the gt lane's present rows matched by a present prediction" instead.
4. Each gt lane takes its best accuracy over all predictions (a prediction may serve several gt lanes;
   no one-to-one assignment). A gt lane whose best accuracy is < ``pt_thresh`` (0.85) is a miss (FN),
   otherwise matched; ``FP = len(P) - matched`` (can be negative if one prediction matches two gt lanes,
   as in the original).
5. With more than 4 gt lanes, the worst lane's accuracy is dropped from the sum and one FN forgiven.
   Frame accuracy ``= sum / max(min(4, len(G)), 1)``, frame FP rate ``= FP / len(P)`` (0 if no prediction),
   frame FN rate ``= FN / max(min(len(G), 4), 1)``.

Dataset values (``bench_one_submit``): ``lanes.tusimple_acc``, ``lanes.fp_rate`` and ``lanes.fn_rate`` are the
per-frame values above summed over frames and divided by the number of frames. That is, TuSimple
normalises FP by the predicted lanes and FN by the gt lanes *within each frame* and then averages frames;
this is the benchmark's definition and is kept. The dataset-pooled counterparts are reported beside it:
``lanes.fp_rate_pooled = sum unmatched predictions / sum predictions`` and ``lanes.fn_rate_pooled =
sum missed gt lanes / sum gt lanes`` (no 4-lane rule; a rejected frame counts all its predictions as FP
and all its gt lanes as FN).

Threshold scale: ``pixel_thresh`` (20) is defined for TuSimple's 1280-pixel-wide frames; the threshold used
is ``pixel_thresh * image_width / 1280``, so the same tolerance holds at other resolutions.

Lane-marking IoU from masks is the segmentation IoU of the lane class (``seg.iou.lane`` of
:class:`perception.eval.segmentation.ConfusionMatrix`); :func:`lane_mask_iou` returns it as ``lanes.iou``.

numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception.eval.segmentation import ConfusionMatrix

TUSIMPLE_WIDTH = 1280
ABSENT = -2.0


def resample_polyline(lane: np.ndarray, h_samples: np.ndarray) -> np.ndarray:
    """x of a polyline at each row of ``h_samples``, by linear interpolation in y.

    Args:
        lane: float [K, 2] points (x, y) in image pixels, any order (sorted by y here; a lane that turns back
            in y is not representable as x(y) and is taken as the sorted point sequence).
        h_samples: float [R] image rows.

    Returns:
        float64 [R]: x at each row, ``ABSENT`` (-2) where the row is outside the polyline's y range
        (an empty polyline is absent everywhere; a single point only on its own row).
    """
    lane = np.asarray(lane, np.float64)
    h = np.asarray(h_samples, np.float64)
    if lane.size == 0:
        return np.full(h.shape, ABSENT)
    if lane.ndim != 2 or lane.shape[1] != 2:
        raise ValueError(f"a lane must be an [K, 2] array of (x, y) points, got shape {list(lane.shape)}")
    order = np.argsort(lane[:, 1], kind="stable")
    x, y = lane[order, 0], lane[order, 1]
    out = np.interp(h, y, x)
    out[(h < y[0]) | (h > y[-1])] = ABSENT
    return out


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
    pixel_thresh: float = 20.0,
    pt_thresh: float = 0.85,
    count_absent_rows: bool = True,
) -> dict[str, float | int]:
    """One frame as ``LaneEval.bench``: ``acc``, ``fp``, ``fn`` (rates) and pooled counts.

    Args:
        pred_xs, gt_xs: lists of float [R] x values at ``h_samples`` (negative = absent).
        h_samples: float [R] rows. pixel_thresh: already scaled to the image width.

    Returns:
        dict with ``acc``, ``fp``, ``fn`` (the frame's benchmark values) and ints ``fp_count``, ``fn_count``,
        ``matched``, ``pred``, ``gt``, ``rejected`` (1 if more than len(gt) + 2 predictions).
    """
    r = len(h_samples)
    for lane in list(pred_xs) + list(gt_xs):
        if len(lane) != r:
            raise ValueError(f"every lane needs one x per h_sample ({r}), got {len(lane)}")
    n_pred, n_gt = len(pred_xs), len(gt_xs)
    counts = {"pred": n_pred, "gt": n_gt}
    if n_gt + 2 < n_pred:
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
        image_width: width in pixels of the frames the lanes are in; scales ``pixel_thresh`` by width / 1280.
        pixel_thresh: TuSimple's 20 px at 1280 width. pt_thresh: a gt lane is matched at accuracy >= 0.85.
        count_absent_rows: True reproduces TuSimple exactly; False scores only the gt lane's present rows.
    """

    def __init__(
        self,
        image_width: int = TUSIMPLE_WIDTH,
        pixel_thresh: float = 20.0,
        pt_thresh: float = 0.85,
        count_absent_rows: bool = True,
    ) -> None:
        if image_width <= 0 or pixel_thresh <= 0:
            raise ValueError(f"image_width and pixel_thresh must be > 0, got {image_width}, {pixel_thresh}")
        self.image_width = int(image_width)
        self.pixel_thresh = float(pixel_thresh)
        self.pt_thresh = float(pt_thresh)
        self.count_absent_rows = bool(count_absent_rows)
        self.sums = {k: 0.0 for k in ("acc", "fp", "fn")}
        self.counts = {k: 0 for k in ("frames", "rejected", "pred", "gt", "matched", "fp_count", "fn_count")}

    @property
    def scaled_thresh(self) -> float:
        """The per-point threshold in pixels before the angle correction."""
        return self.pixel_thresh * self.image_width / TUSIMPLE_WIDTH

    def add(self, pred_lanes: Sequence[np.ndarray], gt_lanes: Sequence[np.ndarray], h_samples: np.ndarray) -> None:
        """One frame of polylines: each lane float [K, 2] (x, y) image pixels, resampled at ``h_samples`` [R]."""
        h = np.asarray(h_samples, np.float64)
        self.add_sampled([resample_polyline(p, h) for p in pred_lanes], [resample_polyline(g, h) for g in gt_lanes], h)

    def add_sampled(
        self, pred_xs: Sequence[np.ndarray], gt_xs: Sequence[np.ndarray], h_samples: np.ndarray
    ) -> dict[str, float | int]:
        """One frame in TuSimple's format: lists of float [R] x values (negative = absent); returns the frame."""
        frame = bench_frame(pred_xs, gt_xs, h_samples, self.scaled_thresh, self.pt_thresh, self.count_absent_rows)
        for k in self.sums:
            self.sums[k] += frame[k]
        self.counts["frames"] += 1
        for k in ("rejected", "pred", "gt", "matched", "fp_count", "fn_count"):
            self.counts[k] += int(frame[k])
        return frame

    def merge(self, other: LaneAccumulator) -> LaneAccumulator:
        """Add ``other``'s frames (same settings); returns self."""
        if (other.scaled_thresh, other.pt_thresh, other.count_absent_rows) != (
            self.scaled_thresh,
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


def lane_mask_iou(confusion: ConfusionMatrix, lane_class: str = "lane") -> dict[str, float]:
    """``{"lanes.iou": IoU of the lane class}`` from a dataset confusion matrix (NaN if the class never occurs)."""
    if lane_class not in confusion.class_names:
        raise ValueError(f"no class {lane_class!r} in {list(confusion.class_names)}")
    return {"lanes.iou": float(confusion.per_class()["iou"][confusion.class_names.index(lane_class)])}
