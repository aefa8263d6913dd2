"""Lane-marking mask → lane lines on the ground, in metres, named by side: one frame, no state.

The flow, one function each::

    SegMap (input px) + Letterbox ─► lane_points_ground ─► find_lines ─► assign_sides

Lines are found on the ground plane (a bird's-eye view in metres), where parallel lines stay parallel:
the lane pixels are projected through the camera's ground homography, a histogram across the road seeds
one sliding window walk per line, the walk carries on through gaps (so a dashed line is one line), and a
robust quadratic y(x) = c0 + c1 x + c2 x^2 is fitted to the windows' medians (one value per window, so
the many near pixels do not outvote the few far ones). Vehicle frame: x forward, y left, metres.

The named lines go on to ``ego_lane.py`` (the ego lane measured and filtered over time) through
``lane_estimator.py``.
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass

import cv2
import numpy as np

from perception.camera_model import CameraModel
from perception.frames import Letterbox, SegMap

# A lane is 2.5 m (narrow urban) to 5 m (wide highway lane or lane + shoulder) wide.
MIN_LANE_WIDTH_M = 2.4
MAX_LANE_WIDTH_M = 5.5
# A road's lines run parallel: one that leaves the most confident line's heading by more than this (rad,
# about 6 deg) is paint of something else (a ramp, a crossing, a parked car's reflection) and takes no side.
# Its c0 is an extrapolation to the car from where it was seen and says nothing about the ego lane.
MAX_HEADING_SPREAD = 0.1


@dataclass(frozen=True)
class LaneSettings:
    """How lines are searched for on the ground plane (metres)."""

    near_m: float = 4.0  # closer paint is mostly hidden by the hood or too blurred to fit
    far_m: float = 60.0  # beyond this a mask pixel spans metres: too coarse to help the fit
    max_lateral_m: float = 12.0  # search across the road up to this far either side
    window_m: float = 2.0  # sliding window length along x
    max_gap_m: float = 16.0  # a dashed line's gaps (9 m on a 3/12 m pattern) and a few missed dashes
    min_span_m: float = 4.0  # shorter runs of paint are not lines (arrows, crossings, noise)
    min_windows: int = 2
    max_points: int = 20000  # lane pixels kept per frame (evenly subsampled beyond this)


@dataclass(frozen=True)
class LineFit:
    """One line found in one frame, before sides are assigned (vehicle frame, metres)."""

    coeffs: tuple[float, float, float]
    x_range_m: tuple[float, float]
    coverage: float  # fraction of the windows along the seen span that held paint
    residual_m: float  # robust spread of the window medians around the fit
    windows: int

    @property
    def style(self) -> str:
        span = self.x_range_m[1] - self.x_range_m[0]
        if span < 12.0:
            return "unknown"  # too short to see a dash pattern
        if self.coverage >= 0.75:
            return "solid"
        return "dashed" if self.coverage <= 0.6 else "unknown"

    @property
    def confidence(self) -> float:
        span = self.x_range_m[1] - self.x_range_m[0]
        return float(
            min(1.0, span / 30.0) * (0.5 + 0.5 * min(1.0, self.windows / 8.0)) * math.exp(-self.residual_m / 0.3)
        )

    def y_at(self, x: np.ndarray | float) -> np.ndarray:
        c0, c1, c2 = self.coeffs
        x = np.asarray(x, np.float64)
        return c0 + c1 * x + c2 * x * x


def _content_pixels_to_ground(
    rows: np.ndarray, cols: np.ndarray, letterbox: Letterbox, camera: CameraModel, undistort_points: bool
) -> np.ndarray:
    """Pixels (row, col) of the letterbox's content region → ground points float64 [N, 2] (x, y; NaN where
    the ray misses the ground ahead)."""
    rx, ry, _, _ = letterbox.roi_xywh
    # Input pixel centre → frame pixel centre (the inverse of the letterbox scale about pixel centres).
    u = (cols + 0.5) / letterbox.scale - 0.5 + rx
    v = (rows + 0.5) / letterbox.scale - 0.5 + ry
    return camera.image_to_ground(np.column_stack([u, v]), distorted=undistort_points)


class GroundGrid:
    """Ground position (x forward, y left; float64 [h, w] each, metres; NaN where the ray misses the ground
    ahead) of every image-content pixel of one letterbox geometry.

    A stream's camera and letterbox do not change, so the projection (and undistortion) of the lane pixels
    is done once for all pixels here, and each frame only gathers from it.
    """

    def __init__(self, letterbox: Letterbox, camera: CameraModel, undistort_points: bool):
        self.letterbox = letterbox
        ch, cw = letterbox.content_hw
        rows, cols = np.mgrid[0:ch, 0:cw]
        ground = _content_pixels_to_ground(rows.ravel(), cols.ravel(), letterbox, camera, undistort_points)
        self.x = ground[:, 0].reshape(ch, cw)
        self.y = ground[:, 1].reshape(ch, cw)


def lane_points_ground(
    seg: SegMap,
    letterbox: Letterbox,
    camera: CameraModel,
    lane_class: int,
    undistort_points: bool,
    settings: LaneSettings = LaneSettings(),
    grid: GroundGrid | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lane-class pixels → ground points (x forward, y left; float64 [N] each, metres).

    ``camera`` must be at frame resolution. ``undistort_points``: the frame still holds lens distortion
    (preprocessing did not undistort), so pixel positions are undistorted before the ground projection.
    ``grid``: the precomputed projection for this letterbox, camera and ``undistort_points`` (a stream
    reuses one); without it the lane pixels are projected here. Points outside [near_m, far_m] ahead or
    beyond max_lateral_m either side are dropped.
    """
    content = letterbox.crop_content(seg.class_ids)
    ys, xs = np.nonzero(content == lane_class)
    if len(xs) > settings.max_points:
        step = int(math.ceil(len(xs) / settings.max_points))
        ys, xs = ys[::step], xs[::step]
    if len(xs) == 0:
        return np.zeros(0), np.zeros(0)
    if grid is not None:
        if grid.letterbox != letterbox:
            raise ValueError(f"ground grid is for {grid.letterbox}, the frame has {letterbox}")
        x, y = grid.x[ys, xs], grid.y[ys, xs]
    else:
        ground = _content_pixels_to_ground(ys, xs, letterbox, camera, undistort_points)
        x, y = ground[:, 0], ground[:, 1]
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(x) & (x >= settings.near_m) & (x <= settings.far_m) & (np.abs(y) <= settings.max_lateral_m)
    return x[keep], y[keep]


