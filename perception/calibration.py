"""Camera calibration: intrinsics from chessboard photos, mounting (pitch, yaw, height) from lane lines.

``calibrate_chessboard`` is the classic OpenCV recipe (Zhang's method): inner chessboard corners found in
several photos of a flat board, refined to sub-pixel, then ``cv2.calibrateCamera`` with the 5-coefficient
distortion model (k1, k2, p1, p2, k3). ``estimate_mounting`` finds the ego lane's two lines in driving
frames; where they meet (the vanishing point of the road direction) gives pitch and yaw, and the known
lane width gives the camera height. Both return frozen results; ``perception calibrate`` prints them and
writes the camera YAML that ``perception.camera_model.load_camera`` reads.

Pixel coordinates are OpenCV's: x right, y down, pixel centres at integers. Angles follow
``perception.camera_model.Mounting``: pitch positive looks down, yaw positive turns the camera left.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from perception.camera_model import CameraModel, Mounting, load_camera
from perception.errors import ConfigError, InputError, OutputError
from perception.fusion.vanishing_point import LaneLine, intersect, mad, pitch_yaw_deg
from perception.sources import IMAGE_SUFFIXES, VideoFileSource

BOARD_FLAGS = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3)
MIN_BOARDS = 3  # calibrateCamera needs views at several orientations; 3 is its bare minimum
# Photos at most this many pixels wider/taller than the others are cropped at the right/bottom edge: the
# top-left origin keeps corner coordinates unchanged (the Udacity set has two 1281x721 photos among 1280x720).
SIZE_SLACK_PX = 2
# A refined corner must sit on an X-junction: the weaker gradient direction of its neighbourhood, relative
# to the board's black/white contrast, is ~1 on a true junction and ~0 on a flat patch where the quad
# detector misplaced it (calibration15.jpg of the Udacity set: one corner 18 px off, in plain white).
MIN_JUNCTION_STRENGTH = 0.15


# --------------------------------------------------------------------------------------------------------
# Inputs


def parse_board(text: str) -> tuple[int, int]:
    """``"9x6"`` -> (9, 6): inner corners per row (columns) and per column (rows); ConfigError if malformed."""
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise ConfigError(f"--board needs COLUMNSxROWS inner corners, e.g. 9x6, got {text!r}") from err
    if cols < 3 or rows < 3:
        raise ConfigError(f"--board {cols}x{rows}: need at least 3x3 inner corners")
    return cols, rows


def _natural_key(path: Path) -> list:
    """calibration2.jpg before calibration10.jpg."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def expand_image_paths(items: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, folders (their images, not recursive) and glob patterns -> image files, in natural order.

    Raises InputError for a path that does not exist, a folder without images, a pattern matching none.
    """
    out: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            if not files:
                raise InputError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        elif path.is_file():
            files = [path]
        elif glob.has_magic(text):
            files = [Path(p) for p in glob.glob(text) if Path(p).is_file()]
            files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            if not files:
                raise InputError(f"{text}: no image files match this pattern")
        else:
            raise InputError(f"{path}: no such file or folder")
        out += sorted(files, key=_natural_key)
    if not out:
        raise InputError("no calibration images given")
    return list(dict.fromkeys(out))  # the same photo twice would weigh double


def _read_gray(path: Path) -> np.ndarray:
    """uint8 [H, W] grayscale; InputError naming the file when it cannot be decoded."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from err
    if size == 0:
        raise InputError(f"{path}: file is empty")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise InputError(f"{path}: not an image OpenCV can read (corrupt or not an image)")
    return image


# --------------------------------------------------------------------------------------------------------
# Chessboard calibration


