"""Camera angles from the vanishing point of the lane lines: straight image lines, where they cross, and the
pitch and yaw that put the forward direction there. Shared by the online self-calibration
(``self_calibration.py``) and ``perception calibrate --mounting`` (``perception/calibration.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.camera_model import CameraModel


@dataclass(frozen=True)
class LaneLine:
    """A straight image line x = slope * y + offset, in undistorted pixels (x right, y down)."""

    slope: float  # dx/dy
    offset: float  # x at y = 0

    def x_at(self, y: np.ndarray | float) -> np.ndarray | float:
        return self.slope * np.asarray(y, np.float64) + self.offset


def intersect(left: LaneLine, right: LaneLine) -> tuple[float, float] | None:
    """Where two image lines cross, (x, y) in pixels; None for parallel lines."""
    if abs(left.slope - right.slope) < 1e-9:
        return None
    y = (right.offset - left.offset) / (left.slope - right.slope)
    return float(left.x_at(y)), float(y)


def pitch_yaw_deg(camera: CameraModel, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pitch and yaw (deg) that put the forward direction's vanishing point at (u, v).

    With p_cam = R_pitch R_yaw base p (``CameraModel.rotation``), the forward axis images at
    u = cx + fx tan(yaw) / cos(pitch), v = cy - fy tan(pitch).
    """
    k = camera.K
    pitch = np.arctan((k[1, 2] - np.asarray(v, np.float64)) / k[1, 1])
    yaw = np.arctan((np.asarray(u, np.float64) - k[0, 2]) * np.cos(pitch) / k[0, 0])
    return np.degrees(pitch), np.degrees(yaw)


def mad(values: np.ndarray) -> float:
    """Median absolute deviation (raw, not scaled to a Gaussian sigma)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(np.abs(values - np.median(values)))) if len(values) else float("nan")
