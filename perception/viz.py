"""Overlay drawing on a copy of the frame: segmentation tint, then either the fused scene (ego-lane fill,
lane lines, tracked objects with id and distance, a HUD with offset and curvature, warnings) or, without
fusion, the raw labelled boxes."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from perception.frames import AutoCamera, FrameResult, Scene

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


def draw_scene(image: np.ndarray, result: FrameResult, alpha: float = 0.45) -> np.ndarray:
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
    thickness = max(1, round(min(image.shape[:2]) / 360))
    if result.scene is not None:
        _draw_scene_layer(out, result.scene, result.det_class_names, thickness)
        return out
    dets = result.detections
    for box, score, label in zip(dets.boxes_xyxy, dets.scores, dets.labels, strict=True):
        name = result.det_class_names[label]
        _labelled_box(out, box, f"{name} {score:.2f}", det_color(name, int(label)), thickness)
    return out


def _labelled_box(out: np.ndarray, box, text: str, color, thickness: int, bold: bool = False) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness * (2 if bold else 1), cv2.LINE_AA)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    ty = max(y1, th + base + 2)
    cv2.rectangle(out, (x1, ty - th - base - 2), (x1 + tw + 4, ty), color, -1)
    cv2.putText(out, text, (x1 + 2, ty - base - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


LANE_COLORS = {
    "ego_left": (0, 0, 255),
    "ego_right": (0, 0, 255),
    "next_left": (255, 200, 0),
    "next_right": (255, 200, 0),
}
EGO_FILL = (255, 120, 0)  # BGR
WARN_COLOR = (0, 0, 255)


def _draw_scene_layer(out: np.ndarray, scene: Scene, names: tuple[str, ...], thickness: int) -> None:
    lanes = {ln.side: ln for ln in scene.lanes}
    left, right = lanes.get("ego_left"), lanes.get("ego_right")
    if left is not None and right is not None and len(left.points_image) > 1 and len(right.points_image) > 1:
        # Fill the ego lane over the common forward range of its two lines.
        poly = np.concatenate([left.points_image, right.points_image[::-1]]).round().astype(np.int32)
        layer = out.copy()
        cv2.fillPoly(layer, [poly], EGO_FILL, cv2.LINE_AA)
        cv2.addWeighted(layer, 0.3, out, 0.7, 0.0, dst=out)
    for ln in scene.lanes:
        if len(ln.points_image) < 2:
            continue
        color = LANE_COLORS.get(ln.side, (200, 200, 200))
        width = thickness * (3 if ln.side.startswith("ego") else 2)
        pts = ln.points_image.round().astype(np.int32)
        if ln.style == "dashed":
            for a, b in zip(pts[:-1:2], pts[1::2], strict=False):
                cv2.line(out, tuple(int(v) for v in a), tuple(int(v) for v in b), color, width, cv2.LINE_AA)
        else:
            cv2.polylines(out, [pts], False, color, width, cv2.LINE_AA)
    for o in scene.objects:
        t = o.track
        name = names[t.label] if t.label < len(names) else str(t.label)
        text = f"{name} #{t.track_id}"
        if o.distance_m is not None:
            text += f" {o.distance_m:.0f}m" if o.distance_source == "ground" else f" ~{o.distance_m:.0f}m"
        if o.ttc_s is not None and o.ttc_s < 10:
            text += f" {o.ttc_s:.1f}s"
        color = WARN_COLOR if (o.in_path and "forward_collision" in scene.warnings) else det_color(name, t.label)
        _labelled_box(out, t.box_xyxy, text, color, thickness, bold=o.in_path)
    _hud(out, scene)


def hud_lines(scene: Scene) -> list[str]:
    """The HUD's text, top to bottom: the camera's state, the ego lane, then the warnings (upper case)."""
    ego = scene.ego_lane
    lines = []
    calibrating = isinstance(scene.camera, AutoCamera) and scene.camera.state == "calibrating"
    if scene.camera is None:
        lines.append("no camera: lanes in the image only, no distances")
    elif calibrating:
        lines.append(f"calibrating camera ({scene.camera.confidence:.0%}): no distances yet")
    if ego is None and scene.camera is not None and not calibrating:
        lines.append("ego lane: not found")
    elif ego is not None:
        side = "left" if ego.offset_m > 0 else "right"
        radius = (
            "straight" if ego.radius_m > 5000 else f"R {ego.radius_m:.0f} m {'L' if ego.curvature_1pm > 0 else 'R'}"
        )
        lines.append(f"offset {abs(ego.offset_m):.2f} m {side}  width {ego.width_m:.2f} m")
        lines.append(f"heading {np.degrees(ego.heading_error_rad):+.1f} deg  {radius}")
    if isinstance(scene.camera, AutoCamera) and not calibrating:
        lines.append("camera: estimated from the lanes")
    for w in scene.warnings:
        lines.append(w.replace("_", " ").upper())
    return lines


def _hud(out: np.ndarray, scene: Scene) -> None:
    y = 8
    for text in hud_lines(scene):
        warn = text.isupper()
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2 if warn else 1)
        cv2.rectangle(out, (6, y), (14 + tw, y + th + base + 6), WARN_COLOR if warn else (0, 0, 0), -1)
        cv2.putText(
            out, text, (10, y + th + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2 if warn else 1, cv2.LINE_AA
        )
        y += th + base + 10
