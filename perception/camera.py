"""Camera model: intrinsics, lens distortion and mounting, loaded from a camera YAML.

One low module shared by preprocessing (undistortion), and later the synthetic world, lane fitting and
fusion (ground-plane geometry). Camera YAML::

    name: udacity_dashcam
    image_size: [1280, 720]          # width, height the intrinsics were calibrated at
    camera_matrix: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    dist_coeffs: [k1, k2, p1, p2, k3]  # OpenCV order; 4, 5, 8, 12 or 14 values
    mounting: {height_m: 1.3, pitch_deg: 0.0, yaw_deg: 0.0, roll_deg: 0.0}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from perception.config import from_dict, load_config
from perception.errors import ConfigError


@dataclass(frozen=True)
class Mounting:
    height_m: float = 1.3  # camera above the ground plane
    pitch_deg: float = 0.0  # positive looks down
    yaw_deg: float = 0.0
    roll_deg: float = 0.0


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
        k = self.K
        if k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] != 1 or k[1, 0] or k[2, 0] or k[2, 1]:
            raise ValueError(f"camera_matrix must be [[fx,0,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0, got {k.tolist()}")
        if len(self.dist_coeffs) not in (0, 4, 5, 8, 12, 14):
            raise ValueError(f"dist_coeffs needs 0, 4, 5, 8, 12 or 14 values, got {len(self.dist_coeffs)}")

    @property
    def K(self) -> np.ndarray:
        """float64 [3, 3] intrinsic matrix."""
        return np.array(self.camera_matrix, dtype=np.float64)

    @property
    def D(self) -> np.ndarray:
        """float64 [k] distortion coefficients."""
        return np.array(self.dist_coeffs, dtype=np.float64)

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

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "image_size": list(self.image_size),
            "camera_matrix": [list(r) for r in self.camera_matrix],
            "dist_coeffs": list(self.dist_coeffs),
            "mounting": vars(self.mounting).copy(),
        }


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