@dataclass(frozen=True)
class CalibrationResult:
    """What ``calibrate_chessboard`` measured.

    Attributes:
        camera: intrinsics (pixels at ``camera.image_size``) and 5 distortion coefficients; default mounting.
        rms_px: RMS reprojection error over every corner of every used board, in pixels (OpenCV's figure).
        per_image_px: (file, mean reprojection error in px of that board's corners) for each used photo.
        board: (columns, rows) of inner corners; square_m: side of one square in metres (scales only the
            board poses, not the intrinsics).
        images: every photo considered, in order; not_found: those without a detected board;
        rejected: (file, reason) for boards found but dropped (a misplaced corner);
        cropped: photos 1-2 px larger than the rest, cropped at the right/bottom edge.
    """

    camera: CameraModel
    rms_px: float
    per_image_px: tuple[tuple[str, float], ...]
    board: tuple[int, int]
    square_m: float
    images: tuple[str, ...]
    not_found: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...] = ()
    cropped: tuple[str, ...] = ()

    @property
    def boards_used(self) -> int:
        return len(self.per_image_px)

    def format(self) -> str:
        """A multi-line report for the terminal."""
        cols, rows = self.board
        k = self.camera.K
        w, h = self.camera.image_size
        lines = [
            f"board {cols}x{rows} (square {self.square_m * 1000:g} mm) used in {self.boards_used} of "
            f"{len(self.images)} images at {w}x{h}",
            f"RMS reprojection error {self.rms_px:.3f} px",
            f"fx {k[0, 0]:.2f}  fy {k[1, 1]:.2f}  cx {k[0, 2]:.2f}  cy {k[1, 2]:.2f} px",
            "dist (k1, k2, p1, p2, k3) " + ", ".join(f"{v:.5f}" for v in self.camera.dist_coeffs),
            "per image (mean reprojection error, px):",
        ]
        errors = dict(self.per_image_px)
        reasons = dict(self.rejected)
        for name in self.images:
            if name in errors:
                note = f"{errors[name]:.3f}"
            elif name in reasons:
                note = f"rejected: {reasons[name]}"
            else:
                note = "board not found"
            lines.append(f"  {name}: {note}" + ("  (cropped to the common size)" if name in self.cropped else ""))
        return "\n".join(lines)


def _subpix_window(corners: np.ndarray, board: tuple[int, int]) -> tuple[int, int]:
    """Half-size of the cornerSubPix search window: 11 px (OpenCV's usual), less for small boards.

    The window must not reach the neighbouring corners, or refinement pulls corners towards each other.
    """
    grid = corners.reshape(board[1], board[0], 2)
    spacing = min(
        np.linalg.norm(np.diff(grid, axis=1), axis=-1).min(), np.linalg.norm(np.diff(grid, axis=0), axis=-1).min()
    )
    half = int(np.clip(0.35 * spacing, 2, 11))
    return half, half


def _weakest_junction(gray: np.ndarray, corners: np.ndarray, radius: int = 5) -> tuple[int, float]:
    """(index, strength) of the corner least like an X-junction; strength ~1 on a junction, ~0 on flat paper."""
    h, w = gray.shape
    strengths, contrasts = [], []
    for x, y in corners.reshape(-1, 2):
        xi, yi = int(round(x)), int(round(y))
        patch = gray[max(yi - radius - 1, 0) : yi + radius + 2, max(xi - radius - 1, 0) : xi + radius + 2]
        patch = patch.astype(np.float32)
        gx = cv2.Sobel(patch, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1]
        gy = cv2.Sobel(patch, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1]
        a, b, c = float((gx * gx).mean()), float((gx * gy).mean()), float((gy * gy).mean())
        # Smaller eigenvalue of the structure tensor: gradient energy across the weaker direction.
        lmin = (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b)
        strengths.append(np.sqrt(max(lmin, 0.0)))
        contrasts.append(np.percentile(patch, 95) - np.percentile(patch, 5))
    rel = np.array(strengths) / max(float(np.median(contrasts)), 1.0)
    i = int(np.argmin(rel))
    return i, float(rel[i])


