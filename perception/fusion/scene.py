"""FrameResult (boxes, masks) → Scene: tracked objects with distance, lane, closing speed and TTC; the ego
lane from ``lane_estimator.py``; lane departure and forward collision warnings.

Distances come from the ground plane: the bottom centre of a box is where the object stands, and the
camera's ground homography turns that pixel into metres. Where that point is not usable (the box is cut
by the image bottom, its bottom lies above the horizon, or the class does not stand on the road: traffic
signs), the box height and a typical object height give a rougher estimate (``distance_source`` "size").
Each track's distance is then filtered over time (constant closing-speed Kalman filter), which gives the
closing speed and time to collision.

Stateful: one ``SceneFuser`` per stream, frames in order. Nothing here raises on odd input in the live
loop; unusable quantities are None and the reason is in the value (``distance_source``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.camera_model import CameraModel
from perception.errors import ConfigError
from perception.frames import AutoCamera, EgoLane, FrameResult, Lane, Scene, SceneObject, Track
from perception.fusion.ego_lane import LaneFilter
from perception.fusion.image_lane_hold import ImageLaneHold
from perception.fusion.image_lanes import RoadExtent, find_image_lines, find_road_edges, image_lanes
from perception.fusion.lane_estimator import LaneEstimator
from perception.fusion.lane_lines import LaneSettings
from perception.fusion.self_calibration import SelfCalibration
from perception.fusion.tracking import ByteTracker

# Typical heights (m) for the size-based fallback; a sign is its plate (signs stand on poles, off the road).
CLASS_HEIGHT_M = {"car": 1.5, "pedestrian": 1.7, "cyclist": 1.7, "traffic_sign": 0.7}
OFF_GROUND_CLASSES = ("traffic_sign",)


@dataclass(frozen=True)
class WarningSettings:
    """Forward collision warning: an in-path object closer in time than ``fcw_ttc_s`` for ``fcw_frames``
    frames raises it; it clears once no in-path TTC is below ``fcw_ttc_s + fcw_hysteresis_s``."""

    fcw_ttc_s: float = 2.5
    fcw_hysteresis_s: float = 0.5
    fcw_frames: int = 2
    min_closing_mps: float = 0.5  # slower closing is measurement noise, not an approaching object


class RangeFilter:
    """Kalman filter on [distance m, rate m/s] for one track, time-aware, with measurement sigma per frame."""

    ACCEL_SIGMA = 6.0  # m/s^2: relative acceleration (both cars braking or speeding up, plus box jitter)

    def __init__(self, distance: float, sigma: float, timestamp_s: float):
        self.t = timestamp_s
        self._start(distance, sigma)

    def _start(self, distance: float, sigma: float) -> None:
        self.x = np.array([distance, 0.0])
        self.p = np.diag([sigma**2, 10.0**2])  # closing speed unknown: 10 m/s either way
        self.updates = 1

    def update(self, distance: float, sigma: float, timestamp_s: float) -> None:
        dt = timestamp_s - self.t
        if not math.isfinite(dt) or dt <= 0:
            dt = 1e-3
        self.t = timestamp_s
        f = np.array([[1.0, dt], [0.0, 1.0]])
        q = self.ACCEL_SIGMA**2 * np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt**2]])
        self.x = f @ self.x
        self.p = f @ self.p @ f.T + q
        s = self.p[0, 0] + sigma**2
        if (distance - self.x[0]) ** 2 > 25.0 * s:
            # A jump beyond five sigma (the box bottom moved to another object or a wrong contact): restart.
            self._start(distance, sigma)
            return
        k = self.p[:, 0] / s
        self.x = self.x + k * (distance - self.x[0])
        self.p = self.p - np.outer(k, self.p[0, :])
        self.updates += 1

    @property
    def distance(self) -> float:
        return float(self.x[0])

    @property
    def sigma(self) -> float:
        return float(math.sqrt(max(self.p[0, 0], 0.0)))

    @property
    def closing_speed(self) -> float:
        return float(-self.x[1])


def ground_distance(
    box_xyxy: np.ndarray, camera: CameraModel, undistort_points: bool, pitch_sigma_deg: float = 0.3
) -> tuple[float, float, tuple[float, float], float] | None:
    """Box bottom centre (frame pixels) → (distance m, sigma m, (x, y) vehicle frame m, noise sigma m), or
    None above the horizon.

    Sigma combines 1.5 px of box-bottom error with ``pitch_sigma_deg`` of camera pitch uncertainty, both
    mapped through the ground plane: d(distance)/dv grows with the square of the distance. The noise sigma
    is the box-bottom part alone: a pitch error is a bias shared by consecutive frames, so it must not be
    averaged away by (nor slow down) a filter over frames.
    """
    # Boxes have pixel edges at integers (pixel i spans [i, i + 1], x2/y2 exclusive); the camera model has
    # pixel centres at integers (OpenCV). The box's bottom edge is therefore at y2 - 0.5 in camera pixels;
    # using y2 put the contact half a pixel low, i.e. too near: -2 % at 30 m on a 500 px focal length.
    u = (float(box_xyxy[0]) + float(box_xyxy[2])) / 2 - 0.5
    v = float(box_xyxy[3]) - 0.5
    g = camera.image_to_ground(np.array([[u, v], [u, v - 1.0]]), distorted=undistort_points)
    if not np.all(np.isfinite(g)):
        return None
    x, y = float(g[0, 0]), float(g[0, 1])
    dist = math.hypot(x, y)
    per_px = abs(math.hypot(*g[1]) - dist)  # metres one pixel up the image moves the contact point
    sigma_v = math.hypot(1.5, math.radians(pitch_sigma_deg) * camera.K[1, 1])
    return dist, max(per_px * sigma_v, 0.05), (x, y), max(per_px * 1.5, 0.05)


def size_distance(box_xyxy: np.ndarray, height_m: float, camera: CameraModel) -> tuple[float, float]:
    """Distance (m) and sigma (m, 20 % for the spread of real object heights) from the box height."""
    h_px = max(float(box_xyxy[3] - box_xyxy[1]), 1.0)
    dist = camera.K[1, 1] * height_m / h_px
    return dist, 0.2 * dist


class SceneFuser:
    """Per frame: track the detections, estimate lanes, place objects, raise warnings.

    Args:
        det_classes, seg_classes: the model's class names (lane and drivable ids are looked up by name).
        camera: camera model at any resolution of the frame's aspect ratio (scaled on the first frame);
            a ``SelfCalibration`` to estimate one from the lane lines while driving (lanes in the image
            until it is calibrated); or None: lanes in the image only, no distances.
        undistorted_frame: preprocessing undistorts frames (their pixels are then pinhole pixels).
        tracker: the multi-object tracker (a ByteTracker by default).
        lane_settings, lane_filter: the lane search and ego-lane filter.
        warnings: forward collision warning thresholds.
        vehicle_width_m: ego vehicle width, for the in-path test when no lane is known.
    """

    def __init__(
        self,
        det_classes: tuple[str, ...],
        seg_classes: tuple[str, ...],
        camera: CameraModel | SelfCalibration | None,
        undistorted_frame: bool = False,
        tracker: ByteTracker | None = None,
        lane_settings: LaneSettings | None = None,
        lane_filter: LaneFilter | None = None,
        warnings: WarningSettings = WarningSettings(),
        vehicle_width_m: float = 1.8,
    ):
        self.det_classes = tuple(det_classes)
        self.seg_classes = tuple(seg_classes)
        self.auto_camera = camera if isinstance(camera, SelfCalibration) else None
        self.camera_base = None if self.auto_camera is not None else camera
        self._auto_revision = 0
        self.undistorted_frame = undistorted_frame
        self.tracker = tracker or ByteTracker()
        self.lane_settings = lane_settings or LaneSettings()
        self.lane_filter = lane_filter or LaneFilter(vehicle_width_m=vehicle_width_m)
        self.warning_settings = warnings
        self.vehicle_width_m = vehicle_width_m
        self.lane_class = self.seg_classes.index("lane") if "lane" in self.seg_classes else None
        road = [i for i, n in enumerate(self.seg_classes) if n in ("drivable", "road", "lane")]
        self.road_classes = np.array(road, np.uint8)
        self._camera: CameraModel | None = None
        self._frame_size: tuple[int, int] | None = None
        self._lanes: LaneEstimator | None = None
        self._ranges: dict[int, RangeFilter] = {}
        self.image_hold = ImageLaneHold()
        self._fcw_count = 0
        self._fcw_on = False

    def reset(self) -> None:
        self.tracker.reset()
        if self.auto_camera is not None:
            self.auto_camera.reset()
            self._auto_revision = 0
            self._camera = self._lanes = None
        if self._lanes is not None:
            self._lanes.reset()  # the filter and the previous frame's line positions
        else:
            self.lane_filter.reset()
        self._ranges.clear()
        self.image_hold.reset()
        self._fcw_count = 0
        self._fcw_on = False

    def _camera_for(self, frame_size: tuple[int, int]) -> CameraModel | None:
        if self.auto_camera is not None:
            return self._auto_camera_for()
        if self.camera_base is None:
            return None
        if frame_size != self._frame_size:
            h, w = frame_size
            try:
                self._camera = self.camera_base.scaled_to(w, h)
            except ValueError as err:  # another aspect ratio: the camera file does not describe this stream
                raise ConfigError(str(err)) from err
            self._frame_size = frame_size
            if self.lane_class is not None:
                self._lanes = LaneEstimator(
                    self._camera, self.undistorted_frame, self.lane_class, self.lane_settings, self.lane_filter
                )
        return self._camera

    def _auto_camera_for(self) -> CameraModel | None:
        """The self-calibrated camera (None while calibrating); what is derived from it follows each revision."""
        auto = self.auto_camera
        if auto.revision != self._auto_revision:
            self._auto_revision = auto.revision
            self._camera = auto.camera
            if self.lane_class is not None:
                # The filter's state carries over: a revision refines the camera, the lane is the same.
                self._lanes = LaneEstimator(
                    self._camera, self.undistorted_frame, self.lane_class, self.lane_settings, self.lane_filter
                )
        return self._camera

    def _image_lanes(self, result: FrameResult) -> list[Lane]:
        """Lanes in the image (no camera, or one still calibrating), fed to the self-calibration."""
        seen = find_image_lines(result.seg, result.letterbox, self.lane_class)
        lines, sides, held = self.image_hold.update(seen, result.frame_size, result.timestamp_s)
        road = RoadExtent(result.seg, result.letterbox, self.road_classes, result.detections.boxes_xyxy)
        if self.auto_camera is not None:
            # it measures only the lines this frame shows, named with the held ones in the order, so that a
            # dashed ego line in a gap does not hand its name (and a lane twice as wide) to the next line out
            edges = find_road_edges(result.seg, result.letterbox, self.road_classes, result.detections.boxes_xyxy)
            shown = [(ln, side) for ln, side, h in zip(lines, sides, held, strict=True) if not h]
            self.auto_camera.update(
                [ln for ln, _ in shown], [side for _, side in shown], result.frame_size, result.timestamp_s, edges, road
            )
        return image_lanes(lines, sides, result.frame_size, road)

    def check_frame_size(self, frame_size: tuple[int, int]) -> None:
        """Raise ConfigError now (before a run starts) if the camera cannot describe frames of this size."""
        self._camera_for(frame_size)

    def update(self, result: FrameResult) -> Scene:
        lanes: list[Lane] = []
        image_only: list[Lane] = []
        if self.camera_base is None and self.lane_class is not None and result.seg is not None:
            image_only = self._image_lanes(result)
        camera = self._camera_for(result.frame_size)
        tracks = self.tracker.update(result.detections, result.timestamp_s)
        ego: EgoLane | None = None
        if camera is not None and self._lanes is not None and result.seg is not None:
            lanes, ego = self._lanes.update(result.seg, result.letterbox, result.timestamp_s)
        else:
            lanes = image_only
        objects = [self._place(t, camera, result, lanes, ego) for t in tracks]
        held = self.tracker.live_ids()  # includes every track reported this frame
        for tid in [k for k in self._ranges if k not in held]:
            del self._ranges[tid]
        warnings = []
        if ego is not None and ego.departure != "none":
            warnings.append(f"lane_departure_{ego.departure}")
        if self._forward_collision(objects):
            warnings.append("forward_collision")
        return Scene(
            lanes=tuple(lanes),
            ego_lane=ego,
            objects=tuple(objects),
            warnings=tuple(warnings),
            camera=self._camera_record(camera),
        )

    def _camera_record(self, camera: CameraModel | None) -> str | AutoCamera | None:
        if self.auto_camera is not None:
            return self.auto_camera.state
        return camera.name if camera is not None else None

    def _place(
        self, track: Track, camera: CameraModel | None, result: FrameResult, lanes: list[Lane], ego: EgoLane | None
    ) -> SceneObject:
        if camera is None:
            return SceneObject(track=track)
        name = self.det_classes[track.label] if track.label < len(self.det_classes) else ""
        box = track.box_xyxy
        h_frame = result.frame_size[0]
        cut_by_bottom = float(box[3]) >= h_frame - 2  # the ground contact is below the image
        measured = None  # (distance, total sigma, per-frame noise sigma)
        source = "none"
        position = None
        if name not in OFF_GROUND_CLASSES and not cut_by_bottom:
            g = ground_distance(box, camera, not self.undistorted_frame)
            if g is not None:
                measured, source, position = (g[0], g[1], g[3]), "ground", g[2]
        if measured is None and name in CLASS_HEIGHT_M:
            d, sig = size_distance(box, CLASS_HEIGHT_M[name], camera)
            # Most of a size estimate's error is the object's true height, constant over frames.
            measured, source = (d, sig, 0.05 * d), "size"
        if measured is None:
            self._ranges.pop(track.track_id, None)
            return SceneObject(track=track, lane="unknown")
        rf = self._ranges.get(track.track_id)
        if rf is None:
            rf = self._ranges[track.track_id] = RangeFilter(measured[0], measured[2], result.timestamp_s)
        else:
            rf.update(measured[0], measured[2], result.timestamp_s)
        bias_var = max(measured[1] ** 2 - measured[2] ** 2, 0.0)
        closing = rf.closing_speed if rf.updates >= 4 else None
        ttc = None
        if closing is not None and closing > self.warning_settings.min_closing_mps:
            ttc = rf.distance / closing
        if position is not None and rf.distance > 0 and measured[0] > 0:
            # Report the filtered distance along the measured bearing.
            scale = rf.distance / math.hypot(*position)
            position = (position[0] * scale, position[1] * scale)
        lane, in_path = self._lane_of(position, box, result, ego, lanes, name)
        return SceneObject(
            track=track,
            distance_m=rf.distance,
            distance_sigma_m=math.sqrt(rf.sigma**2 + bias_var),
            position_m=position,
            distance_source=source,
            lane=lane,
            in_path=in_path,
            closing_speed_mps=closing,
            ttc_s=ttc,
        )

    def _on_road(self, box: np.ndarray, result: FrameResult) -> bool | None:
        """Whether the pixels just under the box are road or lane paint; None when that cannot be seen."""
        seg = result.seg
        if seg is None:
            return None
        lb = result.letterbox
        # Sample the middle half of a thin strip below the box, in input pixels.
        x1, x2 = float(box[0]) * 0.75 + float(box[2]) * 0.25, float(box[0]) * 0.25 + float(box[2]) * 0.75
        y = float(box[3])
        strip = lb.boxes_to_input(np.array([[x1, y + 1, x2, y + 1 + max(3.0, 0.1 * (box[3] - box[1]))]]))[0]
        ih, iw = lb.input_size
        xa, xb = int(max(0, strip[0])), int(min(iw, math.ceil(strip[2])))
        ya, yb = int(max(0, strip[1])), int(min(ih, math.ceil(strip[3]) + 1))
        if xb <= xa or yb <= ya:
            return None
        ids = seg.class_ids[ya:yb, xa:xb]
        return bool(np.isin(ids, self.road_classes).mean() >= 0.3)

    def _lane_of(
        self,
        position: tuple[float, float] | None,
        box: np.ndarray,
        result: FrameResult,
        ego: EgoLane | None,
        lanes: list[Lane],
        name: str,
    ) -> tuple[str, bool]:
        if position is None or name in OFF_GROUND_CLASSES:
            return ("off_road" if name in OFF_GROUND_CLASSES else "unknown"), False
        x, y = position
        on_road = self._on_road(box, result)
        left = next((ln for ln in lanes if ln.side == "ego_left"), None)
        right = next((ln for ln in lanes if ln.side == "ego_right"), None)
        if ego is not None and left is not None and right is not None:
            yl, yr = float(left.y_at(x)), float(right.y_at(x))
            lane = "ego" if yr <= y <= yl else ("left" if y > yl else "right")
        else:
            half = self.vehicle_width_m / 2 + 0.5
            lane = "ego" if abs(y) <= half else ("left" if y > 0 else "right")
            if ego is None and not lanes:
                lane = "unknown" if on_road is None else lane
        if on_road is False and lane != "ego":
            lane = "off_road"
        in_path = lane == "ego" and x > 0 and on_road is not False
        return lane, in_path

    def _forward_collision(self, objects: list[SceneObject]) -> bool:
        ws = self.warning_settings
        ttcs = [o.ttc_s for o in objects if o.in_path and o.ttc_s is not None]
        closest = min(ttcs, default=math.inf)
        if closest < ws.fcw_ttc_s:
            self._fcw_count += 1
        else:
            self._fcw_count = 0
        if not self._fcw_on and self._fcw_count >= ws.fcw_frames:
            self._fcw_on = True
        elif self._fcw_on and closest > ws.fcw_ttc_s + ws.fcw_hysteresis_s:
            self._fcw_on = False
        return self._fcw_on