def _seeds(x: np.ndarray, y: np.ndarray, settings: LaneSettings, priors: tuple[float, ...]) -> list[float]:
    """Lateral positions (m) where lines start: histogram peaks of the nearer points, plus prior lines."""
    near = x <= settings.near_m + 20.0
    bins = np.arange(-settings.max_lateral_m, settings.max_lateral_m + 0.1, 0.1)
    # Weighted by x^2: a line of paint covers ~1/x^2 as many pixels per metre far away as near, so raw
    # counts let a dense near solid line bury a dashed line whose nearest dash is far.
    hist, _ = np.histogram(y[near], bins=bins, weights=(x[near] / 10.0) ** 2)
    smooth = cv2.GaussianBlur(hist.astype(np.float32).reshape(1, -1), (0, 0), sigmaX=2.0).ravel()
    centres = (bins[:-1] + bins[1:]) / 2
    order = np.argsort(-smooth)
    floor = max(3.0, 0.05 * float(smooth.max(initial=0.0)))
    peaks: list[float] = []
    for i in order:
        if smooth[i] < floor:
            break
        if all(abs(centres[i] - p) > 1.5 for p in peaks):
            peaks.append(float(centres[i]))
        if len(peaks) >= 8:
            break
    for p in priors:
        if all(abs(p - q) > 0.8 for q in peaks):
            peaks.append(float(p))
    return peaks


