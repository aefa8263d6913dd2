"""Camera model: intrinsics, lens distortion and mounting, loaded from a camera YAML.

One low module shared by preprocessing (undistortion), and later the synthetic world, lane fitting and
fusion (ground-plane geometry). Camera YAML::

    name: udacity_dashcam
    image_size: [1280, 720]          # width, height the intrinsics were calibrated at
    camera_matrix: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    dist_coeffs: [k1, k2, p1, p2, k3]  # OpenCV order; 4, 5, 8, 12 or 14 values
    mounting: {height_m: 1.3, pitch_deg: 0.0, yaw_deg: 0.0, roll_deg: 0.0}

Ground geometry uses the vehicle frame of ISO 8855: x forward, y left, z up, in metres, origin on the
ground plane below the camera. The camera frame is OpenCV's: x right, y down, z along the optical axis.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from perception.config import from_dict, load_config
from perception.errors import ConfigError

MAX_HEIGHT_M = 10.0  # above a truck cab or a mast: no vehicle camera, a typo or centimetres
MAX_ANGLE_DEG = 45.0  # a forward camera tilted or turned further does not see the road ahead


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


@dataclass(frozen=True)
class Mounting:
    """Where the camera sits on the vehicle. Keys are named as in the YAML (``mounting.height_m``)."""

    height_m: float = 1.3  # camera above the ground plane
    pitch_deg: float = 0.0  # positive looks down
    yaw_deg: float = 0.0
    roll_deg: float = 0.0

    def __post_init__(self) -> None:
        for name in ("height_m", "pitch_deg", "yaw_deg", "roll_deg"):
            value = getattr(self, name)
            if not _finite(value):
                raise ValueError(f"mounting.{name} must be a finite number, got {value!r}")
        if self.height_m <= 0:
            raise ValueError(f"mounting.height_m must be > 0 m (camera above the road), got {self.height_m}")
        if self.height_m > MAX_HEIGHT_M:
            raise ValueError(
                f"mounting.height_m = {self.height_m} m is absurd for a vehicle camera (> {MAX_HEIGHT_M:g} m; "
                "metres, not centimetres)"
            )
        for name in ("pitch_deg", "yaw_deg", "roll_deg"):
            value = getattr(self, name)
            if abs(value) > MAX_ANGLE_DEG:
                raise ValueError(
                    f"mounting.{name} must be within +-{MAX_ANGLE_DEG:g} deg (degrees, not radians?), got {value}"
                )


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera with OpenCV distortion.

    Attributes:
        image_size: (width, height) in pixels the intrinsics refer to.
        camera_matrix: 3x3 K as nested tuples (fx, 0, cx / 0, fy, cy / 0, 0, 1).
        dist_coeffs: OpenCV distortion coefficients (k1, k2, p1, p2[, k3, ...]).
    """

    image_size: tuple[int, int]
    camera_matrix: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    dist_coeffs: tuple[float, ...] = ()
    name: str = "camera"
    mounting: Mounting = field(default_factory=Mounting)

    def __post_init__(self) -> None:
        size = self.image_size
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise ValueError(f"image_size must be two positive integers [width, height], got {size!r}")
        bad = [
            f"camera_matrix[{i}][{j}]"
            for i, row in enumerate(self.camera_matrix)
            for j, v in enumerate(row)
            if not _finite(v)
        ] + [f"dist_coeffs[{i}]" for i, v in enumerate(self.dist_coeffs) if not _finite(v)]
        if bad:
            raise ValueError(f"{bad[0]} must be a finite number (no NaN or inf)")
        k = self.K
        if k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] != 1 or k[1, 0] or k[2, 0] or k[2, 1]:
            raise ValueError(f"camera_matrix must be [[fx,0,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0, got {k.tolist()}")
        if len(self.dist_coeffs) not in (0, 4, 5, 8, 12, 14):
            raise ValueError(f"dist_coeffs needs 0, 4, 5, 8, 12 or 14 values, got {len(self.dist_coeffs)}")
        # Pixel centres sit at integer coordinates, so the image spans -0.5 .. size - 0.5.
        w, h = size
        if not (-0.5 <= k[0, 2] <= w - 0.5 and -0.5 <= k[1, 2] <= h - 0.5):
            raise ValueError(
                f"camera_matrix principal point (cx, cy) = ({k[0, 2]:g}, {k[1, 2]:g}) lies outside the "
                f"{w}x{h} image of image_size (intrinsics for another resolution?)"
            )

    @property
    def K(self) -> np.ndarray:
        """float64 [3, 3] intrinsic matrix."""
        return np.array(self.camera_matrix, dtype=np.float64)

    @property
    def D(self) -> np.ndarray:
        """float64 [k] distortion coefficients."""
        return np.array(self.dist_coeffs, dtype=np.float64)

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view of the pinhole (degrees): the image width over the focal length."""
        return math.degrees(2 * math.atan(self.image_size[0] / 2 / self.camera_matrix[0][0]))

    def scaled_to(self, width: int, height: int) -> CameraModel:
        """The same camera at another resolution of the same aspect ratio (intrinsics scale, distortion not).

        Raises ValueError when the aspect ratio differs (a crop, not a resize: intrinsics would be wrong).
        """
        w0, h0 = self.image_size
        if (width, height) == (w0, h0):
            return self
        sx, sy = width / w0, height / h0
        if abs(sx - sy) > 0.01 * max(sx, sy):
            raise ValueError(
                f"camera '{self.name}' was calibrated at {w0}x{h0}; frames are {width}x{height}, "
                "a different aspect ratio, so its intrinsics do not apply"
            )
        k = self.K
        k[0, 0] *= sx
        k[1, 1] *= sy
        # Pixel centres sit at integer coordinates, so the principal point scales about -0.5, not 0.
        k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
        k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
        return replace(self, image_size=(width, height), camera_matrix=tuple(tuple(r) for r in k.tolist()))

    @property
    def rotation(self) -> np.ndarray:
        """float64 [3, 3] R with p_cam = R @ (p_vehicle - [0, 0, height_m]).

        Yaw turns the camera left, then pitch tilts it down, then roll turns the image clockwise as seen
        by the viewer (all in degrees, all about the camera's own axes).
        """
        return _rotation(self.mounting.yaw_deg, self.mounting.pitch_deg, self.mounting.roll_deg).copy()

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """float64 [N, 3] vehicle-frame points (m) -> [N, 3] camera-frame points (m)."""
        p = np.asarray(points, np.float64).reshape(-1, 3) - (0.0, 0.0, self.mounting.height_m)
        return p @ self.rotation.T

    def project(self, points: np.ndarray, distort: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Vehicle-frame points [N, 3] (m) -> (pixels float64 [N, 2] x, y; depth float64 [N] in m).

        Points with depth <= 0 lie behind the camera and their pixels are meaningless (check depth).
        ``distort`` applies the lens distortion (pixels as a real, distorting lens would record them).
        """
        pc = self.to_camera(points)
        depth = pc[:, 2]
        z = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
        xn, yn = pc[:, 0] / z, pc[:, 1] / z
        if distort and len(self.dist_coeffs):
            import cv2

            norm = np.stack([xn, yn, np.ones_like(xn)], 1)
            uv, _ = cv2.projectPoints(norm, np.zeros(3), np.zeros(3), self.K, self.D)
            uv = uv.reshape(-1, 2)
            # Past the radius where the radial polynomial stops growing, the model folds far-off rays back
            # into the image; such points are not seen by this lens, so they get NaN pixels.
            uv[np.hypot(xn, yn) > self.max_distortion_radius()] = np.nan
            return uv, depth
        k = self.K
        return np.stack([k[0, 0] * xn + k[0, 2], k[1, 1] * yn + k[1, 2]], 1), depth

    def max_distortion_radius(self) -> float:
        """Normalised radius up to which the radial distortion r (1 + k1 r^2 + k2 r^4 + k3 r^6) increases."""
        return _max_distortion_radius(tuple(self.dist_coeffs))

    def ground_to_image(self) -> np.ndarray:
        """float64 [3, 3] homography H: [u, v, 1] ~ H @ [x, y, 1] for ground points (z = 0) in metres."""
        r = self.rotation
        t = -r @ np.array([0.0, 0.0, self.mounting.height_m])
        return self.K @ np.column_stack([r[:, 0], r[:, 1], t])

    def image_to_ground(self, pixels: np.ndarray, distorted: bool = False) -> np.ndarray:
        """Pixels [N, 2] -> ground points [N, 2] (x forward, y left, m); NaN above the horizon.

        ``distorted``: the pixels are as the lens recorded them (the frame was not undistorted), so they are
        undistorted first; the inverse of ``project(..., distort=True)``.
        """
        uv = np.asarray(pixels, np.float64).reshape(-1, 2)
        if distorted and len(self.dist_coeffs) and len(uv):
            import cv2

            uv = cv2.undistortPoints(uv.reshape(-1, 1, 2), self.K, self.D, P=self.K).reshape(-1, 2)
        g = np.linalg.solve(self.ground_to_image(), np.column_stack([uv, np.ones(len(uv))]).T).T
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = g[:, :2] / g[:, 2:3]
        xy[(g[:, 2] <= 0) | (xy[:, 0] <= 0)] = np.nan  # a ray that never meets the ground ahead
        return xy

    def horizon_y(self, x: float | None = None) -> float:
        """Image row of the horizon (vanishing line of the ground plane) at column x (default: centre)."""
        x = (self.image_size[0] - 1) / 2 if x is None else x
        # The horizon is the image of ground directions at infinity: the line l = H^-T [0, 0, 1].
        line = np.linalg.inv(self.ground_to_image()).T @ np.array([0.0, 0.0, 1.0])
        return float(-(line[0] * x + line[2]) / line[1])

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "image_size": list(self.image_size),
            "camera_matrix": [[float(v) for v in r] for r in self.camera_matrix],
            "dist_coeffs": [float(v) for v in self.dist_coeffs],
            "mounting": vars(self.mounting).copy(),
        }


