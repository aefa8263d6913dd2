"""Weighted box fusion (Solovyev, Wang and Gabruseva, "Weighted boxes fusion: ensembling boxes from
different object detection models", 2021) in pure numpy.

Where NMS keeps one box of a cluster and throws the others away, WBF averages every box of the cluster,
weighted by confidence, so boxes from several detectors (or several test-time views of one detector)
that roughly agree give one better-placed box, and agreement raises the fused confidence.

Algorithm, per class label (boxes of different labels never fuse):

1. Every box with ``score >= skip_box_thr`` from every model, in descending order of ``score * weight``
   (stable: equal keys keep model order, then box order).
2. Each box joins the cluster whose current fused box overlaps it most, if that IoU is strictly greater
   than ``iou_thr`` (an IoU exactly at the threshold does not fuse, as in the reference implementation
   ``ensemble_boxes`` and in ``perception.postprocess.nms``, where a box at the threshold is kept);
   otherwise it starts a new cluster. A cluster's fused box is recomputed after every join.
3. Fused box: the mean of the cluster's coordinates weighted by ``score * model weight``.
   Fused score (the paper's "avg" confidence type): the model-weighted mean score of the cluster's boxes,
   times the fraction of the total model weight that contributed a box to the cluster; with equal model
   weights that is ``mean(score) * min(K, M) / M`` for K contributing models out of M. Models, not boxes,
   are counted, so one model's two boxes on one object are not two votes (``ensemble_boxes`` counts
   boxes; the two agree whenever each model gives at most one box per cluster).

Coordinates are used as given (any frame, the same for every box); IoU arithmetic is float64. Nothing
here writes to its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perception.postprocess.nms import box_iou


@dataclass(frozen=True)
class FusedBoxes:
    """The result of :func:`weighted_boxes_fusion`, ordered by descending score (ties: first cluster first).

    Attributes:
        boxes: float32 [K, 4] x1, y1, x2, y2, in the coordinate frame of the inputs.
        scores: float32 [K] fused scores in [0, max input score].
        labels: int64 [K] class labels (as given in the inputs).
        models: bool [K, M]; ``models[k, m]`` is True when model ``m`` contributed a box to fused box ``k``.
        counts: int64 [K], the number of input boxes fused into each box.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    models: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def model_indices(self, k: int) -> tuple[int, ...]:
        """The indices of the models that contributed to fused box ``k``, ascending."""
        return tuple(int(m) for m in np.flatnonzero(self.models[k]))


def _check_model(i: int, boxes, scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = np.asarray(boxes, np.float64)
    s = np.asarray(scores, np.float64)
    lab = np.asarray(labels)
    n = len(s) if s.ndim == 1 else -1
    if b.size == 0 and n == 0:
        b = b.reshape(0, 4)
    if n < 0 or b.shape != (n, 4) or lab.shape != (n,):
        raise ValueError(
            f"model {i}: boxes must be [N, 4], scores [N] and labels [N], got {list(b.shape)}, "
            f"{list(s.shape)}, {list(lab.shape)}"
        )
    if n and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"model {i}: labels must be integers, got dtype {lab.dtype}")
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise ValueError(f"model {i}: boxes and scores must be finite")
    return b, s, lab.astype(np.int64)


def weighted_boxes_fusion(
    boxes_list: Sequence[np.ndarray],
    scores_list: Sequence[np.ndarray],
    labels_list: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
) -> FusedBoxes:
    """Fuse the boxes of M models (module docstring: algorithm, fused box and score).

    Args:
        boxes_list: M arrays float [N_m, 4], x1, y1, x2, y2 (x1 <= x2, y1 <= y2), one coordinate frame for all.
        scores_list: M arrays float [N_m], the boxes' scores (typically in [0, 1]).
        labels_list: M arrays int [N_m], class labels; only boxes of equal label fuse.
        weights: M positive model weights (None: all 1).
        iou_thr: a box joins a cluster when its IoU with the cluster's fused box is strictly greater.
        skip_box_thr: boxes with ``score < skip_box_thr`` are left out before fusion.

    Returns:
        FusedBoxes with K fused boxes, ``models`` bool [K, M]. No box at all gives K = 0.

    Raises:
        ValueError: on mismatched list lengths or array shapes, non-finite values, weights that are not
            positive, or a threshold outside [0, 1].
    """
    m = len(boxes_list)
    if len(scores_list) != m or len(labels_list) != m:
        raise ValueError(
            f"need one boxes, scores and labels array per model, got {m}, {len(scores_list)}, {len(labels_list)}"
        )
    w = np.ones(m, np.float64) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != (m,) or not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError(f"weights must be {m} positive numbers, got {weights!r}")
    if not 0.0 <= iou_thr <= 1.0:
        raise ValueError(f"iou_thr must be in [0, 1], got {iou_thr}")
    per_model = [_check_model(i, *t) for i, t in enumerate(zip(boxes_list, scores_list, labels_list, strict=True))]

    # One flat table of the kept boxes: coordinates, score, label, model.
    coords, scores, labels, model = [], [], [], []
    for i, (b, s, lab) in enumerate(per_model):
        keep = s >= skip_box_thr
        coords.append(b[keep])
        scores.append(s[keep])
        labels.append(lab[keep])
        model.append(np.full(int(keep.sum()), i, np.int64))
    all_b = np.concatenate(coords) if coords else np.zeros((0, 4))
    all_s = np.concatenate(scores) if scores else np.zeros(0)
    all_l = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    all_m = np.concatenate(model) if model else np.zeros(0, np.int64)

    out_b, out_s, out_l, out_m, out_n = [], [], [], [], []
    total_weight = w.sum()
    for label in np.unique(all_l):
        idx = np.flatnonzero(all_l == label)
        weighted = all_s[idx] * w[all_m[idx]]
        idx = idx[np.argsort(-weighted, kind="stable")]
        members: list[list[int]] = []  # input rows per cluster
        fused = np.zeros((0, 4), np.float64)  # current fused box per cluster
        for j in idx:
            c = -1
            if len(members):
                ious = box_iou(all_b[j][None], fused)[0]
                best = int(np.argmax(ious))
                if ious[best] > iou_thr:
                    c = best
            if c < 0:
                members.append([j])
                fused = np.vstack([fused, all_b[j][None]])
            else:
                members[c].append(j)
                rows = np.array(members[c])
                cw = all_s[rows] * w[all_m[rows]]
                fused[c] = (cw[:, None] * all_b[rows]).sum(0) / cw.sum() if cw.sum() > 0 else all_b[rows].mean(0)
        for c, rows_list in enumerate(members):
            rows = np.array(rows_list)
            mw = w[all_m[rows]]
            contributed = np.zeros(m, bool)
            contributed[all_m[rows]] = True
            mean_score = (all_s[rows] * mw).sum() / mw.sum()
            out_b.append(fused[c])
            out_s.append(mean_score * w[contributed].sum() / total_weight)
            out_l.append(label)
            out_m.append(contributed)
            out_n.append(len(rows))

    k = len(out_s)
    order = np.argsort(-np.asarray(out_s, np.float64), kind="stable") if k else np.zeros(0, np.int64)
    return FusedBoxes(
        boxes=np.asarray(out_b, np.float32).reshape(-1, 4)[order],
        scores=np.asarray(out_s, np.float32)[order],
        labels=np.asarray(out_l, np.int64)[order],
        models=np.asarray(out_m, bool).reshape(k, m)[order],
        counts=np.asarray(out_n, np.int64)[order],
    )
