"""Pairwise IoU and greedy non-maximum suppression on the host (numpy, float64 arithmetic).

Boxes are x1, y1, x2, y2 (finite, x1 <= x2, y1 <= y2) in any coordinate frame; every box passed to one
call must be in the same frame. Coordinates are converted to float64 before any arithmetic (exact for
float32 and for integers below 2**53), so an IoU that is a simple fraction of exact areas, e.g. 1/2,
compares exactly against a threshold. Nothing here writes to its inputs.

Suppression follows ``torchvision.ops.nms`` and ``cv2.dnn.NMSBoxes``: a box is dropped when its IoU with an
already kept box is strictly greater than the threshold.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike

# nms walks the score-sorted boxes in blocks of this many: each block is first checked against every box
# kept so far, then resolved within itself through a [B, B] suppression matrix (B*B bytes).
_BLOCK_BOXES = 1024
# Float64 elements per IoU chunk (bounds each temporary array to ~8 MB).
_BLOCK_ELEMENTS = 1 << 20


def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: float or int [N, 4], x1, y1, x2, y2.
        b: float or int [M, 4], x1, y1, x2, y2, in the same coordinate frame as ``a``.

    Returns:
        float64 [N, M]; entry (i, j) is IoU(a[i], b[j]) in [0, 1]. A pair whose union has zero area
        (two zero-area boxes) gets 0.
    """
    return _pairwise_iou(_as_boxes(a, "a"), _as_boxes(b, "b"))