def _fit(xw: np.ndarray, yw: np.ndarray, ww: np.ndarray, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted, robust (two rounds of outlier rejection) fit of y(x); quadratic from 8 m of span and 4 windows
    (a line fitted to a curve seen from 6 to 26 m misplaces it by ~0.25 m at the camera on a 300 m radius).

    Returns (coeffs [3] c0, c1, c2; inlier mask over the windows).
    """
    deg = 2 if (span >= 8.0 and len(xw) >= 4) else 1
    keep = np.ones(len(xw), bool)
    coeffs = np.zeros(3)
    for _ in range(3):
        a = np.column_stack([xw[keep] ** k for k in range(deg + 1)])
        w = np.sqrt(ww[keep])
        # A little ridge on the curvature term: a short or noisy run should not invent a bend.
        reg = np.zeros((deg + 1, deg + 1))
        if deg == 2:
            reg[2, 2] = 2e3
        sol = np.linalg.solve(a.T @ (a * w[:, None] ** 2) + reg, a.T @ (w**2 * yw[keep]))
        coeffs = np.zeros(3)
        coeffs[: deg + 1] = sol
        resid = np.abs(yw - (coeffs[0] + coeffs[1] * xw + coeffs[2] * xw**2))
        mad = max(0.1, 1.4826 * _median(resid[keep]))
        new_keep = resid <= 3.0 * mad
        if new_keep.sum() < 2 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return coeffs, keep


class _Windows:
    """Ground points bucketed into the walk's windows along x and sorted by y within each window.

    The points of window k within a lateral band are then two bisections, and their x and y sums two
    look-ups in running sums: a walk costs a few microseconds per window however many points there are.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, settings: LaneSettings):
        w = settings.window_m
        edges = np.arange(settings.near_m, settings.far_m + w, w)
        self.count = len(edges) - 1
        k = np.searchsorted(edges, x, side="right") - 1  # window k holds edges[k] <= x < edges[k + 1]
        ok = (k >= 0) & (k < self.count)
        k, x, y = k[ok], x[ok], y[ok]
        order = np.lexsort((y, k))
        k, x, y = k[order], x[order], y[order]
        self.bounds: list[int] = np.searchsorted(k, np.arange(self.count + 1)).tolist()
        self.y: list[float] = y.tolist()
        self.sum_x: list[float] = np.concatenate([[0.0], np.cumsum(x)]).tolist()
        self.sum_y: list[float] = np.concatenate([[0.0], np.cumsum(y)]).tolist()

    def band(self, k: int, y_lo: float, y_hi: float) -> tuple[int, float, float]:
        """(count, sum of x, sum of y) of window k's points with y_lo < y < y_hi."""
        a = bisect.bisect_right(self.y, y_lo, self.bounds[k], self.bounds[k + 1])
        b = bisect.bisect_left(self.y, y_hi, a, self.bounds[k + 1])
        return b - a, self.sum_x[b] - self.sum_x[a], self.sum_y[b] - self.sum_y[a]


