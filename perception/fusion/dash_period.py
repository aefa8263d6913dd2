"""The period of a dashed lane line on the road, for the self-calibration's focal length.

A line's paint is read on the ground with a trial camera (``dash_paint_on_ground``): painted or not, in
``DASH_BIN_M`` bins of forward distance. Lengths on the road scale with the trial camera's focal length x
height, so the period read against the period roads use (a prior) corrects that product.

One frame rarely shows a whole period: a wide lens or a small frame makes far dashes a few pixels long, and
the network's mask drops them, so only the nearest dash or two are seen. ``DashStrip`` therefore stitches a
line's paint along the road over consecutive frames: the car drives over the dashes, and the shift of the
dash ends between two frames (the distance driven) places each frame's paint on one strip of road, many
periods long, although each frame saw a few metres of it. ``DashAutocorrelation`` pools the strips'
autocorrelations; its first strong peak is the period.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from perception.camera_model import CameraModel
from perception.fusion.image_lanes import ImageLine

# The dash pattern is read between these forward distances (farther: a dash is a few rows tall; the near
# limit is where the line leaves the road or the frame, see dash_paint_on_ground).
DASH_RANGE_M = (3.0, 36.0)
DASH_BIN_M = 0.25
MIN_DASH_VIEW_M = 10.0  # road length one frame must show for its dashes to count on their own
MIN_STITCH_VIEW_M = 3.0  # road length a frame must show to extend a strip
# Periods searched, in metres as the camera the dashes are read with reads them: the 9..15 m patterns
# roads use, through a focal length x height from half to twice the true one.
DASH_LAGS_M = (4.0, 30.0)
# Stitching: the fastest the car may drive in trial metres (a trial focal length up to 1.5 times off), the
# longest two frames with paint may be apart to be registered, and how long a strip may coast on its last
# speed through frames whose paint has no end in common with the previous frame's.
MAX_SPEED_MPS = 60.0
MAX_PAIR_S = 0.35
MAX_COAST_S = 1.0
MIN_GAP_M, MIN_DASH_M = 1.5, 0.75  # shorter gaps and paint are the mask's speckle (``_clean``)
MAX_DASH_M = 10.0  # longer paint is not a dash (roads paint 3..6 m; trial metres may be 1.5 times off)
END_TOLERANCE_M = 0.4  # two dash ends this close after the shift are the same end
SPEED_CHANGE = 0.3  # with a speed known, a shift may differ from speed x time by this fraction (or 0.5 m)
SPEED_SAMPLES = 9  # the speed is the median of this many last measurements
MAX_STRIP_M = 240.0  # a strip this long goes into the pool and the next one starts
MIN_FUNDAMENTAL = 0.2  # the least autocorrelation a peak below the highest needs to be taken for the period


@dataclass(frozen=True)
class RoadPaint:
    """A line's paint along the road in one frame: ``painted[i]`` covers forward distances
    ``start_m + i * DASH_BIN_M`` to the next bin."""

    start_m: float
    painted: np.ndarray  # bool [n]

    @property
    def length_m(self) -> float:
        return len(self.painted) * DASH_BIN_M

    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        """(near ends, far ends) of the dashes wholly inside the view, in metres ahead; a dash cut by the
        view's edge has no end there."""
        step = np.diff(self.painted.astype(np.int8))
        near = self.start_m + (np.nonzero(step == 1)[0] + 1) * DASH_BIN_M
        far = self.start_m + (np.nonzero(step == -1)[0] + 1) * DASH_BIN_M
        return near, far