def nms(
    boxes_xyxy: ArrayLike,
    scores: ArrayLike,
    iou_threshold: float,
    labels: ArrayLike | None = None,
    max_output: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression.

    Boxes are visited by descending score (equal scores: lower input index first). A box is kept unless
    its IoU with an already kept box (of the same label, when ``labels`` is given) is strictly greater than
    ``iou_threshold``; an IoU exactly equal to the threshold keeps the box.

    Args:
        boxes_xyxy: float or int [N, 4], x1, y1, x2, y2, any coordinate frame (the same for all boxes).
        scores: float or int [N]; higher is better.
        iou_threshold: suppression threshold; 0 drops every box that overlaps a kept one at all, 1 (or
            more) drops nothing.
        labels: optional int [N] class ids. Given, boxes of different labels never suppress each other
            (class-aware NMS); None, every box competes with every other (class-agnostic).
        max_output: keep at most this many boxes (the highest scored ones); None keeps all.

    Returns:
        int64 [K], indices into the inputs of the kept boxes, by descending score (ties: lower index
        first). Empty input gives int64 [0].

    Raises:
        ValueError: on shapes or dtypes other than the above, a NaN threshold or a negative max_output.
    """
    boxes = _as_boxes(boxes_xyxy, "boxes_xyxy")
    n = boxes.shape[0]
    score_arr = _as_vector(scores, n, "scores")
    if not np.issubdtype(score_arr.dtype, np.number) or np.iscomplexobj(score_arr):
        raise ValueError(f"nms: scores must be real numbers, got dtype {score_arr.dtype}")
    label_arr = None
    if labels is not None:
        label_arr = _as_vector(labels, n, "labels")
        if label_arr.size and not np.issubdtype(label_arr.dtype, np.integer):
            raise ValueError(f"nms: labels must be integer class ids, got dtype {label_arr.dtype}")
    threshold = float(iou_threshold)
    if math.isnan(threshold):
        raise ValueError("nms: iou_threshold is NaN")
    limit = n
    if max_output is not None:
        max_output = operator.index(max_output)
        if max_output < 0:
            raise ValueError(f"nms: max_output must be >= 0 or None, got {max_output}")
        limit = min(n, max_output)
    if limit == 0:
        return np.zeros(0, np.int64)

    # Stable sort of the negated scores: descending score, lower index first among equal scores.
    order = np.argsort(-score_arr.astype(np.float64), kind="stable")
    sorted_boxes = boxes[order]
    sorted_labels = None if label_arr is None else label_arr[order]
    kept = _nms_sorted(sorted_boxes, sorted_labels, threshold, limit)
    return order[kept].astype(np.int64, copy=False)


def _nms_sorted(boxes: np.ndarray, labels: np.ndarray | None, threshold: float, limit: int) -> np.ndarray:
    """Greedy NMS on boxes sorted by priority; returns the first ``limit`` kept positions (int64, ascending).

    Blocks of ``_BLOCK_BOXES`` boxes in priority order: boxes of a block that a box kept in an earlier block
    suppresses are dropped (one vectorised [K, B] test), the rest are decided within the block. Stops as
    soon as ``limit`` boxes are kept, so a small ``max_output`` only looks at the first few blocks.
    """
    n = boxes.shape[0]
    kept_parts: list[np.ndarray] = []
    n_kept = 0
    for start in range(0, n, _BLOCK_BOXES):
        candidates = np.arange(start, min(n, start + _BLOCK_BOXES))
        if n_kept:
            kept_so_far = np.concatenate(kept_parts)
            hit = _suppressed_by(
                boxes[kept_so_far],
                None if labels is None else labels[kept_so_far],
                boxes[candidates],
                None if labels is None else labels[candidates],
                threshold,
            )
            candidates = candidates[~hit]
        if candidates.size == 0:
            continue
        new = candidates[
            _nms_block(boxes[candidates], None if labels is None else labels[candidates], threshold, limit - n_kept)
        ]
        kept_parts.append(new)
        n_kept += new.size
        if n_kept >= limit:
            break
    if not kept_parts:
        return np.zeros(0, np.int64)
    return np.concatenate(kept_parts)[:limit]


def _suppressed_by(
    kept: np.ndarray,
    kept_labels: np.ndarray | None,
    candidates: np.ndarray,
    candidate_labels: np.ndarray | None,
    threshold: float,
) -> np.ndarray:
    """bool [B]: candidates whose IoU with some kept box (same label, if labels) is > threshold."""
    if threshold < 0:  # every IoU (>= 0) exceeds a negative threshold
        if kept_labels is None:
            return np.ones(candidates.shape[0], bool)
        return np.isin(candidate_labels, kept_labels)
    kept_xyxy = tuple(np.ascontiguousarray(kept[:, j]) for j in range(4))
    cand_xyxy = tuple(np.ascontiguousarray(candidates[:, j]) for j in range(4))
    runs = _runs_between(kept_xyxy, cand_xyxy)
    n_runs = sum(int(np.maximum(end - begin, 0).sum()) for _, _, begin, end in runs)
    hit = np.zeros(candidates.shape[0], bool)
    if 4 * n_runs > kept.shape[0] * candidates.shape[0]:
        # Most pairs overlap along x anyway: the plain [K, B] IoU (in row chunks) is cheaper than pairing.
        rows = max(1, _BLOCK_ELEMENTS // max(candidates.shape[0], 1))
        for r0 in range(0, kept.shape[0], rows):
            over = _pairwise_iou(kept[r0 : r0 + rows], candidates) > threshold
            if kept_labels is not None:
                over &= kept_labels[r0 : r0 + rows, None] == candidate_labels[None, :]
            hit |= over.any(axis=0)
        return hit
    for k, c in _pairs_between(kept_xyxy, cand_xyxy, runs):
        if kept_labels is not None:
            same = kept_labels[k] == candidate_labels[c]
            k, c = k[same], c[same]
        kx1, ky1, kx2, ky2 = (v[k] for v in kept_xyxy)
        cx1, cy1, cx2, cy2 = (v[c] for v in cand_xyxy)
        hit[c[_iou(kx1, ky1, kx2, ky2, cx1, cy1, cx2, cy2) > threshold]] = True
    return hit


def _nms_block(boxes: np.ndarray, labels: np.ndarray | None, threshold: float, limit: int) -> np.ndarray:
    """Greedy NMS within one block of boxes sorted by priority; returns kept positions (int64, ascending).

    Equivalent to the one-box-at-a-time loop, but decides many boxes per round: a still-undecided box that
    no still-undecided earlier box would suppress must be kept (every earlier box able to suppress it has
    already been suppressed itself), and every box it overlaps beyond the threshold is then suppressed.
    The first undecided box is always kept, so there are at most as many rounds as kept boxes.
    """
    n = boxes.shape[0]
    over = _suppression_matrix(boxes, labels, threshold)  # bool [N, N], over[i, j] only for i < j
    blockers = over.sum(axis=0)  # undecided earlier boxes able to suppress each box
    undecided = np.ones(n, bool)
    kept = np.zeros(n, bool)
    while True:
        ready = undecided & (blockers == 0)
        ready_rows = over[ready]
        suppressed = ready_rows.any(axis=0) & undecided
        kept |= ready
        undecided &= ~(ready | suppressed)
        first_open = int(np.argmax(undecided))
        if not undecided[first_open] or np.count_nonzero(kept[:first_open]) >= limit:
            break
        blockers -= ready_rows.sum(axis=0) + over[suppressed].sum(axis=0)
    return np.flatnonzero(kept)


def _suppression_matrix(boxes: np.ndarray, labels: np.ndarray | None, threshold: float) -> np.ndarray:
    """bool [N, N]: (i, j) is True when i < j and box i would suppress box j (IoU > threshold, same label).

    With threshold >= 0 only pairs whose boxes overlap with positive width and height can exceed it (any
    other pair has zero intersection, hence IoU 0), so the exact IoU is computed for those pairs only.
    """
    n = boxes.shape[0]
    if threshold < 0:  # every IoU (>= 0) exceeds a negative threshold
        same = np.ones((n, n), bool) if labels is None else labels[:, None] == labels[None, :]
        return np.triu(same, 1)
    over = np.zeros((n, n), bool)
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, k]) for k in range(4))
    for a, b in _overlapping_pairs(x1, y1, x2, y2):
        if labels is not None:
            same = labels[a] == labels[b]
            a, b = a[same], b[same]
        hit = _iou(x1[a], y1[a], x2[a], y2[a], x1[b], y1[b], x2[b], y2[b]) > threshold
        a, b = a[hit], b[hit]
        over[np.minimum(a, b), np.maximum(a, b)] = True
    return over


def _overlapping_pairs(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every unordered pair of boxes that overlap with positive width and height, in chunks of int arrays.

    Sweep along x: with boxes sorted by x1, the boxes that start inside box p's x-range form one
    contiguous run after p, found by binary search; only those pairs are tested on both axes. Work and
    memory grow with the number of x-overlapping pairs, not with N**2 (chunks bound the memory).
    """
    n = x1.shape[0]
    by_x1 = np.argsort(x1, kind="stable")
    run_end = np.searchsorted(x1[by_x1], x2[by_x1], side="left")
    for p, q in _expand_runs(np.arange(1, n + 1), run_end):
        a, b = by_x1[p], by_x1[q]
        ok = _overlap(x1, y1, x2, y2, a, x1, y1, x2, y2, b)
        yield a[ok], b[ok]


def _runs_between(
    first: tuple[np.ndarray, ...], second: tuple[np.ndarray, ...]
) -> list[tuple[bool, np.ndarray, np.ndarray, np.ndarray]]:
    """Sweep along x between two sets of boxes, each given as (x1, y1, x2, y2) coordinate arrays.

    A pair overlapping along x has either first's x1 in [x1, x2) of second's box, or second's x1 in
    (x1, x2) of first's box (never both). Returns both as (owner_is_first, order, begin, end): for each
    owner box o, the other set's boxes order[begin[o]:end[o]] (order sorts that set by x1).
    """
    runs = []
    for owner_is_first, (owner, other), lo_side in (
        (False, (second, first), "left"),
        (True, (first, second), "right"),
    ):
        order = np.argsort(other[0], kind="stable")
        sorted_x1 = other[0][order]
        begin = np.searchsorted(sorted_x1, owner[0], side=lo_side)
        end = np.searchsorted(sorted_x1, owner[2], side="left")
        runs.append((owner_is_first, order, begin, end))
    return runs


def _pairs_between(
    first: tuple[np.ndarray, ...],
    second: tuple[np.ndarray, ...],
    runs: list[tuple[bool, np.ndarray, np.ndarray, np.ndarray]],
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs (i of ``first``, j of ``second``) that overlap with positive width and height, from the runs."""
    for owner_is_first, order, begin, end in runs:
        for owner, position in _expand_runs(begin, end):
            i, j = (owner, order[position]) if owner_is_first else (order[position], owner)
            ok = _overlap(*first, i, *second, j)
            yield i[ok], j[ok]


def _overlap(
    ax1: np.ndarray,
    ay1: np.ndarray,
    ax2: np.ndarray,
    ay2: np.ndarray,
    a: np.ndarray,
    bx1: np.ndarray,
    by1: np.ndarray,
    bx2: np.ndarray,
    by2: np.ndarray,
    b: np.ndarray,
) -> np.ndarray:
    """bool: boxes a (indices into the ax*) and b (into bx*) overlap with positive width and height."""
    return (bx1[b] < ax2[a]) & (ax1[a] < bx2[b]) & (ay1[a] < by2[b]) & (by1[b] < ay2[a])


def _expand_runs(begin: np.ndarray, end: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(owner, position) int arrays listing begin[o] <= position < end[o] for every owner o.

    Yielded in chunks of about ``_BLOCK_ELEMENTS`` pairs (whole owners, at least one per chunk).
    """
    counts = np.maximum(end - begin, 0)
    n = counts.shape[0]
    ends = np.cumsum(counts)
    total = int(ends[-1]) if n else 0
    bounds = [0, n]
    if total > _BLOCK_ELEMENTS:
        cuts = np.searchsorted(ends, np.arange(_BLOCK_ELEMENTS, total, _BLOCK_ELEMENTS))
        bounds = np.unique(np.concatenate([[0], cuts + 1, [n]])).tolist()
    for r0, r1 in itertools.pairwise(bounds):
        c = counts[r0:r1]
        owner = np.repeat(np.arange(r0, r1), c)
        run_start = np.cumsum(c) - c
        position = np.repeat(begin[r0:r1], c) + (np.arange(owner.shape[0]) - np.repeat(run_start, c))
        yield owner, position


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 [N, M] IoU of float64 [N, 4] and [M, 4] boxes (no checks)."""
    return _iou(*(a[:, k, None] for k in range(4)), *(b[None, :, k] for k in range(4)))


def _iou(
    ax1: np.ndarray,
    ay1: np.ndarray,
    ax2: np.ndarray,
    ay2: np.ndarray,
    bx1: np.ndarray,
    by1: np.ndarray,
    bx2: np.ndarray,
    by2: np.ndarray,
) -> np.ndarray:
    """Elementwise IoU of boxes a and b given as broadcastable float64 coordinate arrays.

    The one formula every IoU here goes through, so box_iou and both NMS paths agree bit for bit.
    """
    inter_w = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    np.maximum(inter_w, 0.0, out=inter_w)
    inter_h = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    np.maximum(inter_h, 0.0, out=inter_h)
    inter = inter_w * inter_h
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    iou = np.zeros_like(inter)
    np.divide(inter, union, out=iou, where=union > 0)
    return iou


def _as_boxes(boxes: ArrayLike, name: str) -> np.ndarray:
    """A new float64 [N, 4] array from ``boxes`` (an empty 1-D input counts as [0, 4])."""
    arr = np.asarray(boxes)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must be [N, 4] (x1, y1, x2, y2), got shape {arr.shape}")
    if arr.size and (not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr)):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)  # always a copy: nothing below can write to the caller's array


def _as_vector(values: ArrayLike, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"nms: {name} must be [N] with N={n} (one per box), got shape {arr.shape}")
    return arr