def _board_points(board: tuple[int, int], square_m: float) -> np.ndarray:
    """float32 [cols*rows, 3] corner positions on the board plane (z = 0), metres, row by row."""
    cols, rows = board
    obj = np.zeros((cols * rows, 3), np.float32)
    obj[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square_m
    return obj


def calibrate_chessboard(
    paths: Iterable[str | os.PathLike],
    board: tuple[int, int] = (9, 6),
    square_m: float = 0.025,
    name: str = "camera",
) -> CalibrationResult:
    """Calibrate one camera from photos of a flat chessboard.

    Args:
        paths: image files, folders or glob patterns (see ``expand_image_paths``); all photos must come from
            one camera at one resolution.
        board: inner corners (columns, rows) — a board of 10x7 squares has 9x6 inner corners.
        square_m: side of one square in metres.
        name: the camera's name in the result (and in the YAML written from it).

    Returns a ``CalibrationResult`` whose camera has image_size (w, h) of the photos, the 3x3 camera matrix
    in pixels and the distortion (k1, k2, p1, p2, k3). Photos without a detected board are listed, not
    fatal. Raises InputError naming the file and the problem: unreadable image, photos of different sizes,
    fewer than 3 boards found, no images.
    """
    board = (int(board[0]), int(board[1]))
    if square_m <= 0 or not np.isfinite(square_m):
        raise ConfigError(f"square size must be > 0 m, got {square_m}")
    files = expand_image_paths(paths)
    images = [(str(p), _read_gray(p)) for p in files]

    sizes = Counter((img.shape[1], img.shape[0]) for _, img in images)
    (ref_w, ref_h), n_ref = sizes.most_common(1)[0]
    cropped = []
    for i, (file, img) in enumerate(images):
        h, w = img.shape
        if (w, h) == (ref_w, ref_h):
            continue
        if 0 <= w - ref_w <= SIZE_SLACK_PX and 0 <= h - ref_h <= SIZE_SLACK_PX:
            images[i] = (file, img[:ref_h, :ref_w])
            cropped.append(file)
            continue
        raise InputError(
            f"{file}: images of different sizes: this one is {w}x{h}, {n_ref} of the {len(images)} are "
            f"{ref_w}x{ref_h} (calibrate each camera and resolution on its own)"
        )

    obj = _board_points(board, square_m)
    found: list[tuple[str, np.ndarray]] = []
    not_found, rejected = [], []
    for file, gray in images:
        ok, corners = cv2.findChessboardCorners(gray, board, flags=BOARD_FLAGS)
        if not ok:
            not_found.append(file)
            continue
        corners = cv2.cornerSubPix(gray, corners, _subpix_window(corners, board), (-1, -1), SUBPIX_CRITERIA)
        i, strength = _weakest_junction(gray, corners)
        if strength < MIN_JUNCTION_STRENGTH:
            x, y = corners.reshape(-1, 2)[i]
            rejected.append((file, f"corner {i} at ({x:.0f}, {y:.0f}) lies on no chessboard junction"))
            continue
        found.append((file, corners))

    cols, rows = board
    if len(found) < MIN_BOARDS:
        where = f" ({len(rejected)} more rejected for a misplaced corner)" if rejected else ""
        raise InputError(
            f"board {cols}x{rows} found in {len(found)} of {len(images)} images{where}; need >= {MIN_BOARDS}: "
            "check --board (inner corners, columns x rows)"
        )
    img_pts = [c for _, c in found]
    try:
        rms, k, d, rvecs, tvecs = cv2.calibrateCamera([obj] * len(found), img_pts, (ref_w, ref_h), None, None)
    except cv2.error as err:
        raise InputError(
            f"cv2.calibrateCamera failed on {len(found)} boards: {str(err).strip().splitlines()[-1]}"
        ) from err
    per_image = []
    for (file, corners), rvec, tvec in zip(found, rvecs, tvecs, strict=True):
        proj, _ = cv2.projectPoints(obj, rvec, tvec, k, d)
        per_image.append((file, float(np.linalg.norm(proj.reshape(-1, 2) - corners.reshape(-1, 2), axis=1).mean())))
    camera = CameraModel(
        image_size=(ref_w, ref_h),
        camera_matrix=tuple(tuple(float(v) for v in row) for row in k),
        dist_coeffs=tuple(float(v) for v in d.ravel()),
        name=name,
    )
    return CalibrationResult(
        camera=camera,
        rms_px=float(rms),
        per_image_px=tuple(per_image),
        board=board,
        square_m=float(square_m),
        images=tuple(f for f, _ in images),
        not_found=tuple(not_found),
        rejected=tuple(rejected),
        cropped=tuple(cropped),
    )


def _encode_png(image: np.ndarray, out_png: str | os.PathLike) -> Path:
    out = Path(out_png)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OutputError(f"{out}: cannot encode the image as PNG")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(buf.tobytes())
    except OSError as err:
        raise OutputError(f"{out}: cannot write ({err.strerror or err})") from err
    return out


def _label(image: np.ndarray, text: str) -> None:
    """White text with a dark outline at the top left, sized to the image (modifies ``image``)."""
    scale = image.shape[1] / 900
    thick = max(1, round(2 * scale))
    org = (int(20 * scale), int(45 * scale))
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 1.2 * scale, (0, 0, 0), thick * 3, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 1.2 * scale, (255, 255, 255), thick, cv2.LINE_AA)