def dash_paint_on_ground(
    line: ImageLine,
    rows: np.ndarray,
    camera: CameraModel,
    min_view_m: float = MIN_STITCH_VIEW_M,
    bottom_row: float | None = None,
) -> RoadPaint | None:
    """A dashed line's paint along the road over the part of ``DASH_RANGE_M`` in view (``rows``: its painted
    rows; distances read with ``camera``); None when less than ``min_view_m`` of road is in view.

    The view runs from the farthest paint seen down to the line's ``y_range`` bottom, or to ``bottom_row``
    when the line runs on over the road that far (``RoadExtent``): near the car the mask misses no paint,
    so a gap seen there is a gap, and the nearest dash's near end is the best-measured end of all."""
    rows = np.unique(np.asarray(rows, np.int64))
    if len(rows) < 4:
        return None
    lo, hi = DASH_RANGE_M
    # A row covers the road between the ground points of its upper and lower edges; far rows cover metres,
    # so each painted row marks its whole footprint (its centre alone would bunch the far paint up).
    first, last = int(line.y_range[0]), int(line.y_range[1])
    if bottom_row is not None:
        last = max(last, int(bottom_row))
    top, bottom = min(first, int(rows[0])), max(last, int(rows[-1]))
    edges = np.arange(top, bottom + 2) - 0.5  # edge k is the upper edge of row top + k
    x_edges = camera.image_to_ground(np.stack([line.x_at(edges), edges], 1))[:, 0]
    seen = x_edges[first - top : last - top + 2]
    seen = seen[np.isfinite(seen) & (seen > 0)]
    if len(seen) < 5:
        return None
    seen_lo, seen_hi = max(lo, float(seen.min())), min(hi, float(seen.max()))
    if seen_hi - seen_lo < max(min_view_m, 2 * DASH_BIN_M):
        return None
    far, near = x_edges[rows - top], x_edges[rows - top + 1]
    ok = np.isfinite(far) & np.isfinite(near) & (near > 0)
    near, far = np.clip(near[ok], seen_lo, seen_hi), np.clip(far[ok], seen_lo, seen_hi)
    n_bins = int((seen_hi - seen_lo) / DASH_BIN_M)
    keep = far > near
    start = np.floor((near[keep] - seen_lo) / DASH_BIN_M).astype(np.int64)
    stop = np.ceil((far[keep] - seen_lo) / DASH_BIN_M).astype(np.int64)
    cover = np.zeros(n_bins + 1, np.int64)
    np.add.at(cover, np.clip(start, 0, n_bins), 1)
    np.add.at(cover, np.clip(stop, 0, n_bins), -1)
    return RoadPaint(seen_lo, _clean(np.cumsum(cover)[:n_bins] > 0))


