"""Synthetic road geometry for the lane and fusion tests: a camera built in code, lane masks rendered by
projecting known ground lines, and boxes made by projecting known 3-D boxes.

Vehicle frame (ISO 8855): x forward, y left, z up, metres, origin on the ground below the camera.
Masks are uint8 class ids: 0 background, 1 drivable, 2 lane paint.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from perception.camera_model import CameraModel, Mounting
from perception.frames import Letterbox, SegMap

SEG_CLASSES = ("background", "drivable", "lane")
DET_CLASSES = ("car", "pedestrian", "cyclist", "traffic_sign")
DRIVABLE, LANE = 1, 2
PAINT_WIDTH_M = 0.15
SUBPIXEL_BITS = 4  # cv2.fillPoly ``shift``: vertices at 1/16 pixel


def make_camera(width: int = 640, height: int = 360, pitch_deg: float = 2.0, height_m: float = 1.4) -> CameraModel:
    """640x360, fx = fy = 500, principal point at the image centre, 1.4 m up, pitched 2 deg down."""
    s = width / 640
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return CameraModel(
        image_size=(width, height),
        camera_matrix=((500.0 * s, 0.0, cx), (0.0, 500.0 * s, cy), (0.0, 0.0, 1.0)),
        name="test_cam",
        mounting=Mounting(height_m=height_m, pitch_deg=pitch_deg),
    )


def identity_letterbox(h: int, w: int) -> Letterbox:
    return Letterbox((h, w), (h, w), (0, 0, w, h), 1.0, 0, 0)


def to_input_pixels(uv: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Frame pixels [N, 2] → input pixels [N, 2] (the letterbox maps pixel centres: scale about -0.5)."""
    rx, ry, _, _ = letterbox.roi_xywh
    out = np.empty_like(uv, dtype=np.float64)
    out[:, 0] = (uv[:, 0] - rx + 0.5) * letterbox.scale - 0.5 + letterbox.pad_x
    out[:, 1] = (uv[:, 1] - ry + 0.5) * letterbox.scale - 0.5 + letterbox.pad_y
    return out


def _fill_ground_polygon(
    mask: np.ndarray, camera: CameraModel, ground_xy: np.ndarray, value: int, letterbox: Letterbox | None
) -> None:
    """Fill a polygon given by ground points [K, 2] (x, y metres, all ahead of the camera) into ``mask``."""
    pts = np.column_stack([ground_xy, np.zeros(len(ground_xy))])
    uv, depth = camera.project(pts)
    assert np.all(depth > 0), "polygon reaches behind the camera"
    if letterbox is not None:
        uv = to_input_pixels(uv, letterbox)
    # fillPoly puts a vertex at integer coordinate k on the centre of pixel k, as the camera does.
    poly = np.round(uv * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(mask, [poly], value, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)


def render_road(
    camera: CameraModel,
    lines: Sequence[tuple[float, float, float]],
    dashed: Sequence[bool] | None = None,
    x_range_m: tuple[float, float] = (4.0, 60.0),
    letterbox: Letterbox | None = None,
    dash_m: tuple[float, float] = (3.0, 9.0),
    dash_phase_m: float = 0.0,
    drivable_m: float = 9.0,
) -> np.ndarray:
    """uint8 [H, W] class-id mask: drivable road (|y - centre line| < drivable_m), lane lines painted on it.

    Args:
        lines: (c0, c1, c2) of y(x) = c0 + c1 x + c2 x^2 (m) per painted line.
        dashed: per line, paint ``dash_m[0]`` m then leave ``dash_m[1]`` m (a dash starts at x =
            x_range_m[0] - dash_phase_m); solid by default.
        letterbox: render at the letterbox's input size through its mapping (None: at camera resolution).
    """
    w, h = camera.image_size
    shape = (h, w) if letterbox is None else tuple(letterbox.input_size)
    mask = np.zeros(shape, np.uint8)
    x = np.arange(x_range_m[0], 200.0 + 1e-9, 0.5)
    mid = np.mean([c[0] for c in lines]) if lines else 0.0
    if lines:
        c = lines[0]
        centre = mid + c[1] * x + c[2] * x * x
    else:
        centre = np.zeros_like(x)
    road = np.concatenate([np.column_stack([x, centre + drivable_m]), np.column_stack([x, centre - drivable_m])[::-1]])
    _fill_ground_polygon(mask, camera, road, DRIVABLE, letterbox)
    dashed = dashed if dashed is not None else [False] * len(lines)
    for (c0, c1, c2), is_dashed in zip(lines, dashed, strict=True):
        period = dash_m[0] + dash_m[1] if is_dashed else None
        if period is None:
            spans = [(x_range_m[0], x_range_m[1])]
        else:
            starts = np.arange(x_range_m[0] - dash_phase_m, x_range_m[1], period)
            spans = [(max(s, x_range_m[0]), min(s + dash_m[0], x_range_m[1])) for s in starts]
        for s, e in spans:
            if e - s < 0.1:
                continue
            xs = np.linspace(s, e, max(2, int((e - s) / 0.25) + 1))
            y = c0 + c1 * xs + c2 * xs * xs
            half = PAINT_WIDTH_M / 2 * np.sqrt(1 + (c1 + 2 * c2 * xs) ** 2)  # across the line, not along y
            poly = np.concatenate([np.column_stack([xs, y + half]), np.column_stack([xs, y - half])[::-1]])
            _fill_ground_polygon(mask, camera, poly, LANE, letterbox)
    return mask


def lane_lines(
    offset_m: float,
    width_m: float = 3.5,
    n_left: int = 0,
    n_right: int = 0,
    heading_rad: float = 0.0,
    curvature_1pm: float = 0.0,
) -> list[tuple[float, float, float]]:
    """Lines of a road of equal lanes, the camera ``offset_m`` left of its lane's centre.

    Returns (c0, c1, c2) per line, ego lines plus ``n_left`` / ``n_right`` more lanes either side,
    left-most first. ``heading_rad``: the vehicle's heading relative to the road (left positive), so the
    lines turn right in the vehicle frame (c1 = -tan(heading)). Curved lines are concentric to first order.
    """
    c1 = -np.tan(heading_rad)
    c2 = curvature_1pm / 2 * (1 + c1 * c1) ** 1.5
    scale = np.sqrt(1 + c1 * c1)  # lateral spacing along y of lines width_m apart across the road
    out = []
    for k in range(n_left + 1, -n_right - 1, -1):
        c0 = (-offset_m + (k - 0.5) * width_m) * scale
        out.append((float(c0), float(c1), float(c2)))
    return out


def seg_map(mask: np.ndarray) -> SegMap:
    return SegMap(mask, SEG_CLASSES)


def project_box(camera: CameraModel, x_m: float, y_m: float, width_m: float = 1.8, height_m: float = 1.5) -> np.ndarray:
    """Image box float32 [4] x1, y1, x2, y2 (frame pixels) of an upright rectangle facing the camera at
    ``x_m`` ahead, centred ``y_m`` left, standing on the ground. Boxes have pixel edges at integers (as
    detectors and labels give them); the camera has pixel centres there: hence the half pixel."""
    corners = np.array([[x_m, y_m + sy * width_m / 2, z] for sy in (-1.0, 1.0) for z in (0.0, height_m)], np.float64)
    uv, depth = camera.project(corners)
    assert np.all(depth > 0)
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()], np.float32) + np.float32(0.5)