# Both are asked for on every projection in the live loop (lane and box geometry); they depend only on a
# few numbers, so they are computed once per value.
@functools.lru_cache(maxsize=64)
def _rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    # Vehicle axes to an unrotated camera looking forward: cam x = -y, cam y = -z, cam z = x.
    base = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    yaw, pitch, roll = np.radians([yaw_deg, pitch_deg, roll_deg])
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    r_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    out = r_roll @ r_pitch @ r_yaw @ base
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=64)
def _max_distortion_radius(dist_coeffs: tuple[float, ...]) -> float:
    d = list(dist_coeffs) + [0.0] * 5
    k1, k2, k3 = d[0], d[1], d[4]
    r = np.linspace(0.0, 4.0, 4001)
    grow = 1 + 3 * k1 * r**2 + 5 * k2 * r**4 + 7 * k3 * r**6  # d/dr of r * (1 + k1 r^2 + ...)
    bad = np.flatnonzero(grow <= 0)
    return float(r[bad[0]]) if len(bad) else float("inf")


def load_camera(path: str | os.PathLike) -> CameraModel:
    """Load and validate a camera YAML; errors name the file and the key."""
    try:
        return load_config(path, CameraModel)
    except ValueError as err:
        raise ConfigError(f"{Path(path)}: {err}") from err


def camera_from_dict(data: dict, source: str = "<dict>") -> CameraModel:
    try:
        return from_dict(CameraModel, data, source)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from err
