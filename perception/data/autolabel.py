"""Lane-paint auto-labeller: white and yellow road paint inside a road mask, from the image alone.

Real frames without lane labels (CamVid merges paint into Road) can get lane supervision from this
labeller where it is precise enough; ``evaluate_autolabel`` measures that on synthetic frames whose paint
is known exactly. docs/autolabel.md has the method, the measured figures and the recommendation.

Method (no camera calibration: only the image and the road mask; numpy + OpenCV, vectorised):

1. Perspective scale. On flat ground a line ``w`` metres wide seen from a camera ``h`` metres up is
   ``(w / h) * (y - y_horizon)`` pixels wide (horizontally) at image row ``y``, whatever the focal length
   and wherever the line lies across the road. The horizon row comes from the road mask
   (``estimate_horizon``: the road's width per row falls linearly to zero there), so every row gets an
   expected paint width ``paint_to_height * (y - y_horizon)`` pixels: an approximate bird's-eye
   normalisation. All windows below scale with it.
2. Ridge test per row at that scale: the mean over a narrow centre window, and the pixel itself, must be
   brighter than the road on *both* sides (mean of the road pixels in a window left and right, beyond
   the expected paint width) by a contrast that adapts to the frame (absolute floor, a multiple of the
   road's noise sigma, a fraction of the asphalt's own brightness). Comparing with the asphalt next to
   the pixel, not a global threshold, keeps shadows out: a shadow edge is brighter on one side only.
   Where one side lies off the road (paint at the road's edge) the one road side must be beaten by
   ``edge_factor`` times the contrast and the pixel must also be brighter than most of the road at its
   row (a sunlit shoulder next to shadowed asphalt is not paint).
3. Colour of what the centre window adds to the asphalt: white paint adds to B, G and R alike; yellow
   paint adds to G and R, not B (a second ridge on (R + G) / 2 - B finds yellow lines that are barely
   brighter than the asphalt). Comparing colour differences, not absolute saturation, keeps the test
   working on dark, noisy or tinted frames.
4. Blobs: 8-connected components far wider than paint at their row (reflections, light patches, cars
   inside a wrong road mask), far thinner (rain streaks, cracks near the camera) or smaller than a
   square of paint width (specks of bright aggregate) are dropped.

Paint that runs across the road (stop lines, zebra stripes) is mostly missed: the ridge test is
horizontal. Arrows, bicycle symbols and box-junction lines are found where they are narrow enough.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import cv2
import numpy as np

from perception.data.sample import IGNORE, Sample

PAINT_CLASS = 2  # lane-marking id in the project's segmentation classes (SEG_CLASSES[2] == "lane")


def _luma(bgr) -> np.ndarray:
    """Luma (ITU-R 601) of B, G, R planes given as a sequence or a [3, ...] array."""
    b, g, r = bgr
    return 0.114 * b + 0.587 * g + 0.299 * r


def estimate_horizon(
    road_mask: np.ndarray, min_rows: int = 8, max_above_top: float = 0.1, min_component_fraction: float = 0.05
) -> float:
    """Image row of the horizon estimated from a road mask (no camera calibration).

    The road's horizontal width in pixels falls linearly with height and reaches zero at the horizon on
    flat ground. Only the road's large connected components are used. Rows whose road extent touches
    neither image side are fitted with a line (least squares, refitted twice without the rows beyond 2.5
    robust sigmas); the horizon is where the fitted width is zero, clamped to between
    ``max_above_top * H`` rows above the top road row and that row (a fit on a few rows of an odd-shaped
    mask can put it far too high). Falls back to the top road row when fewer than ``min_rows`` rows
    qualify or the fitted width does not grow downwards.

    Args:
        road_mask: bool [H, W], True on the road.
        min_rows: fewest usable rows for the line fit.
        max_above_top: the horizon lies at most this fraction of the image height above the top road row.
        min_component_fraction: road components smaller than this fraction of the largest one are left
            out (stray labelled pixels would otherwise set the top road row).

    Returns:
        float row (may be negative or above the top road row; equal to H when the mask is empty).
    """
    mask = np.asarray(road_mask, bool)
    h, w = mask.shape
    if not mask.any():
        return float(h)
    # Specks of "road" far from the road proper (label noise) must not set the top row.
    _, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    area = stats[1:, cv2.CC_STAT_AREA]
    big = np.concatenate([[False], area >= min_component_fraction * area.max()])
    mask = big[lab]
    rows = np.flatnonzero(mask.any(1))
    top = float(rows[0])
    m = mask[rows]
    left = m.argmax(1)
    right = w - 1 - m[:, ::-1].argmax(1)
    width = (right - left + 1).astype(np.float64)
    ok = (left > 0) & (right < w - 1) & (width >= 3)
    y, wd = rows[ok].astype(np.float64), width[ok]
    if len(y) < min_rows:
        return top
    keep = np.ones(len(y), bool)
    for _ in range(3):
        if keep.sum() < min_rows:
            return top
        a, b = np.polyfit(y[keep], wd[keep], 1)
        res = wd - (a * y + b)
        mad = np.median(np.abs(res[keep])) + 1e-6
        keep = np.abs(res) <= 2.5 * 1.4826 * mad + 1.0
    if a <= 1e-3:
        return top
    return float(np.clip(-b / a, top - max_above_top * h, top))


class _RowWindows:
    """Masked means of several channels over per-pixel row windows, from one set of row prefix sums.

    ``channels`` float32 [C, H, W]; only pixels where ``valid`` (bool [H, W]) is True count.
    ``mean(lo, hi)`` with int [H, W] bounds gives (means float32 [C, H, W], counts float32 [H, W]) over
    columns [lo, hi) of each pixel's own row, bounds clipped to the image; a window with no valid pixel
    has mean 0 and count 0.
    """

    def __init__(self, channels: np.ndarray, valid: np.ndarray):
        c, h, w = channels.shape
        data = np.zeros((c + 1, h, w + 1), np.float32)
        np.cumsum(channels * valid, axis=2, out=data[:c, :, 1:])
        np.cumsum(valid, axis=1, out=data[c, :, 1:])
        self.flat = data.reshape(c + 1, -1)
        self.h, self.w, self.c = h, w, c
        self.row0 = (np.arange(h, dtype=np.intp) * (w + 1))[:, None]

    def mean(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = (self.h, self.w)
        lo = (np.clip(lo, 0, self.w) + self.row0).reshape(-1)
        hi = (np.clip(hi, 0, self.w) + self.row0).reshape(-1)
        sums = [np.take(ch, hi) - np.take(ch, lo) for ch in self.flat]
        n = sums[-1].reshape(shape)
        inv = 1.0 / np.maximum(n, 1)
        return np.stack([v.reshape(shape) * inv for v in sums[:-1]]), n


def _noise_sigma(channel: np.ndarray, road: np.ndarray) -> float:
    """Robust noise level (grey levels) of a channel on the road: MAD of horizontal differences."""
    channel, road = channel[::2], road[::2]  # every other row is plenty, and twice as fast
    pair = road[:, 1:] & road[:, :-1]
    if pair.sum() < 50:
        return 0.0
    d = (channel[:, 1:] - channel[:, :-1])[pair]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def _row_road_level(channel: np.ndarray, road: np.ndarray, band: int, quantile: float) -> np.ndarray:
    """float32 [H, 1]: a quantile of the road pixels of ``channel`` within ``band`` rows of each row."""
    h = channel.shape[0]
    out = np.full((h, 1), np.inf, np.float32)
    for y0 in range(0, h, band):
        lo, hi = max(0, y0 - band // 2), min(h, y0 + band + band // 2)
        v = channel[lo:hi][road[lo:hi]]
        if len(v):
            out[y0 : y0 + band] = np.quantile(v, quantile)
    return out


def autolabel_lane_paint(
    image_bgr: np.ndarray,
    road_mask: np.ndarray,
    *,
    paint_to_height: float = 0.1,
    gap_factor: float = 1.0,
    min_width_px: float = 1.0,
    min_contrast: float = 10.0,
    noise_factor: float = 4.0,
    rel_contrast: float = 0.2,
    yellow_contrast: float = 10.0,
    white_ratio: float = 0.5,
    yellow_green_ratio: float = 0.5,
    yellow_blue_ratio: float = 0.5,
    min_side_fraction: float = 0.5,
    edge_factor: float = 1.5,
    edge_band_rows: int = 9,
    edge_quantile: float = 0.75,
    max_width_ratio: float = 4.0,
    min_width_ratio: float = 0.3,
    centre_fraction: float = 0.3,
    pixel_fraction: float = 1.0,
    min_area_px: int = 3,
    min_area_ratio: float = 1.0,
    horizon_y: float | None = None,
) -> np.ndarray:
    """Mask of white and yellow lane paint inside ``road_mask``.

    Defaults were chosen on synthetic frames of one seed (see docs/autolabel.md) and checked by eye on
    CamVid; contrasts are in grey levels of the 0..255 image.

    Args:
        image_bgr: uint8 [H, W, 3], BGR.
        road_mask: [H, W] bool (or any dtype, non-zero = road): drivable road *including* its paint, as
            CamVid's Road class or the project's drivable + lane classes. Nothing outside it is labelled.
        paint_to_height: expected paint width over camera height (0.15 m paint / 1.5 m camera = 0.1);
            the expected paint width at row y is ``max(min_width_px, paint_to_height * (y - horizon))``.
        gap_factor: the side windows start ``gap_factor`` expected widths (+1 px) from the pixel, so paint
            up to that wide still has asphalt on both sides; they are one expected width long.
        min_width_px: the expected paint width never drops below this (pixels), near the horizon.
        min_contrast: paint must exceed the brighter road side by at least this (grey levels) ...
        noise_factor: ... and by this many times the frame's road noise sigma ...
        rel_contrast: ... and by this fraction of that side's brightness (so bright asphalt needs more).
        yellow_contrast: floor of the contrast on the yellowness channel (R + G) / 2 - B for the yellow
            ridge (also at least ``noise_factor`` noise sigmas).
        white_ratio: white paint: the smallest of the B, G, R increases over the asphalt is at least this
            fraction of the largest.
        yellow_green_ratio: yellow paint: the G increase is at least this fraction of the R increase (not
            red or orange: tail lights, cones).
        yellow_blue_ratio: yellow paint: the B increase is at most this fraction of the G increase.
        min_side_fraction: a side window is on the road when at least this fraction of it is road.
        edge_factor: where only one side window is on the road, the contrast needed is this many times
            higher; 0 labels nothing there (paint touching the road mask's edge is then never found).
        edge_band_rows: rows per band for the road brightness level used at the road's edge ...
        edge_quantile: ... which is this quantile of the band's road pixels; one-sided pixels must beat it
            by the contrast needed.
        max_width_ratio: a blob whose mean width per row exceeds this many expected paint widths (at its
            centroid row) is dropped.
        min_width_ratio: a blob whose mean width per row is under this many expected paint widths is
            dropped.
        centre_fraction: the centre window spans this fraction of the expected paint width (at least one
            pixel): a matched filter, so a one-pixel streak does not pass where paint is wide.
        pixel_fraction: the pixel itself must exceed the brighter side by this fraction of the contrast
            needed (so a centre window half on paint does not label the asphalt next to it).
        min_area_px: blobs smaller than this many pixels are dropped ...
        min_area_ratio: ... and blobs smaller than this many squares of the expected paint width.
        horizon_y: the horizon row, if known (default: ``estimate_horizon(road_mask)``).

    Returns:
        uint8 [H, W] mask, 1 = paint, 0 elsewhere; always 0 outside ``road_mask`` and above the horizon.

    Raises:
        ValueError: the image is not uint8 [H, W, 3] or the mask is not [H, W].
    """
    img = np.asarray(image_bgr)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image_bgr must be uint8 [H, W, 3], got {img.dtype} {list(img.shape)}")
    road = np.asarray(road_mask).astype(bool)
    if road.shape != img.shape[:2]:
        raise ValueError(f"road_mask must be [H, W] = {list(img.shape[:2])}, got {list(road.shape)}")
    h, w = road.shape
    out = np.zeros((h, w), np.uint8)
    if road.sum() < 10:
        return out
    y_h = estimate_horizon(road) if horizon_y is None else float(horizon_y)

    # Work on the rows below the horizon that hold road, and only on them.
    rows_with_road = np.flatnonzero(road.any(1))
    r0 = max(int(rows_with_road[0]), int(np.floor(y_h)) + 1, 0)
    r1 = int(rows_with_road[-1]) + 1
    if r0 >= r1:
        return out
    road = road[r0:r1]
    bgr = img[r0:r1].astype(np.float32)
    chans = np.moveaxis(bgr, 2, 0)  # [3, h, W]
    gray = _luma(chans)
    hh = r1 - r0

    rows = np.arange(r0, r1, dtype=np.float32)[:, None]
    expected = np.maximum(min_width_px, paint_to_height * (rows - y_h))  # [h, 1] pixels
    gap = np.ceil(expected * gap_factor).astype(np.intp) + 1
    length = np.maximum(2, np.ceil(expected)).astype(np.intp)
    half = np.floor(expected * centre_fraction * 0.5).astype(np.intp)
    x = np.broadcast_to(np.arange(w, dtype=np.intp)[None, :], (hh, w))
    win = _RowWindows(chans, road)
    left, nl = win.mean(x - gap - length, x - gap)
    right, nr = win.mean(x + gap + 1, x + gap + length + 1)
    centre, _ = win.mean(x - half, x + half + 1)
    need_side = min_side_fraction * length
    ok_l, ok_r = nl >= need_side, nr >= need_side
    both = ok_l & ok_r
    # The brighter road side; next to the road's edge only the side on the road counts.
    gl, gr = _luma(left), _luma(right)
    use_left = np.where(both, gl >= gr, ok_l)
    side = np.where(use_left, left, right)  # [3, h, W] BGR of the asphalt beside the pixel
    side_gray = np.where(use_left, gl, gr)
    # Contrast needed: a multiple where only one side is on the road, never where neither is.
    one_sided = edge_factor if edge_factor > 0 else np.inf
    factor = np.where(both, np.float32(1.0), np.where(ok_l | ok_r, np.float32(one_sided), np.float32(np.inf)))

    d_b, d_g, d_r = centre - side  # colour the centre window adds to the asphalt
    c_gray = _luma((d_b, d_g, d_r))
    p_gray = gray - side_gray
    sigma = _noise_sigma(gray, road)
    need = np.maximum(np.maximum(min_contrast, noise_factor * sigma), rel_contrast * side_gray) * factor
    bright = (c_gray >= need) & (p_gray >= pixel_fraction * need)
    if edge_factor > 0:
        # One-sided pixels must also stand out from the road as a whole at their row (a sunlit shoulder
        # next to shadowed asphalt is brighter than its one road side, but not brighter than the road).
        level = _row_road_level(gray, road, band=edge_band_rows, quantile=edge_quantile)
        bright &= both | (gray - level >= need)
    # Colour of what the window adds: white adds to B, G and R alike, yellow adds to G and R, not B.
    dmax = np.maximum(np.maximum(d_b, d_g), d_r)
    dmin = np.minimum(np.minimum(d_b, d_g), d_r)
    is_white = dmin >= white_ratio * dmax
    c_yel = 0.5 * (d_r + d_g) - d_b
    is_yellow = (d_r > 0) & (d_g >= yellow_green_ratio * d_r) & (d_b <= yellow_blue_ratio * d_g)
    yneed = np.maximum(yellow_contrast, noise_factor * sigma) * factor
    yellow_ridge = is_yellow & (c_yel >= yneed) & (p_gray > 0)
    cand = road & ((bright & (is_white | is_yellow)) | yellow_ridge)
    if not cand.any():
        return out

    n, lab, stats, cent = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float32)
    height = stats[:, cv2.CC_STAT_HEIGHT].astype(np.float32)
    exp_c = np.maximum(min_width_px, paint_to_height * (cent[:, 1] + r0 - y_h))
    mean_width = area / np.maximum(height, 1)
    keep = (
        (area >= np.maximum(min_area_px, min_area_ratio * exp_c**2))
        & (mean_width <= max_width_ratio * exp_c)
        & (mean_width >= min_width_ratio * exp_c)
    )
    keep[0] = False
    out[r0:r1][keep[lab]] = 1
    return out


# ----------------------------------------------------------------------------------------------------------
# Evaluation against synthetic truth


def _condition_keys(meta: dict) -> list[str]:
    """Condition groups of a synthetic frame: ``time=<day|dusk|night>`` and ``weather=<...>``."""
    env = meta.get("environment") or {}
    keys = [f"time={env.get('time', 'unknown')}"]
    fog, rain = float(env.get("fog", 0) or 0), float(env.get("rain", 0) or 0)
    weather = "fog+rain" if fog > 0 and rain > 0 else "fog" if fog > 0 else "rain" if rain > 0 else "clear"
    keys.append(f"weather={weather}")
    return keys


_COUNT_KEYS = ("frames", "tp", "fp", "fn", "pred_px", "true_px", "pred_near_true", "true_near_pred")


def paint_counts(pred: np.ndarray, seg: np.ndarray, tolerance_px: float = 2.0) -> dict[str, int]:
    """Pixel counts of one frame's predicted paint against its true paint, inside the true road.

    Args:
        pred: [H, W] predicted paint (non-zero = paint).
        seg: uint8 [H, W] truth: 0 background, 1 drivable, 2 lane paint, 255 ignore.
        tolerance_px: a predicted pixel within this Euclidean distance of a true paint pixel counts as
            correct for the tolerant precision, and a true pixel that close to a prediction as found for
            the tolerant recall.

    Returns:
        dict of int counts: frames (1), tp, fp, fn (exact pixels), pred_px, true_px, pred_near_true
        (predicted pixels within the tolerance of true paint), true_near_pred (true paint pixels within
        the tolerance of a prediction). Only road pixels (seg 1 or 2) count: predictions on background
        or ``IGNORE`` pixels are left out, as are those pixels' labels.
    """
    seg = np.asarray(seg)
    if seg.shape != np.shape(pred):
        raise ValueError(f"pred {list(np.shape(pred))} and seg {list(seg.shape)} differ in shape")
    road = (seg == 1) | (seg == PAINT_CLASS)
    road &= seg != IGNORE
    p = (np.asarray(pred) != 0) & road
    t = seg == PAINT_CLASS
    tp = int((p & t).sum())
    pred_px, true_px = int(p.sum()), int(t.sum())
    near_true = _within(t, tolerance_px)
    near_pred = _within(p, tolerance_px)
    return {
        "frames": 1,
        "tp": tp,
        "fp": pred_px - tp,
        "fn": true_px - tp,
        "pred_px": pred_px,
        "true_px": true_px,
        "pred_near_true": int((p & near_true).sum()),
        "true_near_pred": int((t & near_pred).sum()),
    }


def _within(mask: np.ndarray, radius: float) -> np.ndarray:
    """bool [H, W]: pixels whose Euclidean distance to a True pixel of ``mask`` is at most ``radius``."""
    if not mask.any():
        return np.zeros_like(mask)
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist <= radius + 1e-6


def summarize_counts(c: Mapping[str, int]) -> dict[str, float | int]:
    """Summed ``paint_counts`` -> metrics.

    Returns:
        frames, pred_px, true_px (ints); precision, recall, iou (exact pixels); precision_tol,
        recall_tol (with the tolerance of ``paint_counts``). NaN where a ratio is 0 / 0.
    """

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else float("nan")

    return {
        "frames": c["frames"],
        "pred_px": c["pred_px"],
        "true_px": c["true_px"],
        "precision": ratio(c["tp"], c["tp"] + c["fp"]),
        "recall": ratio(c["tp"], c["tp"] + c["fn"]),
        "iou": ratio(c["tp"], c["tp"] + c["fp"] + c["fn"]),
        "precision_tol": ratio(c["pred_near_true"], c["pred_px"]),
        "recall_tol": ratio(c["true_near_pred"], c["true_px"]),
    }


def evaluate_autolabel(
    samples: Iterable[Sample], tolerance_px: float = 2.0, params: Mapping[str, Any] | None = None
) -> dict:
    """Auto-label every sample and score it against its true lane paint; counts summed over all frames.

    Args:
        samples: Samples with ``seg`` in the project classes and ``lane_labelled`` True (synthetic
            frames); the road mask handed to the labeller is ``seg in {1, 2}`` (``IGNORE`` excluded).
            ``meta["environment"]`` (time, fog, rain) groups the frames by condition.
        tolerance_px: distance (pixels) for the tolerant precision/recall.
        params: keyword arguments for ``autolabel_lane_paint`` (None: its defaults).

    Returns:
        {"overall": metrics, "by_condition": {"time=day": metrics, ..., "weather=clear" | "weather=fog"
        | "weather=rain" | "weather=fog+rain": metrics}, "ms_per_frame": mean labeller time,
        "tolerance_px": ..., "params": ...}; metrics as ``summarize_counts``. Pixel counts are summed
        over all frames (of the group) before any ratio is taken, never averaged per frame.

    Raises:
        ValueError: a sample has no lane labels.
    """
    params = dict(params or {})
    total = dict.fromkeys(_COUNT_KEYS, 0)
    groups: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_COUNT_KEYS, 0))
    seconds = 0.0
    for s in samples:
        if s.seg is None or not s.lane_labelled:
            raise ValueError(f"{s.name}: evaluate_autolabel needs samples with lane labels (synthetic frames)")
        road = (s.seg == 1) | (s.seg == PAINT_CLASS)
        t0 = time.perf_counter()
        pred = autolabel_lane_paint(s.image, road, **params)
        seconds += time.perf_counter() - t0
        c = paint_counts(pred, s.seg, tolerance_px)
        for key in _condition_keys(s.meta) + [None]:
            acc = total if key is None else groups[key]
            for k in _COUNT_KEYS:
                acc[k] += c[k]
    return {
        "overall": summarize_counts(total),
        "by_condition": {k: summarize_counts(v) for k, v in sorted(groups.items())},
        "ms_per_frame": 1000.0 * seconds / max(total["frames"], 1),
        "tolerance_px": tolerance_px,
        "params": json.loads(json.dumps(params)),
    }


def paint_overlay(
    image_bgr: np.ndarray, road_mask: np.ndarray, paint: np.ndarray, road_alpha: float = 0.25
) -> np.ndarray:
    """A picture to judge the labeller by eye: paint in red over the image, the road in faint green.

    Args:
        image_bgr: uint8 [H, W, 3] BGR.
        road_mask: [H, W], non-zero on the road.
        paint: [H, W], non-zero where paint was found.
        road_alpha: opacity of the green road tint.

    Returns:
        uint8 [H, W, 3] BGR (a new array; the inputs are not modified).
    """
    out = np.asarray(image_bgr).copy()
    road = np.asarray(road_mask) != 0
    tint = np.array([0, 255, 0], np.float32)
    out[road] = ((1 - road_alpha) * out[road] + road_alpha * tint).astype(np.uint8)
    out[np.asarray(paint) != 0] = (0, 0, 255)
    return out
