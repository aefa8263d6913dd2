"""Online self-calibration (``camera: auto``): a camera model estimated from the lane lines while driving.

Like openpilot's calibration, it needs no chessboard and no setup, only straight driving between painted
lines. What it assumes (the priors) and how it measures:

- intrinsics: a pinhole with the principal point at the image centre, no lens distortion; the focal length
  from the file's metadata when it has one, else from the lane dashes (their period on the road is a
  prior: 12 m, the US 40 ft cycle; read from the autocorrelation of the paint along the road, pooled over
  frames), else from a dashcam field-of-view prior (70 degrees horizontal);
- pitch and yaw: from the median vanishing point over straight frames; a frame's vanishing point is where
  the near parts of its lines leaning left and right cross (lane paint, and the road's own borders where it
  has no edge paint); roll 0;
- height: the one that makes the ego lane ``lane_width_m`` wide (ground distances across the road grow
  linearly with the camera height), from frames that show both ego lines; without such frames a dashcam
  prior (1.4 m).

``update`` takes each frame's image lines; ``state`` says where the estimate stands; ``camera`` is the
estimated camera once calibrated (None before). The estimate keeps improving over a sliding window;
``revision`` changes when the camera changed enough for fusion to rebuild what it derived from it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from perception.camera_metadata import FocalHint
from perception.camera_model import CameraModel, Mounting
from perception.frames import AutoCamera
from perception.fusion.image_lanes import ImageLine
from perception.fusion.vanishing_point import LaneLine, intersect, mad, pitch_yaw_deg


@dataclass(frozen=True)
class AutoCameraSettings:
    """Priors and thresholds of the self-calibration (see the module docstring).

    Attributes:
        hfov_deg: horizontal field of view assumed when neither metadata nor dashes give the focal length.
        height_m: camera height assumed while no frame has shown both ego lines.
        lane_width_m: ego lane width (between line centres) that sets the camera height.
        dash_period_m: length of one dash plus one gap on the road (US 40 ft: 12.2 m); None: do not
            estimate the focal length from dashes.
        min_frames, min_seconds: straight, confident frames and time span before the estimate is used.
        window_frames: the estimate is the median over the last this many usable frames.
        max_spread_deg: the vanishing point's spread (MAD, as an angle) above which the run keeps calibrating.
        min_dash_frames: dashed lines read (pooled over frames) before the dashes may set the focal length.
        known_hfov_deg: the lens's horizontal field of view when the user knows it (a spec sheet); it wins
            over the file's metadata, the dashes and the prior (``focal_source: given``).
    """

    hfov_deg: float = 70.0
    height_m: float = 1.4
    lane_width_m: float = 3.6
    dash_period_m: float | None = 12.0
    min_frames: int = 40
    min_seconds: float = 4.0
    window_frames: int = 900
    max_spread_deg: float = 0.8
    min_dash_frames: int = 30
    known_hfov_deg: float | None = None


# A line takes part when it is this confident, bends less than this fraction of the frame width between
# its ends (a curve moves the chords' crossing) and leans at least this much (|dx/dy|: a near-vertical line
# crosses the others at a poorly defined point).
MIN_LINE_CONFIDENCE = 0.15
MAX_BEND_FRACTION = 0.006
MIN_LEAN = 0.2
# Rows used to measure the lane width: from this fraction of the way from the vanishing point down to the
# bottom (near the vanishing point a pixel spans metres of road).
WIDTH_ROWS = np.linspace(0.4, 1.0, 7)
# Frames measuring the lane within this factor of the narrower quarter of frames measure the same lane.
WIDTH_CLUSTER = 1.3
# The dash pattern is read between these forward distances (nearer: hidden by the bonnet or cut by the
# frame; farther: a dash is a few rows tall).
DASH_RANGE_M = (6.0, 36.0)
DASH_BIN_M = 0.25
# Lines whose dashes are read: the ego lane's and its neighbours' (farther out, the names are guesses).
DASH_SIDES = ("ego_left", "ego_right", "next_left", "next_right")
MIN_DASH_VIEW_M = 10.0  # road length a frame must show for its dashes to count
# Periods searched, in metres as the camera the dashes are read with reads them: the 9..15 m patterns
# roads use, through a focal length x height from half to twice the true one.
DASH_LAGS_M = (4.0, 30.0)
DASH_REREAD = 0.02  # the change of focal length x height that has the dashes read again
RECOMPUTE_EVERY = 10  # frames between recomputations of the height and focal length (medians over the window)


@dataclass
class _Frame:
    t: float
    vp: tuple[float, float]
    ego: tuple[LaneLine, LaneLine] | None  # the ego lane's two lines (their near chords) when both were seen
    dashes: list[ImageLine]  # dashed ego lines
    dashes_read: bool = False  # their period went into the focal estimate (each frame counts once)


def _weighted_median(values: list[float], weights: list[float]) -> float:
    order = np.argsort(values)
    v, wt = np.asarray(values)[order], np.asarray(weights)[order]
    return float(v[np.searchsorted(np.cumsum(wt), 0.5 * wt.sum())])


def _focal_px(hfov_deg: float, width: int) -> float:
    return (width / 2) / math.tan(math.radians(hfov_deg) / 2)


def _hfov_deg(focal_px: float, width: int) -> float:
    return math.degrees(2 * math.atan((width / 2) / focal_px))


class SelfCalibration:
    """The camera estimated from the lane lines of the frames seen so far (one per stream).

    Args:
        settings: priors and thresholds.
        focal_hint: focal length from the file's metadata; it wins over the dashes and the prior.
    """

    def __init__(self, settings: AutoCameraSettings = AutoCameraSettings(), focal_hint: FocalHint | None = None):
        self.settings = settings
        self.focal_hint = focal_hint
        self.reset()

    def reset(self) -> None:
        self._frames: deque[_Frame] = deque(maxlen=self.settings.window_frames)
        self._frame_size: tuple[int, int] | None = None
        self._first_t: float | None = None
        self._since_recompute = RECOMPUTE_EVERY
        self._focal: float | None = None
        self._focal_ref: float | None = None  # the focal length without dashes (given, metadata or prior)
        self._focal_source = "prior"
        self._dashes = DashAutocorrelation()
        self._dash_camera: CameraModel | None = None  # the camera the pooled dashes were read with
        self._height: float | None = None
        self._height_source = "prior"
        self._camera: CameraModel | None = None
        self.revision = 0

    # -- per frame

    def update(
        self,
        lines: list[ImageLine],
        sides: list[str],
        frame_size: tuple[int, int],
        timestamp_s: float,
        road_edges: list[ImageLine] = (),
    ) -> None:
        """Fold in one frame's paint lines (``sides``: their names, row-aligned) and the road's borders;
        ``frame_size`` (H, W)."""
        if frame_size != self._frame_size:
            self.reset()
            self._frame_size = frame_size
            self._focal = self._focal_ref = self._initial_focal(frame_size[1])
        frame = self._usable(lines, sides, list(road_edges), frame_size, timestamp_s)
        if frame is not None:
            if self._first_t is None:
                self._first_t = timestamp_s
            self._frames.append(frame)
        self._since_recompute += 1
        if self._since_recompute >= RECOMPUTE_EVERY and len(self._frames) >= 5:
            self._recompute()

    def _initial_focal(self, width: int) -> float:
        if self.settings.known_hfov_deg is not None:
            self._focal_source = "given"
            return _focal_px(self.settings.known_hfov_deg, width)
        if self.focal_hint is not None:
            self._focal_source = f"metadata:{self.focal_hint.source}"
            return _focal_px(self.focal_hint.hfov_deg, width)
        self._focal_source = "prior"
        return _focal_px(self.settings.hfov_deg, width)

    def _usable(
        self, lines: list[ImageLine], sides: list[str], edges: list[ImageLine], frame_size: tuple[int, int], t: float
    ) -> _Frame | None:
        h, w = frame_size

        def good(ln: ImageLine) -> bool:
            return ln.confidence >= MIN_LINE_CONFIDENCE and ln.bend_px() <= MAX_BEND_FRACTION * w

        chords = [(LaneLine(*ln.straight_part()), ln.confidence) for ln in lines + edges if good(ln)]
        lefts = [(c, wt) for c, wt in chords if c.slope < -MIN_LEAN]
        rights = [(c, wt) for c, wt in chords if c.slope > MIN_LEAN]
        crossings, cw = [], []
        for lc, lw in lefts:
            for rc, rw in rights:
                vp = intersect(lc, rc)
                # seen from the road, lines on the left lean right towards the horizon and vice versa: they
                # cross above the rows where they are seen, inside (or near) the frame
                if vp is not None and -0.25 * w < vp[0] < 1.25 * w and -0.5 * h < vp[1] < 0.75 * h:
                    crossings.append(vp)
                    cw.append(lw * rw)
        if not crossings:
            return None
        vp = (_weighted_median([c[0] for c in crossings], cw), _weighted_median([c[1] for c in crossings], cw))
        named = dict(zip(sides, lines, strict=True))
        ego = None
        left, right = named.get("ego_left"), named.get("ego_right")
        if left is not None and right is not None and good(left) and good(right):
            lc, rc = LaneLine(*left.straight_part()), LaneLine(*right.straight_part())
            if lc.slope < 0 < rc.slope:
                ego = (lc, rc)
        dashes = [
            ln for side, ln in named.items() if side in DASH_SIDES and ln.style != "solid" and len(ln.painted_rows)
        ]
        return _Frame(t, vp, ego, dashes)

    # -- the estimate

    def _trial_camera(self, focal: float, vp: tuple[float, float], height: float) -> CameraModel:
        h, w = self._frame_size
        k = ((focal, 0.0, (w - 1) / 2), (0.0, focal, (h - 1) / 2), (0.0, 0.0, 1.0))
        base = CameraModel(name="auto", image_size=(w, h), camera_matrix=k, dist_coeffs=())
        pitch, yaw = (float(a) for a in pitch_yaw_deg(base, np.array(vp[0]), np.array(vp[1])))
        return CameraModel(
            name="auto",
            image_size=(w, h),
            camera_matrix=k,
            dist_coeffs=(),
            mounting=Mounting(height_m=height, pitch_deg=pitch, yaw_deg=yaw, roll_deg=0.0),
        )

    def _vanishing_point(self) -> tuple[float, float]:
        vps = np.array([f.vp for f in self._frames])
        return float(np.median(vps[:, 0])), float(np.median(vps[:, 1]))

    def _recompute(self) -> None:
        self._since_recompute = 0
        h, w = self._frame_size
        vp = self._vanishing_point()
        unit = self._trial_camera(self._focal, vp, 1.0)
        rows = vp[1] + (h - 1 - vp[1]) * WIDTH_ROWS
        widths = []
        for f in self._frames:
            if f.ego is None:
                continue
            left, right = f.ego
            pix = np.concatenate([np.stack([left.x_at(rows), rows], 1), np.stack([right.x_at(rows), rows], 1)])
            ground = unit.image_to_ground(pix)
            lateral = ground[: len(rows), 1] - ground[len(rows) :, 1]
            lateral = lateral[np.isfinite(lateral) & (lateral > 0)]
            if len(lateral):
                widths.append(float(np.median(lateral)))
        if len(widths) >= min(10, self.settings.min_frames):
            self._height = self.settings.lane_width_m / _ego_lane_width(widths)
            self._height_source = "lane width"
        else:
            self._height = self.settings.height_m
            self._height_source = "prior"
        if self._focal_source in ("prior", "dashes") and self.settings.dash_period_m is not None:
            self._measure_dashes(vp)
            period = self._dashes.period_m() if self._dashes.frames >= self.settings.min_dash_frames else None
            if period is not None:
                # ground lengths grow with focal length x height: the product that reads the prior period
                read_with = self._dash_camera.K[0, 0] * self._dash_camera.mounting.height_m
                self._focal = read_with * self.settings.dash_period_m / period / self._height
                self._focal_source = "dashes"
            else:  # more frames can blur a peak that fewer showed: the prior is safer than a stale reading
                self._focal = self._focal_ref
                self._focal_source = "prior"
        if self._calibrated():
            camera = self._trial_camera(self._focal, vp, self._height)
            if self._camera is None or _moved(self._camera, camera):
                self._camera = camera
                self.revision += 1

    def _measure_dashes(self, vp: tuple[float, float]) -> None:
        """Each new frame's dashed lines into the pooled autocorrelation, read on the ground with one
        camera. When the dashes' own estimate of focal length x height has moved by more than
        ``DASH_REREAD`` from that camera's, the pool starts again and every frame in the window is read
        with the estimate: ground distances scale with that product only near a level camera, so mixing
        readings would blur the peak and bias it. (Without a dash estimate the pool keeps its camera, so a
        peak that comes and goes does not have the window read again and again.)"""
        height = self._height or self.settings.height_m
        cam = self._dash_camera
        if cam is None or (
            self._focal_source == "dashes"
            and abs(self._focal * height / (cam.K[0, 0] * cam.mounting.height_m) - 1) > DASH_REREAD
        ):
            self._dash_camera = self._trial_camera(self._focal, vp, height)
            self._dashes = DashAutocorrelation()
            for f in self._frames:
                f.dashes_read = False
        for f in self._frames:
            if f.dashes_read:
                continue
            f.dashes_read = True
            for line in f.dashes:
                signal = dash_profile_on_ground(line, line.painted_rows, self._dash_camera)
                if signal is not None:
                    self._dashes.add(signal)

    def _spread_deg(self) -> float:
        vps = np.array([f.vp for f in self._frames])
        return math.degrees(math.atan(max(mad(vps[:, 0]), mad(vps[:, 1])) / self._focal))

    def _calibrated(self) -> bool:
        s = self.settings
        if len(self._frames) < s.min_frames or self._height is None:
            return False
        if self._frames[-1].t - self._first_t < s.min_seconds:
            return False
        return self._spread_deg() <= s.max_spread_deg

    @property
    def camera(self) -> CameraModel | None:
        """The estimated camera at frame resolution once calibrated; None while calibrating."""
        return self._camera

    @property
    def state(self) -> AutoCamera:
        s = self.settings
        width = self._frame_size[1] if self._frame_size else None
        hfov = _hfov_deg(self._focal, width) if self._focal and width else s.hfov_deg
        n = len(self._frames)
        pitch = yaw = None
        if n >= 5 and self._focal:
            cam = self._trial_camera(self._focal, self._vanishing_point(), 1.0)
            pitch, yaw = cam.mounting.pitch_deg, cam.mounting.yaw_deg
        confidence = 0.0
        if n >= 5:
            confidence = min(1.0, n / (2 * s.min_frames)) * math.exp(-self._spread_deg() / s.max_spread_deg)
        return AutoCamera(
            state="calibrated" if self._camera is not None else "calibrating",
            pitch_deg=pitch,
            yaw_deg=yaw,
            height_m=self._height,
            height_source=self._height_source,
            hfov_deg=hfov,
            focal_source=self._focal_source,
            confidence=float(confidence),
            frames_used=n,
        )


def _ego_lane_width(widths: list[float]) -> float:
    """The ego lane's width (at unit camera height) from the frames' measurements: the median of the
    narrowest cluster. A frame whose nearer line was not seen names the line beyond it as the ego lane's, and
    measures one and a half or two lanes; those frames are not the majority, but they would pull the median."""
    w = np.asarray(widths, np.float64)
    narrow = w[w <= WIDTH_CLUSTER * np.percentile(w, 25)]
    return float(np.median(narrow))


def _moved(a: CameraModel, b: CameraModel) -> bool:
    """Whether the estimate moved enough to rebuild what fusion derived from the camera."""
    ma, mb = a.mounting, b.mounting
    return (
        abs(ma.pitch_deg - mb.pitch_deg) > 0.05
        or abs(ma.yaw_deg - mb.yaw_deg) > 0.05
        or abs(ma.height_m - mb.height_m) > 0.01 * ma.height_m
        or abs(a.K[0, 0] - b.K[0, 0]) > 0.01 * a.K[0, 0]
    )


def dash_profile_on_ground(line: ImageLine, rows: np.ndarray, camera: CameraModel) -> np.ndarray | None:
    """A dashed line's paint along the road: presence in ``DASH_BIN_M`` bins of forward distance, mean
    removed, over the part of ``DASH_RANGE_M`` in view (``rows``: its painted rows; distances read with
    ``camera``). None when less than ``MIN_DASH_VIEW_M`` of road is in view or
    the paint does not alternate (painted on under 5 % or over 80 % of it)."""
    rows = np.unique(np.asarray(rows, np.int64))
    if len(rows) < 4:
        return None
    lo, hi = DASH_RANGE_M
    # A row covers the road between the ground points of its upper and lower edges; far rows cover metres,
    # so each painted row marks its whole footprint (its centre alone would bunch the far paint up).
    first, last = int(line.y_range[0]), int(line.y_range[1])
    top, bottom = min(first, int(rows[0])), max(last, int(rows[-1]))
    edges = np.arange(top, bottom + 2) - 0.5  # edge k is the upper edge of row top + k
    x_edges = camera.image_to_ground(np.stack([line.x_at(edges), edges], 1))[:, 0]
    seen = x_edges[first - top : last - top + 2]
    seen = seen[np.isfinite(seen) & (seen > 0)]
    if len(seen) < 5:
        return None
    seen_lo, seen_hi = max(lo, float(seen.min())), min(hi, float(seen.max()))
    if seen_hi - seen_lo < MIN_DASH_VIEW_M:
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
    painted = np.cumsum(cover)[:n_bins] > 0
    signal = painted.astype(np.float64)
    if not 0.05 < signal.mean() < 0.8:
        return None
    return signal - signal.mean()


class DashAutocorrelation:
    """The dash pattern's autocorrelation pooled over frames.

    Between frames the dashes move along the road (the car drives) but their period does not, so the
    frames' autocorrelations add up to a clear peak at the period even when each frame sees little more
    than one dash and one gap, where a per-frame peak would be noise. ``add`` takes one frame's profile
    (``dash_profile_on_ground``); ``period_m`` is the first peak at ``DASH_LAGS_M`` or beyond.
    """

    def __init__(self):
        self.lags = np.arange(round(DASH_LAGS_M[0] / DASH_BIN_M), round(DASH_LAGS_M[1] / DASH_BIN_M) + 1)
        self._products = np.zeros(len(self.lags))  # sum over frames of signal[i] * signal[i + lag]
        self._pairs = np.zeros(len(self.lags))  # how many such products
        self._energy = 0.0  # sum of signal^2
        self._bins = 0
        self.frames = 0

    def add(self, signal: np.ndarray) -> None:
        n = len(signal)
        products = np.correlate(signal, signal, "full")[n - 1 :]  # lag 0 .. n - 1
        inside = self.lags < n
        self._products[inside] += products[self.lags[inside]]
        self._pairs[inside] += n - self.lags[inside]
        self._energy += float(signal @ signal)
        self._bins += n
        self.frames += 1

    def period_m(self, min_peak: float = 0.3) -> float | None:
        """The period (m) where the pooled autocorrelation first peaks at ``min_peak`` or more; None when
        it does not (no repeating pattern, or too little road seen to cover a period)."""
        if self._energy <= 0:
            return None
        # a lag needs at least a period's worth of products to count
        ok = self._pairs >= self.lags
        ac = np.where(ok, self._products / np.maximum(self._pairs, 1) / (self._energy / self._bins), np.nan)
        for j in range(1, len(ac) - 1):
            a, b, c = ac[j - 1], ac[j], ac[j + 1]
            if np.isnan([a, b, c]).any() or b < min_peak or b < a or b < c:
                continue
            # parabolic interpolation around the peak
            shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
            return float((self.lags[j] + shift) * DASH_BIN_M)
        return None


def dash_period_on_ground(line: ImageLine, rows: np.ndarray, camera: CameraModel) -> float | None:
    """Period (m) of one frame's dashed line along the road, read with ``camera``; None when its pattern
    does not repeat clearly in view."""
    signal = dash_profile_on_ground(line, rows, camera)
    if signal is None:
        return None
    one = DashAutocorrelation()
    one.add(signal)
    return one.period_m()