def save_undistorted_example(camera: CameraModel, image_path: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Write a PNG: the photo (left) beside ``cv2.undistort`` of it (right), both labelled; returns its path.

    The undistorted half keeps the camera matrix, so the centre keeps its scale and the curved-out border
    is cut; straight edges in the scene should come out straight.
    """
    path = Path(image_path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not an image OpenCV can read (corrupt or not an image)")
    h, w = image.shape[:2]
    cw, ch = camera.image_size
    if 0 <= w - cw <= SIZE_SLACK_PX and 0 <= h - ch <= SIZE_SLACK_PX:
        image = image[:ch, :cw]
    else:
        try:
            camera = camera.scaled_to(w, h)
        except ValueError as err:
            raise ConfigError(f"{path}: {err}") from err
    undistorted = cv2.undistort(image, camera.K, camera.D)
    left = image.copy()
    _label(left, "original")
    _label(undistorted, "undistorted")
    gap = np.full((left.shape[0], 8, 3), 255, np.uint8)
    return _encode_png(np.hstack([left, gap, undistorted]), out_png)


# --------------------------------------------------------------------------------------------------------
# Mounting from lane lines


def _fit_dominant_line(segs: np.ndarray, height: int, width: int) -> tuple[LaneLine, float] | None:
    """The line with the most Hough-segment length behind it, fitted to those segments; (line, support px).

    segs: float64 [N, 4] x1, y1, x2, y2. Segments belong to a candidate line when both their x at the
    bottom row and at mid-height lie within 4 % of the width of the candidate's (lines are compared where
    they are seen, not at a far extrapolation).
    """
    if len(segs) == 0:
        return None
    x1, y1, x2, y2 = segs.T
    length = np.hypot(x2 - x1, y2 - y1)
    slope = (x2 - x1) / (y2 - y1)
    offset = x1 - slope * y1
    ys = np.array([height - 1.0, height / 2.0])
    at = slope[:, None] * ys[None, :] + offset[:, None]  # [N, 2] x at the two reference rows
    tol = 0.04 * width
    close = (np.abs(at[:, None, :] - at[None, :, :]) < tol).all(-1)  # [N, N]
    support = close @ length
    members = close[int(np.argmax(support))]
    # Weighted least squares of x on y over both end points of the member segments.
    y = np.concatenate([y1[members], y2[members]])
    x = np.concatenate([x1[members], x2[members]])
    wts = np.concatenate([length[members], length[members]])
    a = np.vstack([y, np.ones_like(y)]).T * np.sqrt(wts)[:, None]
    (m, c), *_ = np.linalg.lstsq(a, x * np.sqrt(wts), rcond=None)
    return LaneLine(float(m), float(c)), float(length[members].sum())


def find_lane_lines(gray: np.ndarray) -> tuple[LaneLine, LaneLine] | None:
    """The ego lane's left and right line in one undistorted frame, or None where either is missing.

    gray: uint8 [H, W]. Classic detection: Canny edges in the lower half, HoughLinesP segments, kept when
    they lean like a lane line seen from inside the lane (left line rising to the right, on the left of the
    image, at 20-80 deg from horizontal; the right line mirrored), one dominant line fitted per side.
    """
    h, w = gray.shape
    edges = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 0), 50, 150)
    edges[: h // 2] = 0  # the road is below the horizon; above it, trees and signs make lines too
    segs = cv2.HoughLinesP(
        edges, 1, np.pi / 180, threshold=max(15, h // 30), minLineLength=max(10, h // 20), maxLineGap=max(5, h // 40)
    )
    if segs is None:
        return None
    segs = segs.reshape(-1, 4).astype(np.float64)
    dx, dy = segs[:, 2] - segs[:, 0], segs[:, 3] - segs[:, 1]
    angle = np.degrees(np.arctan2(np.abs(dy), np.abs(dx)))
    mid_x = (segs[:, 0] + segs[:, 2]) / 2
    plausible = (angle > 20) & (angle < 80)
    rising = dx * dy < 0  # y (down) falls as x grows: the left line of the lane
    left = segs[plausible & rising & (mid_x < 0.6 * w)]
    right = segs[plausible & ~rising & (mid_x > 0.4 * w)]
    fits = [_fit_dominant_line(s, h, w) for s in (left, right)]
    if any(f is None or f[1] < h / 10 for f in fits):  # too little paint behind a line to trust it
        return None
    (lf, _), (rf, _) = fits  # type: ignore[misc]
    return lf, rf


@dataclass(frozen=True)
class MountingEstimate:
    """Camera mounting measured from lane lines; angles in degrees, as in ``perception.camera_model.Mounting``.

    Attributes:
        pitch_deg, yaw_deg: from the median vanishing point (positive: looks down / turned left).
        height_m: camera height above the road that makes the ego lane ``lane_width_m`` wide.
        vanishing_point: (x, y) median vanishing point of the lane lines, undistorted pixels at image_size.
        frames_used / frames_total: frames where both lines were found, of those given.
        *_mad*: median absolute deviation over the used frames (raw MAD, not scaled to a sigma).
        Roll is not measured (one vanishing point cannot give it): the mounting gets roll 0.
    """

    pitch_deg: float
    yaw_deg: float
    height_m: float
    vanishing_point: tuple[float, float]
    frames_used: int
    frames_total: int
    pitch_mad_deg: float
    yaw_mad_deg: float
    height_mad_m: float
    vanishing_point_mad_px: tuple[float, float]
    lane_width_m: float
    image_size: tuple[int, int]

    def mounting(self) -> Mounting:
        return Mounting(height_m=self.height_m, pitch_deg=self.pitch_deg, yaw_deg=self.yaw_deg, roll_deg=0.0)

    def format(self) -> str:
        u, v = self.vanishing_point
        mu, mv = self.vanishing_point_mad_px
        w, h = self.image_size
        return "\n".join(
            [
                f"lane lines found in {self.frames_used} of {self.frames_total} frames ({w}x{h})",
                f"vanishing point ({u:.1f}, {v:.1f}) px (MAD {mu:.1f}, {mv:.1f})",
                f"pitch {self.pitch_deg:.2f} deg (MAD {self.pitch_mad_deg:.2f}), positive looks down",
                f"yaw {self.yaw_deg:.2f} deg (MAD {self.yaw_mad_deg:.2f}), positive turned left",
                f"height {self.height_m:.3f} m (MAD {self.height_mad_m:.3f}) for a {self.lane_width_m:g} m lane; "
                "roll not measured (0)",
            ]
        )


def estimate_mounting(
    frames: Iterable[np.ndarray],
    camera: CameraModel,
    lane_width_m: float = 3.7,
    min_frames: int = 10,
    source: str = "frames",
) -> MountingEstimate:
    """Pitch, yaw and height of ``camera`` from frames of driving along a straight lane.

    Args:
        frames: uint8 [H, W, 3] BGR (or [H, W] gray) frames as recorded (distorted), all at
            ``camera.image_size``; the road should be straight and flat, the car inside its lane.
        camera: intrinsics and distortion at the frames' resolution (``CameraModel.scaled_to``).
        lane_width_m: distance between the centres of the ego lane's two lines (US highways: 3.7 m).
        min_frames: fewest frames that must show both lines.
        source: a name for error messages (the video file).

    The median vanishing point of the two lines gives pitch and yaw; then the lateral distance between
    the lines on the ground, measured with a 1 m high camera at rows between the vanishing point and the
    bottom, scales the height (ground distances grow linearly with camera height). Roll is taken as 0.
    Raises InputError when fewer than ``min_frames`` frames show both lines.
    """
    if not (np.isfinite(lane_width_m) and lane_width_m > 0):
        raise ConfigError(f"lane width must be > 0 m, got {lane_width_m}")
    w, h = camera.image_size
    maps = None
    if len(camera.dist_coeffs) and np.any(camera.D):
        maps = cv2.initUndistortRectifyMap(camera.K, camera.D, None, camera.K, (w, h), cv2.CV_16SC2)
    pairs: list[tuple[LaneLine, LaneLine, float, float]] = []
    total = 0
    for frame in frames:
        total += 1
        if frame.shape[1] != w or frame.shape[0] != h:
            raise ConfigError(
                f"{source}: frame is {frame.shape[1]}x{frame.shape[0]}, the camera is {w}x{h} "
                "(scale it with CameraModel.scaled_to first)"
            )
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        if maps is not None:
            gray = cv2.remap(gray, maps[0], maps[1], cv2.INTER_LINEAR)
        lines = find_lane_lines(gray)
        vp = intersect(*lines) if lines else None
        # A vanishing point below the lower half or far outside the image means two lines that are
        # not the ego lane's (a car's edge, a crossing marking): skip the frame.
        if vp is None or not (-0.5 * w < vp[0] < 1.5 * w and -0.5 * h < vp[1] < 0.6 * h):
            continue
        pairs.append((lines[0], lines[1], vp[0], vp[1]))  # type: ignore[index]
    if len(pairs) < min_frames:
        raise InputError(
            f"{source}: lane lines (one left, one right of the ego lane) found in {len(pairs)} of {total} "
            f"frames; need >= {min_frames}: use a stretch of straight road with both lines visible"
        )
    us = np.array([p[2] for p in pairs])
    vs = np.array([p[3] for p in pairs])
    u_vp, v_vp = float(np.median(us)), float(np.median(vs))
    pitch, yaw = (float(a) for a in pitch_yaw_deg(camera, np.array(u_vp), np.array(v_vp)))
    pitches, yaws = pitch_yaw_deg(camera, us, vs)

    trial = replace(camera, mounting=Mounting(height_m=1.0, pitch_deg=pitch, yaw_deg=yaw, roll_deg=0.0))
    # Rows from 40 % of the way down from the vanishing point to the bottom: near the vanishing point a
    # pixel spans metres of road, so those rows would dominate the error.
    rows = v_vp + (h - 1 - v_vp) * np.linspace(0.4, 1.0, 7)
    widths = []
    for left, right, _, _ in pairs:
        pix = np.concatenate([np.stack([left.x_at(rows), rows], 1), np.stack([right.x_at(rows), rows], 1)])
        ground = trial.image_to_ground(pix)
        lateral = ground[: len(rows), 1] - ground[len(rows) :, 1]  # y is to the left: left line minus right
        lateral = lateral[np.isfinite(lateral) & (lateral > 0)]
        widths.append(float(np.median(lateral)) if len(lateral) else np.nan)
    widths_1m = np.array(widths)
    ok = np.isfinite(widths_1m)
    if ok.sum() < min_frames:
        raise InputError(
            f"{source}: the lane's width could be measured in {int(ok.sum())} of {total} frames; need >= {min_frames}"
        )
    heights = lane_width_m / widths_1m[ok]
    return MountingEstimate(
        pitch_deg=pitch,
        yaw_deg=yaw,
        height_m=float(lane_width_m / np.median(widths_1m[ok])),
        vanishing_point=(u_vp, v_vp),
        frames_used=len(pairs),
        frames_total=total,
        pitch_mad_deg=mad(pitches),
        yaw_mad_deg=mad(yaws),
        height_mad_m=mad(heights),
        vanishing_point_mad_px=(mad(us), mad(vs)),
        lane_width_m=float(lane_width_m),
        image_size=(w, h),
    )


def read_video_frames(path: str | os.PathLike, n: int) -> list[np.ndarray]:
    """Up to ``n`` uint8 [H, W, 3] BGR frames spread evenly over a video file (InputError if unreadable)."""
    source = VideoFileSource(path)
    try:
        total = source.expected_frames
        # Without a frame count in the container, the first n frames.
        wanted = set(np.linspace(0, total - 1, min(n, total)).round().astype(int).tolist()) if total else set(range(n))
        frames = [f.image for f in source if f.index in wanted]
    finally:
        source.close()
    return frames[:n]


# --------------------------------------------------------------------------------------------------------
# Camera YAML


def camera_yaml(camera: CameraModel, header: Sequence[str] = ()) -> str:
    """The camera YAML text (``perception.camera_model`` format) with ``header`` lines as a leading comment.

    Values are rounded far below their uncertainty (1e-4 px, 8 significant digits, 1e-4 m or deg) so the
    file stays readable.
    """
    import yaml

    data = camera.to_dict()
    data["camera_matrix"] = [[round(v, 4) for v in row] for row in data["camera_matrix"]]
    data["dist_coeffs"] = [float(f"{v:.8g}") for v in data["dist_coeffs"]]
    data["mounting"] = {k: round(float(v), 4) for k, v in data["mounting"].items()}
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header)
    return comment + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)


def write_camera_yaml(camera: CameraModel, path: str | os.PathLike, header: Sequence[str] = ()) -> Path:
    """Write ``camera_yaml`` to ``path`` and read it back through ``load_camera`` (a file that would not
    load is never left behind silently: the ConfigError names it)."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(camera_yaml(camera, header))
    except OSError as err:
        raise OutputError(f"{out}: cannot write ({err.strerror or err})") from err
    load_camera(out)
    return out


