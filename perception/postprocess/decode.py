"""Decode the raw grid outputs of the anchor-free detector into boxes, and select final detections.

Model contract (raw outputs, one pair per stride ``s`` of ``strides``, for a network input of H x W):

- class-logit map: float32 [N, C, H/s, W/s], one logit per class (sigmoid, not softmax: multi-label);
- box map: float32 [N, 4, H/s, W/s], distances l, t, r, b from the cell centre to the box sides, before
  activation; the box encoding (``BOX_ENCODINGS``) turns them into distances in stride units.

Anchors are cell centres, level by level in the order given, row-major within a level (row i, column j):
centre ((j + 0.5) * s, (i + 0.5) * s) in input pixels. All boxes here are x1, y1, x2, y2 in input pixels
(the letterboxed network input); ``Letterbox.boxes_to_frame`` maps them to the frame.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from perception.frames import Detections
from perception.postprocess.nms import nms


def _ltrb_softplus(raw: np.ndarray) -> np.ndarray:
    """Distances = softplus(raw), computed stably as log(1 + exp(raw)); same dtype as ``raw``."""
    return np.logaddexp(np.zeros((), raw.dtype), raw)


MAX_LOG_SIZE = 10.0  # yolox_xywh: log width/height capped here (e**10 strides), so exp never overflows


def _yolox_xywh(raw: np.ndarray) -> np.ndarray:
    """YOLOX's boxes: channels (dx, dy, log w, log h), the centre ``(cell corner + d) * s``, the size
    ``exp(log w) * s``; returned as l, t, r, b distances from the cell centre (negative when the box does
    not cover it), in stride units."""
    dx, dy = raw[..., 0, :], raw[..., 1, :]
    half_w = np.exp(np.minimum(raw[..., 2, :], MAX_LOG_SIZE)) / 2
    half_h = np.exp(np.minimum(raw[..., 3, :], MAX_LOG_SIZE)) / 2
    half = raw.dtype.type(0.5)
    return np.stack([half - dx + half_w, half - dy + half_h, dx - half + half_w, dy - half + half_h], axis=-2)


BoxEncoding = Callable[[np.ndarray], np.ndarray]
"""Maps raw box channels (float32 [..., 4, A]) to l, t, r, b distances from the cell centre in stride units."""

BOX_ENCODINGS: dict[str, BoxEncoding] = {"ltrb_softplus": _ltrb_softplus, "yolox_xywh": _yolox_xywh}


def anchor_centers(sizes_hw: Sequence[tuple[int, int]], strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor points of all levels.

    Args:
        sizes_hw: (h, w) of each level's grid, in cells.
        strides: input pixels per cell of each level, same length as ``sizes_hw``.

    Returns:
        centers: float32 [A, 2], (x, y) in input pixels, A = sum of h * w; level by level in the order
            given, row-major within a level; centre of cell (i, j) is ((j + 0.5) * s, (i + 0.5) * s).
        stride_per_anchor: float32 [A], the stride of each anchor's level.
    """
    if len(sizes_hw) != len(strides):
        raise ValueError(f"anchor_centers: {len(sizes_hw)} grid sizes but {len(strides)} strides")
    centers, per_anchor = [], []
    for (h, w), s in zip(sizes_hw, strides, strict=True):
        h, w = operator.index(h), operator.index(w)
        if h < 0 or w < 0 or not s > 0:
            raise ValueError(f"anchor_centers: bad level, grid {h}x{w} with stride {s}")
        xs = (np.arange(w, dtype=np.float32) + np.float32(0.5)) * np.float32(s)
        ys = (np.arange(h, dtype=np.float32) + np.float32(0.5)) * np.float32(s)
        centers.append(np.stack([np.tile(xs, h), np.repeat(ys, w)], axis=1))
        per_anchor.append(np.full(h * w, s, np.float32))
    if not centers:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
    return np.concatenate(centers, axis=0), np.concatenate(per_anchor)


