"""Online self-calibration (``camera: auto``): a camera model estimated from the lane lines while driving.

Like openpilot's calibration, it needs no chessboard and no setup, only straight driving between painted
lines. What it assumes (the priors) and how it measures:

- intrinsics: a pinhole with the principal point at the image centre, no lens distortion; the focal length
  from the file's metadata when it has one, else from the lane dashes (their period on the road is a
  prior: 12 m, the US 40 ft cycle; each line's paint stitched along the road over consecutive frames, and
  the strips' autocorrelation pooled: ``perception.fusion.dash_period``), else from a dashcam field-of-view
  prior (70 degrees horizontal);
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
from perception.fusion.dash_period import MAX_STRIP_M, DashAutocorrelation, DashStrip, dash_paint_on_ground
from perception.fusion.image_lanes import ImageLine, RoadExtent
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
# Lines whose dashes are read: the ego lane's and its neighbours' (farther out, the names are guesses).
DASH_SIDES = ("ego_left", "ego_right", "next_left", "next_right")
# A side's line is taken for solid when it was solid in this share of its last frames (see _solid).
SOLID_FRAMES, SOLID_SHARE = 20, 0.8
DASH_REREAD = 0.02  # the change of focal length x height that has the dashes read again ...
# ... or of the focal length alone: with the camera pitched, a camera of the right product but another focal
# length reads near and far distances in different proportions
DASH_REREAD_FOCAL = 0.05
RECOMPUTE_EVERY = 10  # frames between recomputations of the height and focal length (medians over the window)


@dataclass
class _Frame:
    t: float
    vp: tuple[float, float]
    ego: tuple[LaneLine, LaneLine] | None  # the ego lane's two lines (their near chords) when both were seen


@dataclass
class _DashFrame:
    """A frame's lines whose dashes are read, usable for the vanishing point or not (a frame that shows only
    the nearest dash of one line still tells how far the car drove)."""

    t: float
    lines: dict[str, tuple[ImageLine, float]]  # by side (the ego lane's and its neighbours'): line, bottom row
    read: bool = False  # its paint went into the focal estimate (each frame counts once per reading camera)


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
        self._dash_frames: deque[_DashFrame] = deque(maxlen=self.settings.window_frames)
        self._frame_size: tuple[int, int] | None = None
        self._first_t: float | None = None
        self._since_recompute = RECOMPUTE_EVERY
        self._focal: float | None = None
        self._focal_ref: float | None = None  # the focal length without dashes (given, metadata or prior)
        self._focal_source = "prior"
        self._dashes = DashAutocorrelation()
        self._strips: dict[str, DashStrip] = {}  # per side, the strip of road being stitched
        self._styles: dict[str, deque[bool]] = {}  # per side, whether its line was solid in recent frames
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
        road: RoadExtent | None = None,
    ) -> None:
        """Fold in one frame's paint lines (``sides``: their names, row-aligned) and the road's borders;
        ``frame_size`` (H, W). ``road``: how far each line runs over the road (the rows down to where it
        ends are seen, paint or not)."""
        if frame_size != self._frame_size:
            self.reset()
            self._frame_size = frame_size
            self._focal = self._focal_ref = self._initial_focal(frame_size[1])
        frame = self._usable(lines, sides, list(road_edges), frame_size, timestamp_s)
        dashes = {}
        for side, ln in zip(sides, lines, strict=True):
            if side in DASH_SIDES and len(ln.painted_rows) and not self._solid(side, ln):
                dashes[side] = (ln, road.rows(ln, frame_size)[1] if road is not None else ln.y_range[1])
        if dashes:
            self._dash_frames.append(_DashFrame(timestamp_s, dashes))
        if frame is not None:
            if self._first_t is None:
                self._first_t = timestamp_s
            self._frames.append(frame)
        self._since_recompute += 1
        if self._since_recompute >= RECOMPUTE_EVERY and len(self._frames) >= 5:
            self._recompute()

    def _solid(self, side: str, line: ImageLine) -> bool:
        """Whether the line on ``side`` is a solid one (this frame's line counted in): solid in most of its
        recent frames. One frame's style does not tell: where only the nearest dash is in view (a wide lens,
        a coarse mask) a dashed line looks solid in the frames that show one whole dash."""
        styles = self._styles.setdefault(side, deque(maxlen=SOLID_FRAMES))
        styles.append(line.style == "solid")
        return sum(styles) >= SOLID_SHARE * len(styles)

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
        return _Frame(t, vp, ego)

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
            pooled = self._dashes.copy()  # with the strips still growing
            for strip in self._strips.values():
                pooled.add_strip(strip)
            period = pooled.period_m() if pooled.frames >= self.settings.min_dash_frames else None
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
        """Each new frame's dashed lines onto their strips of road (``DashStrip``: stitched over consecutive
        frames, one per side), read on the ground with one camera; a strip that cannot be continued goes
        into the pooled autocorrelation. When the dashes' own estimate of focal length x height has moved by
        more than ``DASH_REREAD`` from that camera's, the pool starts again and every frame in the window is
        read with the estimate: ground distances scale with that product only near a level camera, so mixing
        readings would blur the peak and bias it. (Without a dash estimate the pool keeps its camera, so a
        peak that comes and goes does not have the window read again and again.)"""
        height = self._height or self.settings.height_m
        cam = self._dash_camera
        if cam is None or (
            self._focal_source == "dashes"
            and (
                abs(self._focal * height / (cam.K[0, 0] * cam.mounting.height_m) - 1) > DASH_REREAD
                or abs(self._focal / cam.K[0, 0] - 1) > DASH_REREAD_FOCAL
            )
        ):
            self._dash_camera = self._trial_camera(self._focal, vp, height)
            self._dashes = DashAutocorrelation()
            self._strips = {}
            for f in self._dash_frames:
                f.read = False
        for f in self._dash_frames:
            if f.read:
                continue
            f.read = True
            for side, (line, bottom) in f.lines.items():
                paint = dash_paint_on_ground(line, line.painted_rows, self._dash_camera, bottom_row=bottom)
                if paint is None:
                    continue
                strip = self._strips.get(side)
                if strip is not None and strip.length_m < MAX_STRIP_M and strip.extend(paint, f.t):
                    continue
                if strip is not None:
                    self._dashes.add_strip(strip)
                self._strips[side] = DashStrip(paint, f.t)

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