def yaml_header_comment(path: str | os.PathLike) -> list[str]:
    """The leading ``#`` comment lines of a YAML file, without the ``# `` (provenance to carry along)."""
    lines = []
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return lines


# --------------------------------------------------------------------------------------------------------
# The self-calibration over a whole video


def calibrate_auto(
    video: str | os.PathLike, pipeline, max_frames: int | None = None, lane_width_m: float | None = None
) -> tuple[CameraModel | None, object, int]:
    """Run ``pipeline`` (a Pipeline whose fusion has ``camera: auto``) over ``video`` and return (the
    estimated camera or None if it never calibrated, the final ``AutoCamera`` state, frames read).

    ``lane_width_m`` overrides the lane-width prior. The whole video (or ``max_frames``) is used: the
    estimate keeps improving after it first calls itself calibrated.
    """
    from dataclasses import replace as _replace

    from perception.fusion.self_calibration import SelfCalibration
    from perception.sources import BadFrame, open_source

    fuser = pipeline.fuser
    if fuser is None or not isinstance(fuser.auto_camera, SelfCalibration):
        raise ConfigError("calibrate --auto needs fusion with camera: auto (check the --config preset)")
    if lane_width_m is not None:
        fuser.auto_camera.settings = _replace(fuser.auto_camera.settings, lane_width_m=lane_width_m)
    source = open_source(video)
    n = 0
    try:
        for frame in source:
            if max_frames is not None and n >= max_frames:
                break
            if isinstance(frame, BadFrame):
                continue
            pipeline(frame)
            n += 1
    finally:
        source.close()
    auto = fuser.auto_camera
    return auto.camera, auto.state, n