def _walk(windows: _Windows, seed: float, settings: LaneSettings) -> LineFit | None:
    """Follow one line forward from lateral position ``seed`` with sliding windows; None if too short."""
    w = settings.window_m
    xs: list[float] = []
    ys: list[float] = []
    ns: list[int] = []
    c0, c1, c2 = seed, 0.0, 0.0
    sums = _Sums()
    last_x = None
    for k in range(windows.count):
        x0 = settings.near_m + k * w
        xm = x0 + w / 2
        centre = c0 + c1 * xm + c2 * xm * xm
        tol = 0.45 + 0.015 * x0  # the mask blurs and the projection stretches with distance
        n, sum_x, sum_y = windows.band(k, centre - tol, centre + tol)
        if n >= 3:
            # Means, not medians: the tolerance band already excludes other lines.
            xs.append(sum_x / n)
            ys.append(sum_y / n)
            ns.append(n)
            sums.add(xs[-1], ys[-1])
            last_x = x0
            if len(xs) >= 2 and (len(xs) <= 6 or len(xs) % 3 == 0):  # a settled line needs fewer refits
                c0, c1, c2 = sums.fit(xs[-1] - xs[0])
        elif last_x is not None and x0 - last_x > settings.max_gap_m:
            break
    if len(xs) < settings.min_windows:
        return None
    xw, yw, nw = np.array(xs), np.array(ys), np.array(ns, float)
    span = float(xw[-1] - xw[0])
    if span < settings.min_span_m:
        return None
    coeffs, keep = _fit(xw, yw, np.sqrt(nw), span)
    if keep.sum() < settings.min_windows:
        return None
    resid = np.abs(yw - (coeffs[0] + coeffs[1] * xw + coeffs[2] * xw**2))[keep]
    lo_x, hi_x = float(xw[keep].min()), float(xw[keep].max())
    n_windows_span = max(1, int(round((min(hi_x, 40.0) - lo_x) / w)) + 1)
    in_span = int(np.sum(xw[keep] <= min(hi_x, 40.0)))
    return LineFit(
        coeffs=(float(coeffs[0]), float(coeffs[1]), float(coeffs[2])),
        x_range_m=(lo_x, hi_x),
        coverage=min(1.0, in_span / n_windows_span),
        residual_m=1.4826 * _median(resid) if len(resid) else 0.0,
        windows=int(keep.sum()),
    )


class _Sums:
    """Running power sums of the walk's window centres, for the least-squares fit that steers the walk.

    Plain floats and normal equations (Cramer's rule): the fit is redone for most windows of every walk,
    where numpy's per-call overhead would be most of the cost.
    """

    RIDGE = 2e3  # on c2, as in _fit: a short run should not invent a bend

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sxx = self.sx3 = self.sx4 = 0.0
        self.sy = self.sxy = self.sx2y = 0.0

    def add(self, x: float, y: float) -> None:
        xx = x * x
        self.n += 1
        self.sx += x
        self.sxx += xx
        self.sx3 += xx * x
        self.sx4 += xx * xx
        self.sy += y
        self.sxy += x * y
        self.sx2y += xx * y

    def fit(self, span: float) -> tuple[float, float, float]:
        """(c0, c1, c2) of y = c0 + c1 x + c2 x^2: a line, or a (ridged) quadratic over 8 m and 4 points."""
        n = self.n
        if not (span >= 8.0 and n >= 4):
            xm, ym = self.sx / n, self.sy / n
            var = self.sxx - n * xm * xm
            slope = (self.sxy - n * xm * ym) / var if var > 1e-9 else 0.0
            return ym - slope * xm, slope, 0.0
        eps = 1e-9
        a = (
            (n + eps, self.sx, self.sxx),
            (self.sx, self.sxx + eps, self.sx3),
            (self.sxx, self.sx3, self.sx4 + self.RIDGE + eps),
        )
        b = (self.sy, self.sxy, self.sx2y)
        d = _det3(a)
        if abs(d) < 1e-12:
            return self.sy / n, 0.0, 0.0
        cols = [tuple(tuple(b[r] if c == col else a[r][c] for c in range(3)) for r in range(3)) for col in range(3)]
        c0, c1, c2 = (_det3(m) / d for m in cols)
        return c0, c1, c2


def _det3(m: tuple) -> float:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )


def _median(values: np.ndarray) -> float:
    """np.median for the few values of one walk (a tenth of numpy's overhead on a dozen numbers)."""
    return float(statistics.median(values.tolist()))


