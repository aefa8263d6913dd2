"""Box checks shared by every loader, and boxes derived from masks where a dataset has no boxes.

Boxes are float32 [N, 4] x1, y1, x2, y2 in image pixels, x2/y2 exclusive edges: a box over pixel
columns 3..5 has x1 = 3, x2 = 6.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from perception.data.sample import DatasetError

BAD_BOXES = ("error", "drop")


def check_bad_boxes(bad_boxes: str) -> str:
    """``bad_boxes`` itself when it is one of ``BAD_BOXES`` ("error", "drop"); ValueError listing them otherwise."""
    if bad_boxes not in BAD_BOXES:
        raise ValueError(f"bad_boxes must be one of {list(BAD_BOXES)}, got {bad_boxes!r}")
    return bad_boxes


def check_min_area(min_area: int) -> int:
    """``min_area`` (pixels) for ``boxes_from_class_mask`` as an int; ValueError when below 1."""
    if min_area < 1:
        raise ValueError(f"min_area must be at least 1 pixel, got {min_area}")
    return int(min_area)


def sanitize_boxes(
    boxes: np.ndarray,
    labels: np.ndarray,
    ignore: np.ndarray,
    width: int,
    height: int,
    file: str,
    bad_boxes: str = "error",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Clip boxes to the image; boxes left with no area (outside, degenerate, NaN) raise or are dropped.

    Args:
        boxes: float [N, 4] xyxy pixels. labels: int [N]. ignore: bool [N]. Inputs are not mutated.
        bad_boxes: "error" raises DatasetError naming ``file``; "drop" removes them and counts them.
    Returns:
        (boxes float32 [M, 4], labels int64 [M], ignore bool [M], number dropped).
    """
    check_bad_boxes(bad_boxes)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    finite = np.isfinite(b).all(1)
    clipped = np.empty_like(b)
    clipped[:, 0::2] = np.clip(b[:, 0::2], 0, width)
    clipped[:, 1::2] = np.clip(b[:, 1::2], 0, height)
    good = finite & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    if not good.all() and bad_boxes == "error":
        i = int(np.flatnonzero(~good)[0])
        raise DatasetError(
            f"{file}: box {i} {np.round(b[i], 2).tolist()} has no area inside the {width}x{height} image "
            "(pass bad_boxes='drop' to skip such boxes)"
        )
    return (
        clipped[good].astype(np.float32),
        np.asarray(labels, np.int64)[good],
        np.asarray(ignore, bool)[good],
        int((~good).sum()),
    )


def boxes_from_class_mask(
    mask: np.ndarray, class_values: Mapping[int, int], min_area: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One box per 8-connected component of each listed class in a semantic mask.

    Caveat: a semantic mask does not separate touching objects of one class (two parked cars side by
    side), so they become one box; boxes derived this way undercount crowded scenes.

    Args:
        mask: uint8 [H, W] source label values. class_values: source value -> det class id.
        min_area: components with fewer pixels are dropped (label noise, far-away specks).
    Returns:
        (boxes float32 [N, 4] xyxy with exclusive x2/y2, labels int64 [N], areas int64 [N] pixel counts),
        ordered by class then component.
    """
    boxes, labels, areas = [], [], []
    for value, cid in class_values.items():
        binary = (mask == value).astype(np.uint8)
        if not binary.any():
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for x, y, w, h, area in stats[1:n]:
            if area >= min_area:
                boxes.append((x, y, x + w, y + h))
                labels.append(cid)
                areas.append(area)
    return (
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int64),
        np.array(areas, np.int64),
    )


def instance_extents(instances: np.ndarray, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounding box and pixel count of every listed instance id present in an instance mask, in one pass.

    Args:
        instances: integer [H, W] instance ids. ids: the ids to measure (others are ignored).
    Returns:
        (ids int64 [N] ascending, boxes float32 [N, 4] xyxy with exclusive x2/y2, areas int64 [N]) for the
        listed ids that occur in the mask.
    """
    wanted = np.asarray(sorted(ids), dtype=np.int64)
    ys, xs = np.nonzero(np.isin(instances, wanted))
    found = instances[ys, xs].astype(np.int64)
    if len(found) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    order = np.argsort(found, kind="stable")
    found, xs, ys = found[order], xs[order], ys[order]
    uniq, starts, counts = np.unique(found, return_index=True, return_counts=True)
    boxes = np.stack(
        [
            np.minimum.reduceat(xs, starts),
            np.minimum.reduceat(ys, starts),
            np.maximum.reduceat(xs, starts) + 1,
            np.maximum.reduceat(ys, starts) + 1,
        ],
        1,
    )
    return uniq, boxes.astype(np.float32), counts.astype(np.int64)


def boxes_from_instance_mask(
    instances: np.ndarray, instance_class: Mapping[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One box per instance id in an instance mask (exact: touching objects stay separate).

    Args:
        instances: integer [H, W] instance ids. instance_class: instance id -> det class id; ids not
            listed are skipped.
    Returns:
        (boxes float32 [N, 4] xyxy exclusive, labels int64 [N], areas int64 [N]) in instance-id order.
    """
    ids, boxes, areas = instance_extents(instances, instance_class)
    return boxes, np.array([instance_class[int(i)] for i in ids], np.int64), areas