# --------------------------------------------------------------------------------------------------------
# The camera file's header: how it was made, from what, under which assumptions


def made_with() -> str:
    """``on <date> with perception <version>, OpenCV <version>``, for a camera file's header."""
    from datetime import date

    from perception import __version__

    return f"on {date.today().isoformat()} with perception {__version__}, OpenCV {cv2.__version__}"


def chessboard_header(result: CalibrationResult, name: str, command: str, square_mm: float) -> list[str]:
    """Header lines of a camera file made from chessboard photos (``command``: the command line that made it)."""
    cols, rows = result.board
    w, h = result.camera.image_size
    not_found = ", ".join(Path(f).name for f in result.not_found) or "none"
    rejected = "; ".join(f"{Path(f).name} ({why})" for f, why in result.rejected) or "none"
    header = [
        f"Camera {name}: pinhole + OpenCV 5-coefficient distortion (k1, k2, p1, p2, k3) from chessboard photos.",
        f"made by: {command}",
        made_with(),
        f"board {cols}x{rows} inner corners ({square_mm:g} mm squares; they scale the board poses, not the "
        f"intrinsics) used in {result.boards_used} of {len(result.images)} images at {w}x{h}; "
        f"RMS reprojection error {result.rms_px:.3f} px.",
        f"board not found in: {not_found}; board rejected in: {rejected}.",
        "mounting: not measured here (defaults); see `perception calibrate --mounting`.",
    ]
    if result.cropped:
        names = ", ".join(Path(f).name for f in result.cropped)
        header.insert(-1, f"cropped at the right/bottom edge to {w}x{h} (1-2 px larger): {names}.")
    return header


