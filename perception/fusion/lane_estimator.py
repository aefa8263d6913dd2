"""Per frame: lane mask → named lane lines and the filtered ego lane, as the scene's ``Lane`` values.

``LaneEstimator`` runs the ground-plane line finder (``lane_lines.py``) and the ego-lane filter
(``ego_lane.py``) and turns their lines back into image polylines.
"""

from __future__ import annotations

import math

import numpy as np

from perception.camera_model import CameraModel
from perception.frames import EgoLane, Lane, Letterbox, SegMap
from perception.fusion.ego_lane import LaneFilter, measure_ego_lane
from perception.fusion.lane_lines import GroundGrid, LaneSettings, LineFit, assign_sides, find_lines, lane_points_ground


def ego_lines_from_state(
    ego: EgoLane, seen: dict[str, LineFit], camera: CameraModel, undistorted_frame: bool
) -> list[Lane]:
    """The filtered ego lane as its two lines (smooth from frame to frame), with the per-frame fits'
    seen range, style and confidence where the line was seen this frame."""
    c1 = -math.tan(ego.heading_error_rad)
    c2 = ego.curvature_1pm / 2.0
    half = ego.width_m / 2 / math.cos(math.atan(c1))
    centre = -ego.offset_m
    lanes = []
    for side, c0 in (("ego_left", centre + half), ("ego_right", centre - half)):
        fit = seen.get(side)
        x_range = fit.x_range_m if fit is not None else (5.0, 25.0)
        coeffs = (c0, c1, c2)
        lanes.append(
            Lane(
                side=side,
                coeffs=coeffs,
                x_range_m=x_range,
                style=fit.style if fit is not None else "unknown",
                confidence=fit.confidence if fit is not None else 0.3 * ego.confidence,
                points_image=line_pixels(coeffs, x_range, camera, undistorted_frame),
                smoothed=True,
            )
        )
    return lanes


def line_pixels(
    coeffs: tuple[float, float, float], x_range_m: tuple[float, float], camera: CameraModel, undistorted_frame: bool
) -> np.ndarray:
    """A ground curve sampled every metre → float32 [K, 2] frame pixels (distorted when the frame is)."""
    lo, hi = x_range_m
    x = np.arange(lo, hi + 0.5, 1.0) if hi > lo else np.array([lo])
    c0, c1, c2 = coeffs
    pts = np.column_stack([x, c0 + c1 * x + c2 * x * x, np.zeros_like(x)])
    uv, depth = camera.project(pts, distort=not undistorted_frame)
    ok = (depth > 0) & np.all(np.isfinite(uv), axis=1)
    return uv[ok].astype(np.float32)


def fit_to_lane(side: str, fit: LineFit, camera: CameraModel, undistorted_frame: bool) -> Lane:
    return Lane(
        side=side,
        coeffs=fit.coeffs,
        x_range_m=fit.x_range_m,
        style=fit.style,
        confidence=fit.confidence,
        points_image=line_pixels(fit.coeffs, fit.x_range_m, camera, undistorted_frame),
    )


class LaneEstimator:
    """Per frame: lane mask → named lines and the filtered ego lane. Stateful (the filter, the priors);
    one instance per video stream, frames in order.

    Args:
        camera: at frame resolution (``CameraModel.scaled_to``).
        undistorted_frame: True when preprocessing undistorts the frames (pixels are then pinhole pixels).
        lane_class: segmentation class id of lane paint.
        settings, filter: search settings and the ego-lane filter.
    """

    def __init__(
        self,
        camera: CameraModel,
        undistorted_frame: bool,
        lane_class: int,
        settings: LaneSettings = LaneSettings(),  # noqa: B008 - frozen, shared safely
        lane_filter: LaneFilter | None = None,
    ):
        self.camera = camera
        self.undistorted_frame = undistorted_frame
        self.lane_class = lane_class
        self.settings = settings
        self.filter = lane_filter or LaneFilter()
        self._priors: tuple[float, ...] = ()
        self._grid: GroundGrid | None = None

    def reset(self) -> None:
        self.filter.reset()
        self._priors = ()

    def update(self, seg: SegMap, letterbox: Letterbox, timestamp_s: float) -> tuple[list[Lane], EgoLane | None]:
        if self._grid is None or self._grid.letterbox != letterbox:
            self._grid = GroundGrid(letterbox, self.camera, not self.undistorted_frame)
        x, y = lane_points_ground(
            seg, letterbox, self.camera, self.lane_class, not self.undistorted_frame, self.settings, self._grid
        )
        fits = find_lines(x, y, self.settings, self._priors)
        width_hint = float(self.filter.state[3]) if self.filter.state is not None else None
        sides = assign_sides(fits, width_hint)
        measurement = measure_ego_lane(sides, width_hint, fits)
        ego = self.filter.update(measurement, timestamp_s)
        lanes: list[Lane] = []
        if ego is not None:
            lanes.extend(ego_lines_from_state(ego, sides, self.camera, self.undistorted_frame))
        named = {id(f) for f in sides.values()}
        for side in ("next_left", "next_right"):
            if side in sides:
                lanes.append(fit_to_lane(side, sides[side], self.camera, self.undistorted_frame))
        for f in fits:
            if id(f) not in named:
                lanes.append(fit_to_lane("other", f, self.camera, self.undistorted_frame))
        if ego is None:
            # Without an ego lane the nearest lines keep their measured (unfiltered) form.
            for side in ("ego_left", "ego_right"):
                if side in sides:
                    lanes.insert(0, fit_to_lane(side, sides[side], self.camera, self.undistorted_frame))
        self._priors = tuple(lane.coeffs[0] for lane in lanes if lane.side != "other")
        return lanes, ego
