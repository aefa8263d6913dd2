"""Run a predictor over a dataset and score it: one confusion matrix, one detection accumulator, the
lane-paint boundary metric, and the speed of the predictor, all accumulated over the whole dataset.
Synthetic frames that draw the ego car's bonnet also give ``seg.hood_road_frac``: the share of bonnet
pixels predicted as drivable or lane (over all such frames).

Samples whose lane paint is not labelled (``lane_labelled=False``, e.g. CamVid, where paint is labelled
Road) are scored with predicted lane counted as drivable (``merge_pred={lane: drivable}``): a correct lane
prediction on paint is not punished as "wrong road", and such samples say nothing about the lane class.
A sample that fails to load is counted and reported (``skipped``), not silently dropped.

Samples that belong to a clip (``meta["clip"]``, as ``perception synth --clips`` writes them, in frame
order) also feed the temporal-stability metrics (``video.*``, see ``perception/eval/video.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from perception.data.base import Dataset, SkipLog
from perception.data.sample import DatasetError
from perception.eval.detection import DetectionAccumulator
from perception.eval.segmentation import BoundaryAccumulator, ConfusionMatrix
from perception.eval.video import TemporalStability
from perception.progress import Progress


@dataclass
class EvalResult:
    """Flat metrics (stable keys) plus per-frame records for reports."""

    metrics: dict[str, float]
    frames: list[dict] = field(default_factory=list)
    skipped: SkipLog = field(default_factory=SkipLog)
    detection: object | None = None  # DetectionResult, for PR curves
    confusion: np.ndarray | None = None


class EvalAccumulator:
    """Everything ``evaluate`` sums over a dataset, for one shard of it; shards merge exactly.

    Confusion counts and boundary counts add, detection matches are kept per image (so AP is computed
    once over all images, not averaged over shards), temporal-stability counts add. ``add`` with
    ``score=False`` feeds a frame to the temporal metrics only: a shard starts with the two frames before
    it as context, so every frame pair and triple is counted once, by the shard holding its last frame.
    """

    def __init__(
        self,
        seg_classes: tuple[str, ...],
        det_classes: tuple[str, ...],
        do_seg: bool,
        do_det: bool,
        boundary_tolerance_px: float = 2.0,
    ):
        self.seg_classes, self.det_classes = seg_classes, det_classes
        self.do_seg, self.do_det = do_seg, do_det
        self.lane = seg_classes.index("lane") if "lane" in seg_classes else None
        self.drivable = seg_classes.index("drivable") if "drivable" in seg_classes else None
        self.confusion = ConfusionMatrix(seg_classes)
        self.boundary = BoundaryAccumulator(self.lane, boundary_tolerance_px, "lane") if self.lane is not None else None
        self.dets = DetectionAccumulator(det_classes)
        self.video = TemporalStability(seg_classes)
        self.skipped = SkipLog()
        self.frames: list[dict] = []
        self.times: list[float] = []
        self._clip = None
        self.hood_px = 0  # pixels of the ego car's bonnet (synthetic frames that draw one) ...
        self.hood_road_px = 0  # ... of them predicted drivable or lane

    def add(self, i: int, sample, pred, seconds: float, score: bool = True) -> None:
        """One sample ``i`` and its prediction (``seconds``: the predictor's time for it)."""
        if score:
            self.times.append(seconds)
            record: dict = {"index": i, "name": sample.name}
            if self.do_seg and sample.seg is not None and pred.seg is not None:
                if pred.seg.shape != sample.seg.shape:
                    raise ValueError(f"{sample.name}: prediction mask {pred.seg.shape} but label {sample.seg.shape}")
                merge = None
                if self.lane is not None and self.drivable is not None and not sample.lane_labelled:
                    merge = {self.lane: self.drivable}
                before = self.confusion.matrix.copy()
                self.confusion.add(pred.seg, sample.seg, merge_pred=merge)
                record["seg_iou"] = _frame_iou(self.confusion.matrix - before)
                if self.boundary is not None and sample.lane_labelled:
                    self.boundary.add(pred.seg, sample.seg)
                self._add_hood(sample, pred.seg)
            if self.do_det and sample.boxes is not None and len(self.det_classes):
                self.dets.add(i, sample.boxes, sample.labels, sample.ignore, pred.boxes, pred.scores, pred.labels)
                record["gt_boxes"] = int(len(sample.boxes))
                record["dets"] = int(len(pred.boxes))
            self.frames.append(record)
        if "clip" in sample.meta:
            if sample.meta["clip"] != self._clip:
                self._clip = sample.meta["clip"]
                self.video.start_clip()
            self.video.add(pred.seg, pred.boxes, pred.labels)
        elif self._clip is not None:
            self._clip = None
            self.video.start_clip()

    def _add_hood(self, sample, pred_seg: np.ndarray) -> None:
        """Road predicted on the bonnet of a synthetic frame (``meta.effects.hood``): it is never road."""
        hood = sample.meta.get("effects", {}).get("hood", 0) if isinstance(sample.meta, dict) else 0
        if not hood or self.drivable is None:
            return
        from perception.data.synth.effects import hood_mask

        mask = hood_mask(*pred_seg.shape, float(hood))
        road = pred_seg[mask] == self.drivable
        if self.lane is not None:
            road |= pred_seg[mask] == self.lane
        self.hood_px += int(mask.sum())
        self.hood_road_px += int(road.sum())

    def merge(self, other: EvalAccumulator) -> EvalAccumulator:
        """Append the next shard (higher sample indices) in place; returns self."""
        self.hood_px += other.hood_px
        self.hood_road_px += other.hood_road_px
        self.confusion.merge(other.confusion)
        if self.boundary is not None and other.boundary is not None:
            self.boundary.merge(other.boundary)
        self.dets.merge(other.dets)
        v, o = self.video, other.video
        v.inter += o.inter
        v.union += o.union
        v.jitter_sum += o.jitter_sum
        v.jitter_n += o.jitter_n
        v.gaps += o.gaps
        v.gap_candidates += o.gap_candidates
        self.skipped.counts.update(other.skipped.counts)
        self.skipped.examples.extend(
            other.skipped.examples[: max(0, self.skipped.max_examples - len(self.skipped.examples))]
        )
        self.frames.extend(other.frames)
        self.times.extend(other.times)
        return self

    def result(self) -> EvalResult:
        metrics: dict[str, float] = {}
        if self.do_seg:
            metrics.update(self.confusion.compute())
        if "seg.iou.lane" in metrics:
            metrics["lanes.iou"] = metrics["seg.iou.lane"]
        if self.boundary is not None and self.do_seg:
            metrics.update(self.boundary.compute())
        if self.hood_px:
            metrics["seg.hood_road_frac"] = self.hood_road_px / self.hood_px
        video = self.video
        if video.jitter_n or video.union.any() or video.gap_candidates:
            metrics.update(video.compute())
        det_result = self.dets.compute() if self.do_det and len(self.det_classes) else None
        if det_result is not None:
            metrics.update(det_result.as_dict())
        t = np.array(self.times)
        metrics["speed.fps"] = float(1.0 / np.median(t)) if len(t) else math.nan
        metrics["speed.ms_median"] = float(np.median(t) * 1e3) if len(t) else math.nan
        metrics["frames"] = float(len(self.frames))
        metrics["skipped"] = float(self.skipped.total)
        return EvalResult(
            metrics,
            self.frames,
            self.skipped,
            det_result,
            self.confusion.matrix.copy() if self.do_seg else None,
        )


def check_classes(predictor, dataset: Dataset) -> tuple[tuple[str, ...], tuple[str, ...], bool, bool]:
    """(seg classes, det classes, score seg?, score det?); ValueError when the predictor's classes differ."""
    seg_classes = tuple(dataset.seg_classes)
    det_classes = tuple(dataset.det_classes)
    do_seg, do_det = bool(predictor.seg_classes), bool(predictor.det_classes)
    if (do_seg and tuple(predictor.seg_classes) != seg_classes) or (
        do_det and tuple(predictor.det_classes) != det_classes
    ):
        raise ValueError(
            f"classes differ: model seg {list(predictor.seg_classes)} det {list(predictor.det_classes)}, "
            f"dataset seg {list(seg_classes)} det {list(det_classes)}"
        )
    return seg_classes, det_classes, do_seg, do_det


def evaluate_range(
    predictor,
    dataset: Dataset,
    start: int,
    end: int,
    boundary_tolerance_px: float = 2.0,
    context: int = 2,
    progress: Progress | None = None,
) -> EvalAccumulator:
    """Samples [start, end) into an EvalAccumulator, with up to ``context`` samples before ``start`` fed to
    the temporal metrics only (see EvalAccumulator)."""
    acc = EvalAccumulator(*check_classes(predictor, dataset), boundary_tolerance_px=boundary_tolerance_px)
    for i in range(max(0, start - context), end):
        score = i >= start
        try:
            sample = dataset[i]
        except DatasetError as err:
            if score:
                acc.skipped.add(err)
            continue
        t0 = time.perf_counter()
        pred = predictor.predict(sample.image)
        acc.add(i, sample, pred, time.perf_counter() - t0, score=score)
        if progress is not None and score:
            progress.update(i + 1)
    return acc


def evaluate(
    predictor,
    dataset: Dataset,
    boundary_tolerance_px: float = 2.0,
    max_frames: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Score ``predictor`` (``predict(image_bgr) -> Prediction``) on every sample of ``dataset``.

    Raises ValueError when the predictor's classes cannot be matched with the dataset's, or a prediction's
    mask has another size than the sample's.
    """
    check_classes(predictor, dataset)
    n = len(dataset) if max_frames is None else min(len(dataset), max_frames)
    if n == 0:
        raise ValueError(f"{dataset!r} has no samples to evaluate")
    bar = Progress(n, enabled=progress)
    acc = evaluate_range(predictor, dataset, 0, n, boundary_tolerance_px, progress=bar)
    bar.finish()
    return acc.result()


def _frame_iou(matrix: np.ndarray) -> float:
    """Mean IoU over the classes present in one frame's confusion counts (for ranking worst frames)."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()) if present.any() else math.nan


def format_table(results: dict[str, dict[str, float]], keys: list[str] | None = None) -> str:
    """A one-screen table: rows are metric keys, columns the models (with a difference column for two)."""
    names = list(results)
    if keys is None:
        keys = [k for k in results[names[0]] if not k.startswith(("det.best_f1", "seg.precision", "seg.recall"))]
    width = max(len(k) for k in keys) + 2
    head = f"{'metric':<{width}}" + "".join(f"{n[:16]:>17}" for n in names)
    if len(names) == 2:
        head += f"{'diff':>10}"
    lines = [head, "-" * len(head)]
    for k in keys:
        vals = [results[n].get(k, math.nan) for n in names]
        row = f"{k:<{width}}" + "".join(f"{format_metric(v):>17}" for v in vals)
        if len(names) == 2:
            row += f"{format_metric(vals[1] - vals[0]):>10}"
        lines.append(row)
    return "\n".join(lines)


def format_metric(v: float | None, missing: str = "-") -> str:
    """A metric value for tables: ``missing`` when undefined, whole numbers plain, others to 4 decimals."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return missing
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:g}"
    return f"{v:.4f}"
