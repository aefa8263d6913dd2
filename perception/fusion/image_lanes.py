"""Lane lines in image space: the lane-paint mask → lines x(y) in frame pixels, ordered and named, with no
camera at all.

This is what a run without a camera (or one still calibrating itself) reports as lanes, what the online
self-calibration measures the vanishing point from, and what the TuSimple lane metric scores.

Per frame: Hough segments of the paint mask (near-horizontal ones dropped: stop lines, crossings) are
grouped into straight candidates (segments agreeing where they are seen); each candidate is refitted to the
paint pixels near it as x = c0 + c1 y + c2 y^2, twice, the band following the curve, so a bending line is
followed past where its straight start would leave it. Lines are named by where they cross the bottom row:
the nearest on either side of the image centre are the ego lane's, the next ones out the neighbours'. The
reported polyline runs beyond the seen paint as far as the road under it goes (``RoadExtent``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from perception.frames import LANE_SIDES, Lane, Letterbox, SegMap
from perception.fusion.vanishing_point import LaneLine, intersect

# Segments flatter than this (|dy| / |dx|) are crossing paint (stop lines, zebra stripes), not lane lines.
MIN_STEEPNESS = 0.12
# Paint pixels within this fraction of the frame width of a line belong to it (a line's painted width plus
# the network's blur at the near end).
BAND_FRACTION = 0.02
# Two lines closer than this fraction of the width over their common rows are one line found twice.
SAME_LINE_FRACTION = 0.03
# Fewer paint pixels than this behind a line (after the refit) and it is noise.
MIN_LINE_PIXELS = 25
ROW_STEP_PX = 10  # rows of points_px: every 10th frame row (TuSimple's spacing)


@dataclass(frozen=True)
class ImageLine:
    """One lane line found in one frame, in frame pixels: x = c0 + c1 y + c2 y^2 (y down).

    Attributes:
        coeffs: (c0, c1, c2).
        y_range: (top, bottom) rows over which paint was found.
        coverage: fraction of the rows in ``y_range`` with paint on the line (dashes leave gaps).
        residual_px: median distance of the paint pixels from the fit.
        confidence: 0..1, from the rows seen (against the frame height), coverage and residual.
        painted_rows: int64 [R] frame rows where the line holds paint (the dash pattern).
    """

    coeffs: tuple[float, float, float]
    y_range: tuple[float, float]
    coverage: float
    residual_px: float
    confidence: float
    painted_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), compare=False)

    def x_at(self, y: np.ndarray | float) -> np.ndarray:
        c0, c1, c2 = self.coeffs
        y = np.asarray(y, np.float64)
        return c0 + c1 * y + c2 * y * y

    @property
    def style(self) -> str:
        top, bottom = self.y_range
        if bottom - top < 40:
            return "unknown"  # too short to see a dash pattern
        if self.coverage >= 0.8:
            return "solid"
        return "dashed" if self.coverage <= 0.65 else "unknown"

    def straight_part(self, rows: float = 0.6) -> tuple[float, float]:
        """(slope dx/dy, x at y = 0) of the chord over the nearest ``rows`` fraction of the seen rows: the
        straight line a curve's near part follows (what the vanishing point is measured from)."""
        top, bottom = self.y_range
        y0 = bottom - rows * (bottom - top)
        x0, x1 = (float(v) for v in self.x_at([y0, bottom]))
        slope = (x1 - x0) / max(bottom - y0, 1e-9)
        return slope, x1 - slope * bottom

    def bend_px(self) -> float:
        """How far (px) the fitted curve leaves its chord between the ends of the seen rows."""
        top, bottom = self.y_range
        return abs(self.coeffs[2]) * (bottom - top) ** 2 / 4


