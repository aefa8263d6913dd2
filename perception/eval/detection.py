"""COCO-style detection metrics (mAP, AP50/75, AP by size, AR), exact to pycocotools' ``COCOeval``.

Conventions
-----------
- Boxes are float [N, 4] ``x1, y1, x2, y2`` in image pixels with exclusive ``x2, y2``, so a box's COCO
  ``xywh`` is ``(x1, y1, x2 - x1, y2 - y1)``. IoU is the plain continuous IoU on those boxes, computed in
  float64 exactly as pycocotools' ``bbIou`` does (from ``xywh``, areas ``w * h``, no ``+1``).
- Areas (for the small / medium / large ranges) are the box areas ``w * h`` for ground truth and
  detections alike; this is what pycocotools uses when a ground-truth ``area`` field equals ``w * h``.
  Range bounds are inclusive on both sides, as in pycocotools (an area of exactly ``32**2`` is both small
  and medium).
- ``gt_ignore`` has pycocotools' ``iscrowd`` semantics (our dataset writers write ``iscrowd = ignore``):
  an ignored box is never counted as a ground truth to find, may absorb any number of detections, and its
  IoU with a detection uses the detection's area as denominator (intersection / detection area).
  Detections matched to it are neither true nor false positives.

Matching (per image, class, area range and IoU threshold; ``COCOeval.evaluateImg``)
-------------------------------------------------------------------------------------
Detections are sorted by descending score with a stable sort (ties keep input order) and only the first
``max_dets`` per image and class are kept. Each detection in turn is matched to the unmatched,
non-ignored ground truth with the highest IoU ``>= threshold`` (ties: the later box in input order);
failing that, to an ignored box (crowd boxes may be matched repeatedly; boxes ignored only because their
area lies outside the range are matched once). Ground truth outside the area range is ignored for that
range; an *unmatched* detection outside the area range is ignored too.

Accumulation (``COCOeval.accumulate``)
--------------------------------------
Over the whole dataset (never averaged per image or batch), per class, area range and ``maxDet`` in
(1, 10, ``max_dets``): the kept detections of all images are ranked by descending score with a stable
sort (ties: earlier-added image first, then rank within the image), cumulative TP/FP give
``recall = tp / n_gt`` and ``precision = tp / (tp + fp + eps)`` (ignored detections add neither), the
precision envelope is made monotone (running maximum from the right) and sampled at the 101 recall
thresholds ``np.linspace(0, 1, 101)`` with ``searchsorted(side='left')`` (thresholds beyond the reached
recall give precision 0). AP is the mean over recall thresholds; recall (for AR) is the final recall.

A class with no non-ignored ground truth (in an area range) has no AP/AR there: pycocotools writes -1,
we write NaN, and such classes are excluded from every mean. ``map`` is the mean over classes and IoU
thresholds (COCO's AP@[.50:.05:.95]), ``map50``/``map75`` at IoU 0.5/0.75, ``map_small`` etc. for the area
ranges, ``ar1``/``ar10``/``ar100`` the recall averaged over IoU thresholds and classes at 1/10/100
detections per image; these twelve numbers equal ``COCOeval.stats``.

Because only per-detection match records and per-class ground-truth counts are stored, accumulators over
disjoint shards of a dataset merge exactly (:meth:`DetectionAccumulator.merge`).

Beyond COCO, at IoU 0.5 (area "all", ``max_dets``): raw precision-recall curves per class (non-ignored
detections in rank order; precision ``tp / (tp + fp)``) and the best-F1 operating point per class, the
score threshold (keep detections with ``score >= threshold``) whose F1 is highest, evaluated only at the
end of each group of equal scores so that the threshold is realisable.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
"""float64 [10]: 0.50, 0.55, ..., 0.95, bit-identical to pycocotools' ``Params.iouThrs``."""
COCO_REC_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
"""float64 [101]: 0.00, 0.01, ..., 1.00, bit-identical to pycocotools' ``Params.recThrs``."""
COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0**2, 1e5**2),
    "small": (0.0**2, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
"""Box-area ranges in square pixels (inclusive bounds), as pycocotools' ``Params.areaRng``."""


def box_iou_coco(dets_xyxy: np.ndarray, gts_xyxy: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU between detections and ground truth exactly as pycocotools' ``maskUtils.iou`` for boxes.

    Args:
        dets_xyxy: float [M, 4] x1, y1, x2, y2 (pixels, exclusive x2/y2).
        gts_xyxy: float [N, 4] same format.
        gt_crowd: bool [N]; for crowd columns the denominator is the detection's area.

    Returns:
        float64 [M, N]; 0 where boxes do not overlap with positive area.
    """
    d = _xywh(dets_xyxy)
    g = _xywh(gts_xyxy)
    dx, dy, dw, dh = (d[:, i : i + 1] for i in range(4))
    gx, gy, gw, gh = (g[None, :, i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    da = dw * dh
    union = np.where(np.asarray(gt_crowd, bool)[None, :], da, da + gw * gh - inter)
    ok = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ok, inter / np.where(ok, union, 1.0), 0.0)
    return out.astype(np.float64)


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


@dataclass(frozen=True)
class BestF1:
    """Best-F1 operating point of one class at IoU 0.5.

    ``score`` is the threshold (keep ``score >= threshold``); NaN when the class has no ground truth, or
    when no detection of it was ever correct (then ``f1``, ``precision`` and ``recall`` are 0, not NaN,
    if the class has ground truth).
    """

    f1: float
    score: float
    precision: float
    recall: float


@dataclass(frozen=True)
class PRCurve:
    """Raw precision-recall curve of one class at IoU 0.5 (area "all", ``max_dets``).

    All float64 [D] over the non-ignored detections in rank order: ``scores`` descending, ``recall``
    = tp / n_gt, ``precision`` = tp / (tp + fp). Empty when the class has no detections; ``recall`` is
    NaN when it has no ground truth.
    """

    scores: np.ndarray
    recall: np.ndarray
    precision: np.ndarray


@dataclass(frozen=True)
class DetectionResult:
    """Dataset-level detection metrics (see the module docstring for exact definitions).

    Attributes:
        class_names: K class names; class index ``k`` is ``class_names[k]``.
        iou_thresholds: float64 [T].
        max_dets: the three per-image detection limits (1, 10, max_dets).
        precision: float64 [T, R=101, K, A=4, M=3], interpolated precision as ``COCOeval.eval['precision']``
            with NaN where pycocotools has -1 (no ground truth). Areas in order all, small, medium, large.
        recall: float64 [T, K, A, M], as ``COCOeval.eval['recall']`` with NaN for -1.
        ap: float64 [K, T], AP per class and IoU threshold (area all, max_dets); NaN for no ground truth.
        stats: float64 [12], ``COCOeval.stats`` order (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100,
            ARs, ARm, ARl), NaN where pycocotools has -1.
        pr_curves: per class, IoU 0.5.
        best_f1: per class, IoU 0.5.
    """

    class_names: tuple[str, ...]
    iou_thresholds: np.ndarray
    max_dets: tuple[int, int, int]
    precision: np.ndarray
    recall: np.ndarray
    ap: np.ndarray
    stats: np.ndarray
    pr_curves: tuple[PRCurve, ...] = field(repr=False)
    best_f1: tuple[BestF1, ...]

    @property
    def map(self) -> float:
        """AP averaged over IoU thresholds and classes with ground truth (COCO AP@[.50:.05:.95])."""
        return float(self.stats[0])

    @property
    def map50(self) -> float:
        return float(self.stats[1])

    @property
    def map75(self) -> float:
        return float(self.stats[2])

    @property
    def ap_per_class(self) -> np.ndarray:
        """float64 [K]: AP averaged over IoU thresholds; NaN for classes with no ground truth."""
        return _nanmean_or_nan(self.ap, axis=1)

    def as_dict(self) -> dict[str, float]:
        """Flat dict with stable keys (``det.map``, ``det.ap.<class>``, ...); NaN where undefined."""
        s = self.stats
        m1, m10, m100 = self.max_dets
        out = {
            "det.map": s[0],
            "det.map50": s[1],
            "det.map75": s[2],
            "det.map_small": s[3],
            "det.map_medium": s[4],
            "det.map_large": s[5],
            f"det.ar{m1}": s[6],
            f"det.ar{m10}": s[7],
            f"det.ar{m100}": s[8],
            "det.ar_small": s[9],
            "det.ar_medium": s[10],
            "det.ar_large": s[11],
        }
        t50 = _threshold_index(self.iou_thresholds, 0.5)
        ap_cls = self.ap_per_class
        for k, name in enumerate(self.class_names):
            out[f"det.ap.{name}"] = ap_cls[k]
            out[f"det.ap50.{name}"] = self.ap[k, t50] if t50 is not None else np.nan
            out[f"det.best_f1.{name}"] = self.best_f1[k].f1
            out[f"det.best_f1_score.{name}"] = self.best_f1[k].score
        return {key: float(v) for key, v in out.items()}


def _nanmean_or_nan(x: np.ndarray, axis=None):
    x = np.asarray(x, np.float64)
    valid = ~np.isnan(x)
    if axis is None:
        return float(np.mean(x[valid])) if valid.any() else float("nan")
    cnt = valid.sum(axis=axis)
    tot = np.where(valid, x, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def _threshold_index(thresholds: np.ndarray, value: float) -> int | None:
    idx = np.flatnonzero(np.isclose(thresholds, value, rtol=0.0, atol=1e-9))
    return int(idx[0]) if len(idx) else None


class DetectionAccumulator:
    """Collects per-detection COCO match records image by image; :meth:`compute` gives the metrics.

    Args:
        class_names: K detection class names; labels are indices into it.
        iou_thresholds: float [T] IoU thresholds, default COCO's 0.50:0.05:0.95 (``np.linspace``, which
            differs in the last bits from ``np.arange(0.5, 0.96, 0.05)``).
        max_dets: per image and class, the detections kept (highest scores); recall is also reported at 1
            and 10. Must be >= 10.
        area_ranges: name -> (lo, hi) inclusive box-area ranges in square pixels; must start with "all"
            and hold "small", "medium", "large" for the COCO summary (default COCO's).
    """

    def __init__(
        self,
        class_names: tuple[str, ...] | list[str],
        iou_thresholds: np.ndarray = COCO_IOU_THRESHOLDS,
        max_dets: int = 100,
        area_ranges: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        self.class_names = tuple(str(c) for c in class_names)
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        self.iou_thresholds = np.asarray(iou_thresholds, np.float64).reshape(-1)
        if len(self.iou_thresholds) == 0 or np.any(self.iou_thresholds < 0) or np.any(self.iou_thresholds > 1):
            raise ValueError(f"iou_thresholds must be non-empty values in [0, 1], got {self.iou_thresholds}")
        if int(max_dets) < 10:
            raise ValueError(f"max_dets must be >= 10, got {max_dets}")
        self.max_dets = (1, 10, int(max_dets))
        ranges = dict(COCO_AREA_RANGES if area_ranges is None else area_ranges)
        if list(ranges)[:1] != ["all"] or not {"small", "medium", "large"} <= set(ranges):
            raise ValueError(f"area_ranges must start with 'all' and hold small/medium/large, got {list(ranges)}")
        self.area_names = tuple(ranges)
        self._area = np.asarray([ranges[n] for n in self.area_names], np.float64)  # [A, 2]
        k, a = len(self.class_names), len(self.area_names)
        self._n_gt = np.zeros((k, a), np.int64)
        self._image_ids: list[Hashable] = []
        self._image_set: set = set()
        self._chunks: list[tuple[np.ndarray, ...]] = []

    # ------------------------------------------------------------------ adding images
    def add(
        self,
        image_id: Hashable,
        gt_boxes: np.ndarray,
        gt_labels: np.ndarray,
        gt_ignore: np.ndarray | None,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_labels: np.ndarray,
    ) -> None:
        """Match one image's detections to its ground truth and store the records.

        Args:
            image_id: unique per accumulator (and across merged accumulators).
            gt_boxes: float [N, 4] x1, y1, x2, y2 pixels (exclusive x2/y2).
            gt_labels: int [N] class indices.
            gt_ignore: bool [N] crowd/ignore flags (iscrowd semantics), or None for all False.
            det_boxes: float [M, 4] same format as ``gt_boxes``.
            det_scores: float [M], finite.
            det_labels: int [M] class indices.

        Inputs are not modified.
        """
        if image_id in self._image_set:
            raise ValueError(f"image {image_id!r} was already added")
        gb = self._check_boxes(gt_boxes, "gt_boxes")
        gl = self._check_labels(gt_labels, len(gb), "gt_labels")
        gi = np.zeros(len(gb), bool) if gt_ignore is None else np.asarray(gt_ignore)
        if gi.shape != (len(gb),):
            raise ValueError(f"gt_ignore must have shape [{len(gb)}], got {gi.shape}")
        gi = gi.astype(bool)
        db = self._check_boxes(det_boxes, "det_boxes")
        ds = np.asarray(det_scores, np.float64).reshape(-1)
        if ds.shape != (len(db),) or not np.all(np.isfinite(ds)):
            raise ValueError(f"det_scores must be finite float [{len(db)}], got shape {ds.shape}")
        dl = self._check_labels(det_labels, len(db), "det_labels")

        img_idx = len(self._image_ids)
        self._image_ids.append(image_id)
        self._image_set.add(image_id)

        ga = _xywh(gb)
        g_area = ga[:, 2] * ga[:, 3]
        lo, hi = self._area[:, 0], self._area[:, 1]
        g_out = (g_area[None, :] < lo[:, None]) | (g_area[None, :] > hi[:, None])  # [A, N]
        g_ign = g_out | gi[None, :]  # [A, N] ignored per area range
        for a in range(len(lo)):
            np.add.at(self._n_gt[:, a], gl, (~g_ign[a]).astype(np.int64))

        for k in np.union1d(np.unique(gl), np.unique(dl)):
            d_sel = np.flatnonzero(dl == k)
            if len(d_sel) == 0:
                continue
            order = np.argsort(-ds[d_sel], kind="mergesort")[: self.max_dets[-1]]
            d_sel = d_sel[order]
            g_sel = np.flatnonzero(gl == k)
            tp, ig = self._match(db[d_sel], gb[g_sel], gi[g_sel], g_ign[:, g_sel])
            n = len(d_sel)
            self._chunks.append(
                (
                    ds[d_sel],
                    np.full(n, k, np.int64),
                    np.full(n, img_idx, np.int64),
                    np.arange(n, dtype=np.int64),
                    tp,
                    ig,
                )
            )

    def _check_boxes(self, boxes: np.ndarray, name: str) -> np.ndarray:
        b = np.asarray(boxes, np.float64)
        if b.size == 0:
            return np.zeros((0, 4), np.float64)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{name} must be [N, 4] x1, y1, x2, y2, got shape {b.shape}")
        if not np.all(np.isfinite(b)) or np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]):
            raise ValueError(f"{name} must be finite with x2 >= x1 and y2 >= y1")
        return b

    def _check_labels(self, labels: np.ndarray, n: int, name: str) -> np.ndarray:
        lab = np.asarray(labels).reshape(-1)
        if lab.shape != (n,):
            raise ValueError(f"{name} must have shape [{n}], got {lab.shape}")
        if n and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= len(self.class_names)):
            raise ValueError(f"{name} must be integer class indices in [0, {len(self.class_names)}), got {lab}")
        return lab.astype(np.int64)

    def _match(
        self, det: np.ndarray, gt: np.ndarray, crowd: np.ndarray, g_ign: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """COCO greedy matching of one image and class, all area ranges and thresholds at once.

        ``det`` float [D, 4] sorted by descending score; ``gt`` float [G, 4]; ``crowd`` bool [G];
        ``g_ign`` bool [A, G]. Returns ``tp`` and ``ignore``, bool [D, A, T].
        """
        a_n, t_n, d_n, g_n = len(self._area), len(self.iou_thresholds), len(det), len(gt)
        tp = np.zeros((d_n, a_n, t_n), bool)
        ig = np.zeros((d_n, a_n, t_n), bool)
        matched = np.zeros((d_n, a_n, t_n), bool)
        if g_n:
            ious = box_iou_coco(det, gt, crowd)  # [D, G]
            thr = np.minimum(self.iou_thresholds, 1 - 1e-10)[None, :, None]  # [1, T, 1]
            gtm = np.zeros((a_n, t_n, g_n), bool)
            reg = ~g_ign[:, None, :]  # [A, 1, G]
            rev = np.arange(g_n)[::-1]
            for d in range(d_n):
                avail = ~(gtm & ~crowd[None, None, :])
                cand = avail & (ious[d][None, None, :] >= thr)  # [A, T, G]
                cand_reg = cand & reg
                use = np.where(cand_reg.any(-1, keepdims=True), cand_reg, cand & ~reg)
                has = use.any(-1)  # [A, T]
                if not has.any():
                    continue
                vals = np.where(use, ious[d][None, None, :], -np.inf)[..., rev]
                m = rev[np.argmax(vals, axis=-1)]  # last index of the max, [A, T]
                ai, ti = np.nonzero(has)
                mi = m[ai, ti]
                gtm[ai, ti, mi] = True
                matched[d, ai, ti] = True
                ig[d, ai, ti] = g_ign[ai, mi]
            tp = matched & ~ig
        dx = _xywh(det)
        d_area = dx[:, 2] * dx[:, 3]
        d_out = (d_area[:, None] < self._area[None, :, 0]) | (d_area[:, None] > self._area[None, :, 1])  # [D, A]
        ig |= ~matched & d_out[:, :, None]
        return tp, ig

    # ------------------------------------------------------------------ merging
    def merge(self, other: DetectionAccumulator) -> DetectionAccumulator:
        """Append another accumulator's images (a disjoint shard) to this one, in place; returns self.

        The result equals one accumulator that saw this one's images then ``other``'s, in order.
        """
        if (
            other.class_names != self.class_names
            or not np.array_equal(other.iou_thresholds, self.iou_thresholds)
            or other.max_dets != self.max_dets
            or other.area_names != self.area_names
            or not np.array_equal(other._area, self._area)
        ):
            raise ValueError("cannot merge accumulators with different classes, thresholds, max_dets or areas")
        dup = self._image_set & other._image_set
        if dup:
            raise ValueError(f"cannot merge: images added to both accumulators: {sorted(map(repr, dup))[:5]}")
        off = len(self._image_ids)
        for s, lab, img, rank, tp, ig in other._chunks:
            self._chunks.append((s, lab, img + off, rank, tp, ig))
        self._image_ids.extend(other._image_ids)
        self._image_set |= other._image_set
        self._n_gt = self._n_gt + other._n_gt
        return self

    # ------------------------------------------------------------------ results
    def _records(self) -> tuple[np.ndarray, ...]:
        a_n, t_n = len(self._area), len(self.iou_thresholds)
        if not self._chunks:
            e = np.zeros(0, np.int64)
            return np.zeros(0), e, e, e, np.zeros((0, a_n, t_n), bool), np.zeros((0, a_n, t_n), bool)
        return tuple(np.concatenate([c[i] for c in self._chunks]) for i in range(6))

    def compute(self) -> DetectionResult:
        """Dataset-level metrics over everything added so far (see the module docstring)."""
        scores, labels, img, rank, tp_all, ig_all = self._records()
        # rank all records once: descending score, ties by image order then rank in image (pycocotools)
        order = np.lexsort((rank, img, -scores))
        scores, labels, rank, tp_all, ig_all = scores[order], labels[order], rank[order], tp_all[order], ig_all[order]

        t_n, r_n, k_n = len(self.iou_thresholds), len(COCO_REC_THRESHOLDS), len(self.class_names)
        a_n, m_n = len(self.area_names), len(self.max_dets)
        precision = np.full((t_n, r_n, k_n, a_n, m_n), np.nan)
        recall = np.full((t_n, k_n, a_n, m_n), np.nan)
        for k in range(k_n):
            in_k = labels == k
            for a in range(a_n):
                npig = self._n_gt[k, a]
                if npig == 0:
                    continue
                for mi, max_det in enumerate(self.max_dets):
                    sel = in_k & (rank < max_det)
                    tps = tp_all[sel, a, :].T  # [T, D]
                    fps = ~tp_all[sel, a, :].T & ~ig_all[sel, a, :].T
                    tp_sum = np.cumsum(tps, axis=1).astype(np.float64)
                    fp_sum = np.cumsum(fps, axis=1).astype(np.float64)
                    nd = tp_sum.shape[1]
                    rc = tp_sum / npig
                    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                    recall[:, k, a, mi] = rc[:, -1] if nd else 0.0
                    q = np.zeros((t_n, r_n))
                    if nd:
                        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                        for t in range(t_n):
                            inds = np.searchsorted(rc[t], COCO_REC_THRESHOLDS, side="left")
                            ok = inds < nd
                            q[t, ok] = pr[t, inds[ok]]
                    precision[:, :, k, a, mi] = q

        ap = _nanmean_or_nan(precision[:, :, :, 0, -1], axis=1).T  # [K, T]
        stats = self._stats(precision, recall)
        curves, best = self._f1(scores, labels, rank, tp_all, ig_all)
        return DetectionResult(
            class_names=self.class_names,
            iou_thresholds=self.iou_thresholds.copy(),
            max_dets=self.max_dets,
            precision=precision,
            recall=recall,
            ap=ap,
            stats=stats,
            pr_curves=curves,
            best_f1=best,
        )

    def _stats(self, precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
        """The 12 ``COCOeval.summarize`` numbers (NaN for -1)."""
        area = {n: i for i, n in enumerate(self.area_names)}
        t50 = _threshold_index(self.iou_thresholds, 0.5)
        t75 = _threshold_index(self.iou_thresholds, 0.75)

        def ap(t: int | None = None, a: str = "all") -> float:
            s = precision[:, :, :, area[a], 2]
            return _nanmean_or_nan(s if t is None else s[t])

        def ar(m: int, a: str = "all") -> float:
            return _nanmean_or_nan(recall[:, :, area[a], m])

        return np.array(
            [
                ap(),
                ap(t50) if t50 is not None else np.nan,
                ap(t75) if t75 is not None else np.nan,
                ap(a="small"),
                ap(a="medium"),
                ap(a="large"),
                ar(0),
                ar(1),
                ar(2),
                ar(2, "small"),
                ar(2, "medium"),
                ar(2, "large"),
            ],
            np.float64,
        )

    def _f1(
        self,
        scores: np.ndarray,
        labels: np.ndarray,
        rank: np.ndarray,
        tp_all: np.ndarray,
        ig_all: np.ndarray,
    ) -> tuple[tuple[PRCurve, ...], tuple[BestF1, ...]]:
        t50 = _threshold_index(self.iou_thresholds, 0.5)
        curves, best = [], []
        for k in range(len(self.class_names)):
            npig = self._n_gt[k, 0]
            if t50 is None:
                empty = np.zeros(0)
                curves.append(PRCurve(empty, empty, empty))
                best.append(BestF1(np.nan, np.nan, np.nan, np.nan))
                continue
            sel = (labels == k) & (rank < self.max_dets[-1]) & ~ig_all[:, 0, t50]
            s = scores[sel]
            tp = np.cumsum(tp_all[sel, 0, t50]).astype(np.float64)
            fp = np.arange(1, len(s) + 1, dtype=np.float64) - tp
            prec = tp / np.maximum(tp + fp, 1.0)
            rec = tp / npig if npig else np.full(len(s), np.nan)
            curves.append(PRCurve(s.copy(), rec, prec))
            if npig == 0:
                best.append(BestF1(np.nan, np.nan, np.nan, np.nan))
                continue
            ends = np.flatnonzero(np.append(s[1:] != s[:-1], True)) if len(s) else np.zeros(0, np.int64)
            denom = prec[ends] + rec[ends]
            f1 = np.where(denom > 0, 2 * prec[ends] * rec[ends] / np.where(denom > 0, denom, 1.0), 0.0)
            if len(f1) == 0 or f1.max() <= 0:
                best.append(BestF1(0.0, np.nan, 0.0, 0.0))
                continue
            i = ends[int(np.argmax(f1))]
            best.append(BestF1(float(f1.max()), float(s[i]), float(prec[i]), float(rec[i])))
        return tuple(curves), tuple(best)
