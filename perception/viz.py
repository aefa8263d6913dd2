"""Overlay drawing: segmentation tint and labelled boxes on a copy of the frame."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from perception.types import SceneResult

# BGR colours by segmentation class name; unknown names get a colour from SEG_FALLBACK.
SEG_COLORS = {"drivable": (80, 200, 60), "road": (80, 200, 60), "lane": (0, 215, 255)}
SEG_FALLBACK = [(255, 128, 0), (200, 0, 200), (0, 128, 255), (128, 128, 255)]
DET_COLORS = {
    "car": (255, 160, 30),
    "pedestrian": (60, 60, 255),
    "cyclist": (200, 60, 200),
    "traffic_sign": (0, 230, 230),
}
DET_FALLBACK = [(255, 255, 255), (0, 255, 128), (255, 0, 128)]


@functools.lru_cache(maxsize=16)
def seg_palette(class_names: tuple[str, ...]) -> np.ndarray:
    """uint8 [256, 1, 3] BGR colour per class id, a cv2.LUT table; class 0 (background) stays black.

    Built once per class list (every frame asks for it); read-only because the cache shares it.
    """
    palette = np.zeros((256, 1, 3), np.uint8)
    for i, name in enumerate(class_names[1:], start=1):
        palette[i, 0] = SEG_COLORS.get(name, SEG_FALLBACK[i % len(SEG_FALLBACK)])
    palette.flags.writeable = False
    return palette


def det_color(name: str, label: int) -> tuple[int, int, int]:
    return DET_COLORS.get(name, DET_FALLBACK[label % len(DET_FALLBACK)])


def draw_scene(image: np.ndarray, result: SceneResult, alpha: float = 0.45) -> np.ndarray:
    """uint8 [H, W, 3] BGR frame + result → new annotated uint8 [H, W, 3]; the input is not modified."""
    out = image.copy()
    if result.seg is not None:
        lb = result.letterbox
        x, y, w, h = lb.roi_xywh
        ids = result.seg.class_ids
        # Colour at model resolution with a LUT, then resize: numpy fancy indexing at frame size is ~10x slower.
        colors = lb.input_to_roi(cv2.LUT(cv2.cvtColor(ids, cv2.COLOR_GRAY2BGR), seg_palette(result.seg.class_names)))
        ids = lb.input_to_roi(ids)
        roi = out[y : y + h, x : x + w]
        blended = cv2.addWeighted(roi, 1.0 - alpha, colors, alpha, 0.0)
        cv2.copyTo(blended, (ids > 0).view(np.uint8), roi)
    dets = result.detections
    thickness = max(1, round(min(image.shape[:2]) / 360))
    for box, score, label in zip(dets.boxes_xyxy, dets.scores, dets.labels, strict=True):
        name = result.det_class_names[label]
        color = det_color(name, int(label))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + base + 2)
        cv2.rectangle(out, (x1, ty - th - base - 2), (x1 + tw + 4, ty), color, -1)
        cv2.putText(out, text, (x1 + 2, ty - base - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out
