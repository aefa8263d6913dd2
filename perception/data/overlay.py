"""Draw a sample's labels over its image, and tile samples into a montage PNG, to look at a dataset."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from perception.data.sample import DET_CLASSES, IGNORE, SEG_CLASSES, Sample
from perception.viz import det_color, seg_palette

IGNORE_COLOR = (160, 0, 160)  # magenta: pixels no metric or loss uses
IGNORED_BOX_COLOR = (150, 150, 150)


def draw_labels(
    sample: Sample,
    seg_classes: Sequence[str] = SEG_CLASSES,
    det_classes: Sequence[str] = DET_CLASSES,
    alpha: float = 0.45,
    lanes: bool = True,
) -> np.ndarray:
    """uint8 [H, W, 3] BGR: the image with the mask tinted, boxes (grey when flagged ignore), and the lane
    polylines of ``meta["lanes"]`` (synthetic samples) as thin white lines with dots at their points."""
    out = sample.image.copy()
    if sample.seg is not None:
        colors = cv2.LUT(cv2.cvtColor(sample.seg, cv2.COLOR_GRAY2BGR), seg_palette(tuple(seg_classes)))
        colors[sample.seg == IGNORE] = IGNORE_COLOR
        blended = cv2.addWeighted(out, 1.0 - alpha, colors, alpha, 0.0)
        cv2.copyTo(blended, (sample.seg > 0).view(np.uint8), out)
    if lanes:
        for lane in sample.meta.get("lanes", []):
            pts = np.asarray(lane.get("points_image", []), np.float32).reshape(-1, 2)
            if len(pts) >= 2:
                cv2.polylines(out, [np.round(pts * 4).astype(np.int32)], False, (255, 255, 255), 1, cv2.LINE_AA, 2)
    if sample.boxes is not None:
        for box, label, ign in zip(sample.boxes, sample.labels, sample.ignore, strict=True):
            name = det_classes[label] if 0 <= label < len(det_classes) else str(label)
            color = IGNORED_BOX_COLOR if ign else det_color(name, int(label))
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, 1, cv2.LINE_AA)
    return out


def montage(
    samples: Sequence[Sample],
    cols: int = 4,
    tile_width: int = 480,
    with_labels: bool = True,
    seg_classes: Sequence[str] = SEG_CLASSES,
    det_classes: Sequence[str] = DET_CLASSES,
) -> np.ndarray:
    """uint8 BGR grid: per sample the image above its labelled overlay (or the image alone)."""
    tiles = []
    for s in samples:
        scale = tile_width / s.image.shape[1]
        size = (tile_width, int(round(s.image.shape[0] * scale)))
        img = cv2.resize(s.image, size, interpolation=cv2.INTER_AREA)
        if with_labels:
            lab = cv2.resize(draw_labels(s, seg_classes, det_classes), size, interpolation=cv2.INTER_AREA)
            img = np.vstack([img, lab, np.zeros((4, tile_width, 3), np.uint8)])
        tiles.append(img)
    if not tiles:
        raise ValueError("montage needs at least one sample")
    h = max(t.shape[0] for t in tiles)
    tiles = [np.vstack([t, np.zeros((h - t.shape[0], tile_width, 3), np.uint8)]) for t in tiles]
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    return np.vstack(rows)