def find_lines(
    x: np.ndarray, y: np.ndarray, settings: LaneSettings = LaneSettings(), priors: tuple[float, ...] = ()
) -> list[LineFit]:
    """Ground points (m) → distinct lines, sorted left to right by c0 (the left-most first).

    ``priors``: lateral positions of lines known from the previous frame, tried as extra seeds (a line
    whose near part is hidden this frame is still found). Two walks that end on the same paint keep the
    more confident one.
    """
    if len(x) < 10:
        return []
    windows = _Windows(x, y, settings)
    fits = [f for f in (_walk(windows, s, settings) for s in _seeds(x, y, settings, priors)) if f is not None]
    fits.sort(key=lambda f: -f.confidence)
    kept: list[LineFit] = []
    probe = np.linspace(settings.near_m, 30.0, 8)
    for f in fits:
        if all(np.median(np.abs(f.y_at(probe) - k.y_at(probe))) > 1.0 for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: -f.coeffs[0])


def assign_sides(fits: list[LineFit], ego_width_hint_m: float | None = None) -> dict[str, LineFit]:
    """Name lines relative to the ego lane: ego_left / ego_right (the nearest either side of the camera)
    and next_left / next_right (one plausible lane width further out); everything else is "other".

    Returns {side: fit} for the named ones; a line counts as ego_left only if it is within a lane width
    of the camera (an empty neighbouring lane is not the ego lane), and no line is named whose heading
    leaves the most confident line's by more than ``MAX_HEADING_SPREAD``.
    """
    if fits:
        heading = max(fits, key=lambda f: f.confidence).coeffs[1]
        fits = [f for f in fits if abs(f.coeffs[1] - heading) <= MAX_HEADING_SPREAD]
    lefts = sorted((f for f in fits if f.coeffs[0] > 0), key=lambda f: f.coeffs[0])
    rights = sorted((f for f in fits if f.coeffs[0] <= 0), key=lambda f: -f.coeffs[0])
    # A lane width (plus fitting slack), not less: a camera near one line sees the other one almost a full
    # width away, and that pair is what tells a lane change apart from a misread line.
    reach = MAX_LANE_WIDTH_M if ego_width_hint_m is None else min(MAX_LANE_WIDTH_M, ego_width_hint_m + 0.3)
    out: dict[str, LineFit] = {}
    if lefts and lefts[0].coeffs[0] < reach:
        out["ego_left"] = lefts[0]
    if rights and -rights[0].coeffs[0] < reach:
        out["ego_right"] = rights[0]
    if "ego_left" in out and "ego_right" in out:
        width = out["ego_left"].coeffs[0] - out["ego_right"].coeffs[0]
        if width < MIN_LANE_WIDTH_M:
            # Two lines too close (a double line split in two, a stray blob): keep the more confident.
            weaker = min(("ego_left", "ego_right"), key=lambda s: out[s].confidence)
            del out[weaker]
        elif width > (MAX_LANE_WIDTH_M + 0.5 if ego_width_hint_m is not None else MAX_LANE_WIDTH_M):
            # Too far apart: an ego line was missed and the next lane's line stands in for it. The nearer
            # line is the ego line. Without a held lane the limit is strict, so a first frame cannot start
            # the filter on a two-lane-wide "lane" that it would then hold.
            further = max(("ego_left", "ego_right"), key=lambda s: abs(out[s].coeffs[0]))
            del out[further]
    lone = [s for s in ("ego_left", "ego_right") if s in out]
    if len(lone) == 1 and abs(out[lone[0]].coeffs[0]) > (ego_width_hint_m or 3.5) + 0.3:
        # One line, further than a lane width (the one measure_ego_lane would assume): the camera would lie
        # outside the lane it bounds; it is the next lane's line with the ego line unseen.
        del out[lone[0]]
    for side, group in (("next_left", lefts), ("next_right", rights)):
        ego = out.get("ego_" + side[5:])
        if ego is None:
            continue
        for f in group:
            gap = abs(f.coeffs[0] - ego.coeffs[0])
            if MIN_LANE_WIDTH_M <= gap <= MAX_LANE_WIDTH_M:
                out[side] = f
                break
    return out