def _runs(values: np.ndarray) -> list[tuple[int, int, bool]]:
    """(start, stop, value) of each run of equal values."""
    cut = np.flatnonzero(np.diff(values.astype(np.int8))) + 1
    bounds = np.concatenate([[0], cut, [len(values)]])
    return [(int(a), int(b), bool(values[a])) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _clean(painted: np.ndarray) -> np.ndarray:
    """Paint with the mask's speckle removed: gaps shorter than ``MIN_GAP_M`` between paint are filled (a
    row the mask missed), then paint shorter than ``MIN_DASH_M`` is dropped (a fleck on a kerb). Roads leave
    metres between dashes, and paint dashes a metre or longer."""
    out = painted.copy()
    for a, b, value in _runs(out):
        if not value and 0 < a and b < len(out) and (b - a) * DASH_BIN_M < MIN_GAP_M:
            out[a:b] = True
    for a, b, value in _runs(out):
        if value and (b - a) * DASH_BIN_M < MIN_DASH_M and 0 < a and b < len(out):
            out[a:b] = False
    return out


def _alternates(painted: np.ndarray) -> bool:
    """Paint that can show a dash pattern: painted on more than 5 % and under 80 % of it."""
    return 0.05 < float(painted.mean()) < 0.8


def paint_shift(before: RoadPaint, after: RoadPaint, lo: float, hi: float) -> float | None:
    """How far the road moved towards the car between two frames' paint (m, in ``[lo, hi]``), from the dash
    ends of ``before`` that pair up with ends of the same kind in ``after``; None when none does.

    A far end is known to the depth of a far row (metres) and a near one to a few centimetres, so each pair
    weighs as the inverse square of its distance: the shift is the weighted median of the pairs around the
    best-supported one."""
    diffs, weights = [], []
    for a, b in zip(before.ends(), after.ends(), strict=True):
        d = (a[:, None] - b[None, :]).ravel()
        w = np.broadcast_to(1.0 / a[:, None] ** 2, (len(a), len(b))).ravel()
        keep = (d >= lo - END_TOLERANCE_M) & (d <= hi + END_TOLERANCE_M)
        diffs.append(d[keep])
        weights.append(w[keep])
    d, w = np.concatenate(diffs), np.concatenate(weights)
    if not len(d):
        return None
    near = np.abs(d[:, None] - d[None, :]) <= END_TOLERANCE_M
    support = near @ w
    best = np.nonzero(support >= support.max() * (1 - 1e-9))[0]
    # several equally supported shifts: the one nearest the middle of the allowed range
    centre = best[np.argmin(np.abs(d[best] - 0.5 * (lo + hi)))]
    d, w = d[near[centre]], w[near[centre]]
    order = np.argsort(d)
    return float(d[order][np.searchsorted(np.cumsum(w[order]), 0.5 * w.sum())])


class DashStrip:
    """One line's paint stitched along the road over consecutive frames (see the module docstring).

    ``extend`` places a frame's paint at the distance driven since the strip began; it returns False when
    the frame cannot be placed (too long since the last, or no dash end in common and no recent speed to
    coast on): the caller then closes this strip and starts another with that frame.
    """

    def __init__(self, paint: RoadPaint, t: float):
        self._painted = np.zeros(0, np.int64)  # votes per road bin, from the strip's start
        self._seen = np.zeros(0, np.int64)
        self._last: tuple[RoadPaint, float, float] | None = None  # paint, time, distance driven then
        self._speeds: list[float] = []
        self._speed_t = -np.inf
        self.frames = 0
        self._vote(paint, t, 0.0)

    @property
    def length_m(self) -> float:
        return len(self._seen) * DASH_BIN_M

    def extend(self, paint: RoadPaint, t: float) -> bool:
        last, t_last, driven_last = self._last
        dt = t - t_last
        if not 0 < dt <= MAX_COAST_S:
            return False
        speed = self._speed() if t - self._speed_t <= MAX_COAST_S else None
        shift = None
        if dt <= MAX_PAIR_S:
            if speed is None:
                lo, hi = 0.0, MAX_SPEED_MPS * dt
            else:
                slack = max(0.5, SPEED_CHANGE * speed * dt)
                lo, hi = max(0.0, speed * dt - slack), speed * dt + slack
            shift = paint_shift(last, paint, lo, hi)
        if shift is not None:
            # one shift is known to a row's depth; the car's speed changes slowly, so the shift used is
            # the recent measurements' median speed over the time between the frames
            self._speeds.append(max(shift, 0.0) / dt)  # forwards: the paint lies ahead of the car (start_m > 0)
            self._speed_t = t
            shift = self._speed() * dt
        elif speed is not None:
            shift = speed * dt
        else:
            return False
        self._vote(paint, t, driven_last + shift)
        return True

    def _speed(self) -> float | None:
        return statistics.median(self._speeds[-SPEED_SAMPLES:]) if self._speeds else None

    def _vote(self, paint: RoadPaint, t: float, driven: float) -> None:
        first = int(round((driven + paint.start_m) / DASH_BIN_M))
        end = first + len(paint.painted)
        if end > len(self._seen):
            grow = end - len(self._seen)
            self._seen = np.concatenate([self._seen, np.zeros(grow, np.int64)])
            self._painted = np.concatenate([self._painted, np.zeros(grow, np.int64)])
        self._seen[first:end] += 1
        self._painted[first:end] += paint.painted
        self._last = (paint, t, driven)
        self.frames += 1

    def signal(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(paint, seen): the strip's paint (majority of the frames that saw each bin) with the mean over
        the seen bins removed, and which bins were seen; None when it does not alternate. Paint longer than
        any dash (a solid stretch, two lines the mask merged) counts as not seen: it is not the pattern."""
        seen = self._seen > 0
        painted = 2 * self._painted > self._seen
        for a, b, value in _runs(painted):
            if value and (b - a) * DASH_BIN_M > MAX_DASH_M:
                seen[a:b] = painted[a:b] = False
        if seen.sum() * DASH_BIN_M < MIN_DASH_VIEW_M:
            return None
        if not _alternates(painted[seen]):
            return None
        signal = np.where(seen, painted - painted[seen].mean(), 0.0)
        return signal, seen


class DashAutocorrelation:
    """The dash pattern's autocorrelation pooled over strips of road (``DashStrip``, or single frames).

    The strips' autocorrelations add up to a clear peak at the period even when each shows little more than
    one period, where one strip's peak would be noise. ``add`` takes a strip's paint and the bins it saw;
    ``period_m`` is its first strong peak within ``DASH_LAGS_M``.
    """

    def __init__(self):
        self.lags = np.arange(round(DASH_LAGS_M[0] / DASH_BIN_M), round(DASH_LAGS_M[1] / DASH_BIN_M) + 1)
        self._products = np.zeros(len(self.lags))  # sum over strips of signal[i] * signal[i + lag]
        self._pairs = np.zeros(len(self.lags))  # how many such products (both bins seen)
        # sums of signal^2 over the first and over the second bin of each such pair: the products' own
        # scale, so that a lag is not favoured because short strips have no pairs that far apart
        self._energy_first = np.zeros(len(self.lags))
        self._energy_second = np.zeros(len(self.lags))
        self.frames = 0

    def copy(self) -> DashAutocorrelation:
        other = DashAutocorrelation()
        other._products, other._pairs = self._products.copy(), self._pairs.copy()
        other._energy_first, other._energy_second = self._energy_first.copy(), self._energy_second.copy()
        other.frames = self.frames
        return other

    def add(self, signal: np.ndarray, seen: np.ndarray | None = None, frames: int = 1) -> None:
        n = len(signal)
        seen = np.ones(n) if seen is None else seen.astype(np.float64)
        power = signal * signal
        first = np.stack([signal, seen, power, seen])  # the bin i of each sum ...
        second = np.stack([signal, seen, seen, power])  # ... and the bin i + lag
        for k, lag in enumerate(self.lags):
            if lag >= n:
                break
            # products, pairs, power of the first bins, power of the second bins
            sums = np.einsum("ij,ij->i", first[:, : n - lag], second[:, lag:])
            self._products[k] += sums[0]
            self._pairs[k] += sums[1]
            self._energy_first[k] += sums[2]
            self._energy_second[k] += sums[3]
        self.frames += frames

    def add_strip(self, strip: DashStrip) -> None:
        """A strip's paint (``DashStrip.signal``); a strip that does not alternate adds nothing."""
        signal = strip.signal()
        if signal is not None:
            self.add(*signal, frames=strip.frames)

    def period_m(self, min_peak: float = 0.3) -> float | None:
        """The period (m): the shortest lag where the pooled autocorrelation peaks at half the highest peak
        or more (and ``MIN_FUNDAMENTAL``), when the highest is at ``min_peak`` or more; None when none is
        (no repeating pattern, or too little road seen to cover a period).

        The pattern also repeats at twice and three times its period, and paint that does not repeat
        (a blotchy line, a strip stitched at the wrong speed) lowers every peak alike: the highest peak
        can be a multiple of the period, while the first is the period itself."""
        # a lag needs at least a period's worth of products to count
        scale = np.sqrt(self._energy_first * self._energy_second)
        ok = (self._pairs >= self.lags) & (scale > 0)
        ac = np.where(ok, self._products / np.where(ok, scale, 1.0), np.nan)
        peaks = [
            j
            for j in range(1, len(ac) - 1)
            if not np.isnan(ac[j - 1 : j + 2]).any() and ac[j - 1] <= ac[j] >= ac[j + 1] and ac[j] > 0
        ]
        highest = max((ac[j] for j in peaks), default=-np.inf)
        if highest < min_peak:
            return None
        floor = max(MIN_FUNDAMENTAL, 0.5 * highest)
        j = next(j for j in peaks if ac[j] >= floor)
        a, b, c = ac[j - 1], ac[j], ac[j + 1]
        # parabolic interpolation around the peak
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
        return float((self.lags[j] + shift) * DASH_BIN_M)


def dash_period_on_ground(line: ImageLine, rows: np.ndarray, camera: CameraModel) -> float | None:
    """Period (m) of one frame's dashed line along the road, read with ``camera``; None when less than
    ``MIN_DASH_VIEW_M`` of road is in view or its pattern does not repeat clearly there."""
    paint = dash_paint_on_ground(line, rows, camera, MIN_DASH_VIEW_M)
    if paint is None or not _alternates(paint.painted):
        return None
    signal = paint.painted.astype(np.float64)
    one = DashAutocorrelation()
    one.add(signal - signal.mean())
    return one.period_m()