def _segments(mask: np.ndarray, letterbox: Letterbox, min_steepness: float, max_flatness: float) -> np.ndarray:
    """Hough segments of a content-region mask, float64 [N, 4] x1, y1, x2, y2 in frame pixels, with
    |dy| / |dx| above ``min_steepness`` and |dx| / |dy| above ``max_flatness`` (0: vertical allowed)."""
    h = mask.shape[0]
    segs = cv2.HoughLinesP(
        mask, 1, np.pi / 180, threshold=max(10, h // 30), minLineLength=max(8, h // 25), maxLineGap=max(4, h // 25)
    )
    if segs is None:
        return np.zeros((0, 4))
    segs = segs.reshape(-1, 4).astype(np.float64)
    dx, dy = np.abs(segs[:, 2] - segs[:, 0]), np.abs(segs[:, 3] - segs[:, 1])
    segs = segs[(dy > min_steepness * dx) & (dx >= max_flatness * dy)]
    rx, ry, _, _ = letterbox.roi_xywh
    segs[:, [0, 2]] = (segs[:, [0, 2]] + 0.5) / letterbox.scale - 0.5 + rx
    segs[:, [1, 3]] = (segs[:, [1, 3]] + 0.5) / letterbox.scale - 0.5 + ry
    return segs


def _group(segs: np.ndarray, tol: float) -> list[np.ndarray]:
    """Segments → groups that lie on one straight line where they are seen, the best supported first."""
    groups = []
    left = segs
    while len(left):
        x1, y1, x2, y2 = left.T
        length = np.hypot(x2 - x1, y2 - y1)
        slope = (x2 - x1) / np.where(np.abs(y2 - y1) < 1e-9, 1e-9, y2 - y1)
        # candidate line i predicts segment j's two end points
        pred1 = slope[:, None] * y1[None, :] + (x1 - slope * y1)[:, None]
        pred2 = slope[:, None] * y2[None, :] + (x1 - slope * y1)[:, None]
        close = (np.abs(pred1 - x1[None, :]) < tol) & (np.abs(pred2 - x2[None, :]) < tol)
        support = close @ length
        members = close[int(np.argmax(support))]
        groups.append(left[members])
        left = left[~members]
    return groups


def _fit(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Least squares x(y) → (c0, c1, c2)."""
    coeffs = np.polynomial.polynomial.polyfit(y, x, degree)
    return np.pad(coeffs, (0, 3 - len(coeffs)))


def _refit(
    px: np.ndarray, py: np.ndarray, coeffs: np.ndarray, band: float, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Paint pixels within ``band`` of the curve, and the curve refitted to them (quadratic when they span
    enough rows to bend, else straight)."""
    near = np.abs(px - (coeffs[0] + coeffs[1] * py + coeffs[2] * py * py)) < band
    if near.sum() < MIN_LINE_PIXELS:
        return near, coeffs
    ys = py[near]
    degree = 2 if ys.max() - ys.min() > 0.25 * height else 1
    return near, _fit(px[near], ys, degree)


def find_image_lines(seg: SegMap, letterbox: Letterbox, lane_class: int) -> list[ImageLine]:
    """The frame's lane lines in frame pixels, left to right by where they meet the bottom row."""
    mask = (letterbox.crop_content(seg.class_ids) == lane_class).astype(np.uint8) * 255
    return lines_in_mask(mask, letterbox, min_steepness=MIN_STEEPNESS, max_flatness=0.0)


def road_in_content(seg: SegMap, letterbox: Letterbox, road_classes: np.ndarray) -> np.ndarray:
    """bool [h, w]: the road classes over the letterbox's content region (input pixels, padding cut)."""
    return np.isin(letterbox.crop_content(seg.class_ids), road_classes)


def boxes_in_content(letterbox: Letterbox, boxes_xyxy: np.ndarray) -> np.ndarray:
    """float32 [N, 4]: boxes in frame pixels → pixels of the letterbox's content region (``crop_content``)."""
    return letterbox.boxes_to_input(boxes_xyxy) - np.array([letterbox.pad_x, letterbox.pad_y] * 2, np.float32)


def find_road_edges(
    seg: SegMap, letterbox: Letterbox, road_classes: np.ndarray, objects_xyxy: np.ndarray | None = None
) -> list[ImageLine]:
    """The road's left and right borders as lines (where drivable meets the rest), for the vanishing point
    on roads without edge paint. Left out: the outlines of objects on the road (``objects_xyxy``, frame
    pixels), edges that lean less than a road border seen from the road can (a car's side is near
    vertical, its bottom near horizontal), the frame's own border, and lines that do not come down into
    the bottom quarter of the frame (a road border runs towards the car)."""
    road = road_in_content(seg, letterbox, road_classes).astype(np.uint8)
    border = cv2.morphologyEx(road, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    border[:, :2] = border[:, -2:] = 0
    border[-2:] = 0
    if objects_xyxy is not None and len(objects_xyxy):
        ch, cw = border.shape
        for x1, y1, x2, y2 in boxes_in_content(letterbox, objects_xyxy):
            m = 0.1 * (x2 - x1) + 2  # the road's edge beside a car's wheels is the car's, too
            border[max(0, int(y1 - m)) : max(0, int(y2 + m)), max(0, int(x1 - m)) : max(0, int(x2 + m))] = 0
    fh = letterbox.frame_size[0]
    lines = lines_in_mask(border * 255, letterbox, min_steepness=0.3, max_flatness=0.2)
    return [ln for ln in lines if ln.y_range[1] >= 0.75 * fh]


def lines_in_mask(mask: np.ndarray, letterbox: Letterbox, min_steepness: float, max_flatness: float) -> list[ImageLine]:
    """Lines x(y) through a uint8 content-region mask (255 on), in frame pixels, left to right at the
    bottom row."""
    fh, fw = letterbox.frame_size
    ys, xs = np.nonzero(mask)
    if len(xs) < MIN_LINE_PIXELS:
        return []
    rx, ry, _, _ = letterbox.roi_xywh
    px, py = (xs + 0.5) / letterbox.scale - 0.5 + rx, (ys + 0.5) / letterbox.scale - 0.5 + ry
    band = max(2.0, BAND_FRACTION * fw)
    lines: list[ImageLine] = []
    for group in _group(_segments(mask, letterbox, min_steepness, max_flatness), band):
        x = np.concatenate([group[:, 0], group[:, 2]])
        y = np.concatenate([group[:, 1], group[:, 3]])
        coeffs = _fit(x, y, 1)
        for _ in range(3):
            near, coeffs = _refit(px, py, coeffs, band, fh)
        if near.sum() < MIN_LINE_PIXELS:
            continue
        line = _describe(px[near], py[near], coeffs, fh)
        if line is not None:
            lines.append(line)
    lines = _drop_duplicates(lines, SAME_LINE_FRACTION * fw)
    return sorted(lines, key=lambda ln: float(ln.x_at(fh - 1)))


def _describe(x: np.ndarray, y: np.ndarray, coeffs: np.ndarray, height: int) -> ImageLine | None:
    top, bottom = float(y.min()), float(y.max())
    if bottom - top < 0.04 * height:
        return None
    residual = float(np.median(np.abs(x - (coeffs[0] + coeffs[1] * y + coeffs[2] * y * y))))
    step = max(1.0, height / 180)  # rows counted in bins about as tall as a network-input pixel
    bins = np.unique(((y - top) / step).astype(np.int64))
    coverage = min(1.0, len(bins) / max(1.0, (bottom - top) / step + 1))
    span = min(1.0, (bottom - top) / (0.35 * height))
    confidence = span * (0.5 + 0.5 * coverage) * math.exp(-residual / (0.01 * height))
    rows = np.unique(np.round(y).astype(np.int64))
    return ImageLine(tuple(float(c) for c in coeffs), (top, bottom), coverage, residual, float(confidence), rows)


def _drop_duplicates(lines: list[ImageLine], tol: float) -> list[ImageLine]:
    kept: list[ImageLine] = []
    for ln in sorted(lines, key=lambda ln: -ln.confidence):
        lo_hi = [(max(ln.y_range[0], k.y_range[0]), min(ln.y_range[1], k.y_range[1])) for k in kept]
        same = False
        for k, (lo, hi) in zip(kept, lo_hi, strict=True):
            rows = np.linspace(lo, hi, 8) if hi > lo else np.array(ln.y_range)
            if np.median(np.abs(ln.x_at(rows) - k.x_at(rows))) < tol:
                same = True
                break
        if not same:
            kept.append(ln)
    return kept


def name_image_lines(lines: list[ImageLine], frame_size: tuple[int, int], centre_x: float | None = None) -> list[str]:
    """Side of each line (``lines`` sorted left to right at the bottom row): the nearest left / right of
    ``centre_x`` (where the ego vehicle's centre meets the bottom row; default the image centre) are the
    ego lane's, the next ones out the neighbours', the rest "other"."""
    h, w = frame_size
    cx = w / 2 if centre_x is None else centre_x
    at_bottom = [float(ln.x_at(h - 1)) for ln in lines]
    lefts = [i for i, x in enumerate(at_bottom) if x < cx][::-1]
    rights = [i for i, x in enumerate(at_bottom) if x >= cx]
    sides = ["other"] * len(lines)
    for group, names in ((lefts, ("ego_left", "next_left")), (rights, ("ego_right", "next_right"))):
        for i, name in zip(group, names, strict=False):
            sides[i] = name
    return sides


# A line is drawn up to this fraction of the frame height below the lane lines' crossing (the horizon of
# the road): paint far ahead is too thin for the network, but the line goes on towards that point.
HORIZON_MARGIN = 0.02


def vanishing_row(lines: list[ImageLine], sides: list[str]) -> float | None:
    """Row where the ego lane's two lines (their near chords) cross, or None without both."""
    named = dict(zip(sides, lines, strict=True))
    left, right = named.get("ego_left"), named.get("ego_right")
    if left is None or right is None:
        return None
    lc, rc = LaneLine(*left.straight_part()), LaneLine(*right.straight_part())
    if not lc.slope < 0 < rc.slope:
        return None
    _, y = intersect(lc, rc)
    return y if y < min(left.y_range[0], right.y_range[0]) else None


def polyline_px(line: ImageLine, frame_size: tuple[int, int], rows: tuple[float, float]) -> np.ndarray:
    """float32 [K, 2] (x, y): the line sampled every ``ROW_STEP_PX`` rows (rows that are multiples of it)
    between ``rows`` (top, bottom), kept where it is inside the frame (``frame_size`` (H, W))."""
    w = frame_size[1]
    top = math.ceil(rows[0] / ROW_STEP_PX) * ROW_STEP_PX
    ys = np.arange(top, rows[1] + 1e-9, ROW_STEP_PX, dtype=np.float64)
    xs = line.x_at(ys)
    inside = (xs >= 0) & (xs <= w - 1)
    return np.column_stack([xs[inside], ys[inside]]).astype(np.float32)


# A continued line samples the road mask this many input pixels either side of it (its paint, or the road
# beside a line at the road's border) and may cross this many rows off the road (a hole in the mask).
ROAD_WINDOW_PX = 3
ROAD_GAP_STEPS = 1


class RoadExtent:
    """How far each line runs over the road, beyond the rows where its paint was seen: up towards the
    horizon and down towards the car, while the continued line lies on road, paint or an object standing on
    the road (a car hides the paint, not the line). It stops where the road ends: at the horizon, at the
    verge, at the car's own bonnet. The ego lines' crossing, when seen, caps it from above."""

    def __init__(
        self,
        seg: SegMap,
        letterbox: Letterbox,
        road_classes: np.ndarray,
        objects_xyxy: np.ndarray | None = None,
    ):
        self.letterbox = letterbox
        road = road_in_content(seg, letterbox, road_classes)
        if objects_xyxy is not None and len(objects_xyxy):
            for x1, y1, x2, y2 in boxes_in_content(letterbox, objects_xyxy):
                road[max(0, int(y1)) : max(0, int(math.ceil(y2))), max(0, int(x1)) : max(0, int(math.ceil(x2)))] = True
        # a row's road pixels within the window of a column, as one lookup: a horizontal dilation
        k = 2 * ROAD_WINDOW_PX + 1
        self.near_road = cv2.dilate(road.astype(np.uint8), np.ones((1, k), np.uint8)).astype(bool)

    def _on_road(self, x: float, y: float) -> bool | None:
        """Whether frame pixel (x, y) is within the window of the road; None outside the network's view."""
        lb = self.letterbox
        rx, ry, _, _ = lb.roi_xywh
        xi = int(math.floor((x - rx + 0.5) * lb.scale))
        yi = int(math.floor((y - ry + 0.5) * lb.scale))
        hh, ww = self.near_road.shape
        if not (0 <= xi < ww and 0 <= yi < hh):
            return None
        return bool(self.near_road[yi, xi])

    def _walk(self, line: ImageLine, start: float, step: float, stop: float) -> float:
        """The last row from ``start`` towards ``stop`` (by ``step``) that the line reaches over the road."""
        reached, misses = start, 0
        y = start + step
        while (y - stop) * step <= 0:
            on = self._on_road(float(line.x_at(y)), y)
            if on is None:
                break
            if on:
                reached, misses = y, 0
            else:
                misses += 1
                if misses > ROAD_GAP_STEPS:
                    break
            y += step
        return reached

    def rows(self, line: ImageLine, frame_size: tuple[int, int], horizon: float | None = None) -> tuple[float, float]:
        """(top, bottom) frame rows of ``line`` continued over the road."""
        h = frame_size[0]
        top_limit = max(0.0, horizon if horizon is not None else 0.0)
        top = self._walk(line, line.y_range[0], -ROW_STEP_PX, top_limit)  # already above the limit: stays
        bottom = self._walk(line, line.y_range[1], ROW_STEP_PX, h - 1)
        return top, bottom


def image_lanes(
    lines: list[ImageLine], sides: list[str], frame_size: tuple[int, int], road: RoadExtent | None = None
) -> list[Lane]:
    """Scene lanes without metres: side, style, confidence and the line in frame pixels. With ``road``, each
    line runs as far as the road under it goes (``RoadExtent``); without, it is continued down to the
    frame's bottom, and up to just below the road's horizon when the ego lines show where it is."""
    out = []
    order = {s: i for i, s in enumerate(LANE_SIDES)}
    horizon = vanishing_row(lines, sides)
    up_to = None if horizon is None else horizon + HORIZON_MARGIN * frame_size[0]
    for line, side in sorted(zip(lines, sides, strict=True), key=lambda p: order[p[1]]):
        if road is not None:
            rows = road.rows(line, frame_size, up_to)
        else:  # up to the horizon when known, down to the frame's bottom (the line continues towards the car)
            rows = (line.y_range[0] if up_to is None else min(line.y_range[0], up_to), frame_size[0] - 1)
        points = polyline_px(line, frame_size, rows)
        out.append(
            Lane(
                side=side,
                coeffs=None,
                x_range_m=None,
                style=line.style,
                confidence=line.confidence,
                points_image=points,
            )
        )
    return out