def decode_grid(
    cls_maps: Sequence[np.ndarray],
    box_maps: Sequence[np.ndarray],
    strides: Sequence[int],
    box_encoding: str = "ltrb_softplus",
) -> tuple[np.ndarray, np.ndarray]:
    """Turn raw per-level outputs into per-anchor boxes and class scores.

    Args:
        cls_maps: per level, class logits float [N, C, h, w] (C and N equal on all levels).
        box_maps: per level, raw box channels float [N, 4, h, w] (l, t, r, b before activation).
        strides: per level, input pixels per cell, e.g. (8, 16, 32).
        box_encoding: name in ``BOX_ENCODINGS``.

    Returns:
        boxes: float32 [N, A, 4], x1, y1, x2, y2 in input pixels; box = (cx - l*s, cy - t*s, cx + r*s,
            cy + b*s) with l, t, r, b the decoded distances in stride units.
        scores: float32 [N, A, C], sigmoid of the logits.
        A = sum over levels of h * w, anchors ordered as in :func:`anchor_centers`.

    Raises:
        ValueError: unknown encoding, level counts that differ, or shapes that do not agree.
    """
    encode = _box_encoding(box_encoding)
    if not (len(cls_maps) == len(box_maps) == len(strides)) or len(strides) == 0:
        raise ValueError(
            f"decode_grid: need one class map, one box map and one stride per level (at least one), got "
            f"{len(cls_maps)} class maps, {len(box_maps)} box maps and {len(strides)} strides"
        )
    cls_list = [np.asarray(m, dtype=np.float32) for m in cls_maps]
    box_list = [np.asarray(m, dtype=np.float32) for m in box_maps]
    if cls_list[0].ndim != 4:
        raise ValueError(f"decode_grid: class map of level 0 must be [N, C, h, w], got {cls_list[0].shape}")
    n, c = cls_list[0].shape[:2]
    sizes = []
    for level, (cls, box) in enumerate(zip(cls_list, box_list, strict=True)):
        if cls.ndim != 4 or cls.shape[:2] != (n, c):
            raise ValueError(f"decode_grid: class map of level {level} must be [{n}, {c}, h, w], got {cls.shape}")
        if box.shape != (n, 4) + cls.shape[2:]:
            raise ValueError(
                f"decode_grid: box map of level {level} must be [{n}, 4, {cls.shape[2]}, {cls.shape[3]}] "
                f"to match its class map, got {box.shape}"
            )
        sizes.append((cls.shape[2], cls.shape[3]))
    centers, stride_per_anchor = anchor_centers(sizes, strides)

    logits = np.concatenate([m.reshape(n, c, -1) for m in cls_list], axis=2)  # [N, C, A]
    scores = np.ascontiguousarray(_sigmoid(logits).transpose(0, 2, 1))  # [N, A, C]
    raw = np.concatenate([m.reshape(n, 4, -1) for m in box_list], axis=2)  # [N, 4, A]
    dist = encode(raw).astype(np.float32, copy=False) * stride_per_anchor  # [N, 4, A], input pixels
    cx, cy = centers[:, 0], centers[:, 1]
    boxes = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=-1)
    return boxes, scores


def select_detections(
    boxes: ArrayLike,
    scores: ArrayLike,
    score_threshold: float,
    iou_threshold: float,
    max_dets: int,
    class_agnostic: bool = False,
) -> Detections:
    """Pick the final detections of ONE image from per-anchor boxes and class scores.

    Every (anchor, class) pair whose score is strictly greater than ``score_threshold`` becomes a
    candidate (multi-label: one anchor can yield several classes), as ONNX NonMaxSuppression does; scores
    and threshold are compared in float32. Candidates go through :func:`nms` (class-aware unless
    ``class_agnostic``), and the ``max_dets`` best survivors are returned, by descending score (equal
    scores: lower anchor, then lower class first).

    Args:
        boxes: float [A, 4], x1, y1, x2, y2 in input pixels (or any frame; the result is in the same one).
        scores: float [A, C] in [0, 1].
        score_threshold: candidates need a score > this.
        iou_threshold: NMS suppresses IoU > this.
        max_dets: at most this many detections (>= 0).
        class_agnostic: True lets boxes of different classes suppress each other.

    Returns:
        Detections with float32 boxes in the frame of ``boxes``, float32 scores and int32 labels (class
        index); ``Detections.empty()`` when no candidate passes.
    """
    box_arr = np.asarray(boxes, dtype=np.float32)
    score_arr = np.asarray(scores, dtype=np.float32)
    if box_arr.ndim != 2 or box_arr.shape[1] != 4:
        raise ValueError(f"select_detections: boxes must be [A, 4], got shape {box_arr.shape}")
    if score_arr.ndim != 2 or score_arr.shape[0] != box_arr.shape[0]:
        raise ValueError(
            f"select_detections: scores must be [A, C] with A={box_arr.shape[0]}, got shape {score_arr.shape}"
        )
    max_dets = operator.index(max_dets)
    if max_dets < 0:
        raise ValueError(f"select_detections: max_dets must be >= 0, got {max_dets}")
    flat = np.flatnonzero(score_arr > np.float32(score_threshold))  # row-major: by anchor, then class
    if flat.size == 0 or max_dets == 0:
        return Detections.empty()
    anchor_idx, labels = np.divmod(flat, score_arr.shape[1])
    cand_boxes = box_arr[anchor_idx]
    cand_scores = score_arr[anchor_idx, labels]
    keep = nms(cand_boxes, cand_scores, iou_threshold, labels=None if class_agnostic else labels, max_output=max_dets)
    return Detections(cand_boxes[keep], cand_scores[keep], labels[keep])


def _box_encoding(name: str) -> BoxEncoding:
    try:
        return BOX_ENCODINGS[name]
    except KeyError:
        raise ValueError(f"unknown box encoding {name!r}; valid: {sorted(BOX_ENCODINGS)}") from None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, same float dtype as ``x``."""
    e = np.exp(-np.abs(x))
    one = np.ones((), x.dtype)
    return np.where(x >= 0, one / (one + e), e / (one + e))