def mounting_header(
    est: MountingEstimate,
    name: str,
    command: str,
    video: str,
    camera_file: str,
    camera: CameraModel,
    note: str | None = None,
) -> list[str]:
    """Header lines of a camera file whose mounting ``est`` was measured on ``video`` with the intrinsics of
    ``camera_file`` (``camera``, before scaling to the video); its own header is carried along."""
    cw, ch = camera.image_size
    w, h = est.image_size
    u, v = est.vanishing_point
    header = [
        f"Camera {name}: intrinsics and distortion of {camera_file} scaled from {cw}x{ch} to {w}x{h}, "
        "mounting from the lane lines of a video.",
        f"made by: {command}",
        made_with(),
        f"mounting: lane lines in {est.frames_used} of {est.frames_total} frames, vanishing point "
        f"({u:.1f}, {v:.1f}) px; pitch {est.pitch_deg:.2f} deg (MAD {est.pitch_mad_deg:.2f}), "
        f"yaw {est.yaw_deg:.2f} deg (MAD {est.yaw_mad_deg:.2f}), height {est.height_m:.3f} m "
        f"(MAD {est.height_mad_m:.3f}) for a {est.lane_width_m:g} m lane; roll not measured (0).",
        f"ASSUMPTION: {video} was recorded with the camera of {camera_file} (same lens, resized); "
        "if not, intrinsics and distortion are wrong and the height is off in proportion to the focal length.",
    ]
    if note:
        header.append(f"note: {note}")
    return header + [f"{camera_file} says:"] + [f"  {line}" for line in yaml_header_comment(camera_file)]


def auto_summary(state, frames: int) -> str:
    """One line on where a self-calibration (an ``AutoCamera`` state after ``frames`` frames) stands."""

    def num(v, fmt):
        return "unmeasured" if v is None else format(v, fmt)

    return (
        f"{state.frames_used} of {frames} frames used; pitch {num(state.pitch_deg, '.2f')} deg, yaw "
        f"{num(state.yaw_deg, '.2f')} deg, height {num(state.height_m, '.3f')} m ({state.height_source}), hfov "
        f"{state.hfov_deg:.2f} deg ({state.focal_source}), confidence {state.confidence:.2f}"
    )


def auto_header(name: str, command: str, model_name: str, state, frames: int) -> list[str]:
    """Header lines of a camera file estimated by the self-calibration (``calibrate_auto``)."""
    return [
        f"Camera {name}: estimated from the lane lines of a video (camera: auto), not from a chessboard.",
        f"made by: {command}",
        made_with() + f", model {model_name}",
        f"auto: {auto_summary(state, frames)}",
        "ASSUMPTIONS: principal point at the image centre, no lens distortion, roll 0; focal length from "
        f"{state.focal_source}; height from {state.height_source} (see perception/fusion/self_calibration.py).",
    ]
