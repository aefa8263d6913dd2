"""Typed values passed between pipeline stages.

Every value is a frozen dataclass that checks its shapes and dtypes when built, so a stage that hands the
next one a malformed array fails at the hand-over, not three stages later. Arrays held by these values are
made read-only: a stage that wants to change one must copy it, which keeps every stage free of side
effects on its inputs.

``Frame`` → ``Letterbox``, ``Detections``, ``SegMap`` → ``Lane``, ``EgoLane``, ``Track``, ``SceneObject``,
``Scene`` → ``FrameResult`` (everything the pipeline knows about one frame); and ``Prediction``, what any
predictor scored by ``perception eval`` returns for a frame.

Coordinate frames used throughout:

- *frame pixels*: pixels of the camera frame after optional undistortion (the image the user sees),
  x to the right, y down, origin at the top-left corner of the top-left pixel.
- *input pixels*: pixels of the letterboxed network input, ``Letterbox.input_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


def _readonly(array: np.ndarray) -> np.ndarray:
    """Return ``array`` (a view when it is writeable) flagged read-only."""
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


@dataclass(frozen=True)
class Frame:
    """One decoded camera frame.

    Attributes:
        index: 0-based position in the source (frames that failed to decode still count).
        timestamp_s: capture or presentation time in seconds from the start of the source.
        image: uint8 [H, W, 3], BGR, as OpenCV decodes it.
        source: where the frame came from (video path, image path or camera name), for messages.
    """

    index: int
    timestamp_s: float
    image: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Frame.image must be uint8 [H, W, 3] BGR, got {_describe(img)}")
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise ValueError(f"Frame.image is empty: shape {img.shape}")
        object.__setattr__(self, "image", _readonly(img))

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one preprocessing step: frame → network input, and its inverse.

    The frame (after undistortion) is cropped to ``roi``, scaled by ``scale`` and placed at
    (``pad_x``, ``pad_y``) inside an input of ``input_size``. Only this value maps boxes and masks between
    input pixels and frame pixels.

    Attributes:
        frame_size: (H, W) of the frame in frame pixels.
        input_size: (H, W) of the network input.
        roi_xywh: region of the frame fed to the network, (x, y, w, h) in frame pixels.
        scale: input pixels per frame pixel (same on both axes).
        pad_x, pad_y: left and top padding in input pixels.
    """

    frame_size: tuple[int, int]
    input_size: tuple[int, int]
    roi_xywh: tuple[int, int, int, int]
    scale: float
    pad_x: int
    pad_y: int

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"Letterbox.scale must be > 0, got {self.scale}")
        x, y, w, h = self.roi_xywh
        fh, fw = self.frame_size
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > fw or y + h > fh:
            raise ValueError(f"Letterbox.roi_xywh {self.roi_xywh} is not inside frame {fw}x{fh}")

    @property
    def content_hw(self) -> tuple[int, int]:
        """(h, w) in input pixels of the region that holds image content (the rest is padding)."""
        _, _, w, h = self.roi_xywh
        ih, iw = self.input_size
        return min(ih - self.pad_y, round(h * self.scale)), min(iw - self.pad_x, round(w * self.scale))

    def boxes_to_frame(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map boxes float [N, 4] x1,y1,x2,y2 from input pixels to frame pixels, clipped to the ROI.

        Returns a new float32 [N, 4] array; the input is not modified.
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        x, y, w, h = self.roi_xywh
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        out = (boxes - offset) / np.float32(self.scale)
        out += np.array([x, y, x, y], np.float32)
        np.clip(out[:, 0::2], x, x + w, out=out[:, 0::2])
        np.clip(out[:, 1::2], y, y + h, out=out[:, 1::2])
        return out

    def boxes_to_input(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`boxes_to_frame` (no clipping): frame pixels → input pixels, float32 [N, 4]."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        x, y, _, _ = self.roi_xywh
        out = (boxes - np.array([x, y, x, y], np.float32)) * np.float32(self.scale)
        out += np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        return out

    def crop_content(self, image: np.ndarray) -> np.ndarray:
        """The image-content part (padding removed) of an array [H_in, W_in, ...] in input pixels (a view)."""
        if tuple(image.shape[:2]) != tuple(self.input_size):
            raise ValueError(f"array shape {image.shape[:2]} does not match Letterbox.input_size {self.input_size}")
        ch, cw = self.content_hw
        return image[self.pad_y : self.pad_y + ch, self.pad_x : self.pad_x + cw]

    def input_to_roi(self, image: np.ndarray) -> np.ndarray:
        """Array [H_in, W_in, ...] in input pixels → [h, w, ...] covering the ROI in frame pixels.

        Nearest-neighbour resampling about pixel centres (``INTER_NEAREST_EXACT``: plain ``INTER_NEAREST``
        rounds down and shifts the mask by up to one input pixel against the image), so class ids (and
        colours of class ids) stay exact.
        """
        import cv2  # local: this module stays importable without OpenCV for pure-value use

        _, _, w, h = self.roi_xywh
        return cv2.resize(self.crop_content(image), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)

    def mask_to_frame(self, mask: np.ndarray, fill: int = 0) -> np.ndarray:
        """Map a class-id mask uint8 [H_in, W_in] (input pixels) to uint8 [H, W] in frame pixels.

        Pixels outside the ROI get ``fill``.
        """
        x, y, w, h = self.roi_xywh
        out = np.full(self.frame_size, fill, dtype=np.uint8)
        out[y : y + h, x : x + w] = self.input_to_roi(mask)
        return out


@dataclass(frozen=True)
class Detections:
    """A set of boxes in one coordinate frame (stated by whoever makes it).

    Attributes:
        boxes_xyxy: float32 [N, 4], x1, y1, x2, y2 with x1 <= x2 and y1 <= y2.
        scores: float32 [N], confidence in [0, 1].
        labels: int32 [N], index into the model's detection class list.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes_xyxy, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        labels = np.asarray(self.labels)
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            if not np.all(labels == np.round(labels)):
                raise ValueError("Detections.labels must be integer class ids")
        labels = labels.astype(np.int32, copy=False).reshape(-1)
        if labels.size and labels.min() < 0:
            raise ValueError("Detections.labels must be >= 0")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"Detections.boxes_xyxy must be [N, 4], got shape {boxes.shape}")
        n = boxes.shape[0]
        if scores.shape != (n,) or labels.shape != (n,):
            raise ValueError(
                f"Detections: {n} boxes but scores {scores.shape} and labels {labels.shape}; all need N={n}"
            )
        if n and (np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1])):
            raise ValueError("Detections.boxes_xyxy needs x1 <= x2 and y1 <= y2")
        object.__setattr__(self, "boxes_xyxy", _readonly(boxes))
        object.__setattr__(self, "scores", _readonly(scores))
        object.__setattr__(self, "labels", _readonly(labels))

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return int(self.boxes_xyxy.shape[0])

    def select(self, index: np.ndarray) -> Detections:
        """A new Detections with the rows picked by a boolean mask or integer index array."""
        return Detections(self.boxes_xyxy[index], self.scores[index], self.labels[index])


@dataclass(frozen=True)
class SegMap:
    """Per-pixel class ids in input pixels (map to frame pixels with ``Letterbox.mask_to_frame``).

    Attributes:
        class_ids: uint8 [H, W], values index ``class_names``.
        class_names: names of the segmentation classes, e.g. ("background", "drivable", "lane").
    """

    class_ids: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        ids = self.class_ids
        if not isinstance(ids, np.ndarray) or ids.dtype != np.uint8 or ids.ndim != 2:
            raise ValueError(f"SegMap.class_ids must be uint8 [H, W], got {_describe(ids)}")
        if not self.class_names:
            raise ValueError("SegMap.class_names is empty")
        object.__setattr__(self, "class_ids", _readonly(ids))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    def area_fractions(self, letterbox: Letterbox | None = None) -> dict[str, float]:
        """Fraction of image pixels per class, {name: fraction}; with a letterbox, padding is excluded."""
        ids = self.class_ids if letterbox is None else letterbox.crop_content(self.class_ids)
        counts = np.bincount(ids.reshape(-1), minlength=len(self.class_names))
        total = max(int(ids.size), 1)
        if counts.shape[0] > len(self.class_names):
            raise ValueError(
                f"SegMap holds class id {counts.shape[0] - 1} but only {len(self.class_names)} classes are named"
            )
        return {name: float(c) / total for name, c in zip(self.class_names, counts, strict=True)}


@dataclass(frozen=True)
class Track:
    """One tracked object in one frame, as the tracker (``fusion/tracking.py``) reports it.

    Attributes:
        track_id: stable id, >= 1, never reused within a run.
        box_xyxy: float32 [4], x1, y1, x2, y2 in frame pixels: the Kalman-filtered box.
        score: float, the score of the detection matched this frame (0 when coasting on the prediction).
        label: int, index into the detection class list.
        hits: frames in which a detection was matched to this track so far.
        age_frames: frames since the track started.
        frames_since_update: 0 when matched this frame, k when predicted for k frames without a match.
        velocity_pxps: float32 [2], box-centre velocity in frame pixels per second (x right, y down).
    """

    track_id: int
    box_xyxy: np.ndarray
    score: float
    label: int
    hits: int = 1
    age_frames: int = 1
    frames_since_update: int = 0
    velocity_pxps: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))

    def __post_init__(self) -> None:
        box = np.asarray(self.box_xyxy, dtype=np.float32).reshape(-1)
        if box.shape != (4,) or box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"Track.box_xyxy must be [4] x1,y1,x2,y2 with x1 <= x2, y1 <= y2, got {box.tolist()}")
        vel = np.asarray(self.velocity_pxps, dtype=np.float32).reshape(-1)
        if vel.shape != (2,):
            raise ValueError(f"Track.velocity_pxps must be [2], got shape {vel.shape}")
        if self.track_id < 1 or self.label < 0:
            raise ValueError(f"Track needs track_id >= 1 and label >= 0, got {self.track_id}, {self.label}")
        object.__setattr__(self, "box_xyxy", _readonly(box))
        object.__setattr__(self, "velocity_pxps", _readonly(vel))


LANE_SIDES = ("ego_left", "ego_right", "next_left", "next_right", "other")
LANE_STYLES = ("solid", "dashed", "unknown")


@dataclass(frozen=True)
class Lane:
    """One lane line: on the ground in the vehicle frame (x forward, y left, metres; origin on the ground
    below the camera) when a camera is known, and always in the image.

    Attributes:
        side: one of LANE_SIDES, relative to the ego lane.
        coeffs: (c0, c1, c2) of y(x) = c0 + c1 x + c2 x^2 in metres: c0 lateral position at the camera,
            c1 the line's direction (tan of its angle to the vehicle's x axis), c2 half its curvature (1/m);
            None without a camera (the line is known in the image only).
        x_range_m: (near, far) forward distances (m) over which the line was seen; None without a camera.
        style: one of LANE_STYLES (dashed: painted for less than ~60 % of its seen length).
        confidence: 0..1, from the length seen, the paint coverage and the fit residual.
        points_image: float32 [K, 2], the line in frame pixels (x, y), top to bottom.
        smoothed: True when the temporal filter filled in or corrected this line (not seen as-is in this frame).
    """

    side: str
    coeffs: tuple[float, float, float] | None
    x_range_m: tuple[float, float] | None
    style: str = "unknown"
    confidence: float = 0.0
    points_image: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    smoothed: bool = False

    def __post_init__(self) -> None:
        if self.side not in LANE_SIDES:
            raise ValueError(f"Lane.side must be one of {LANE_SIDES}, got {self.side!r}")
        if self.style not in LANE_STYLES:
            raise ValueError(f"Lane.style must be one of {LANE_STYLES}, got {self.style!r}")
        if (self.coeffs is None) != (self.x_range_m is None):
            raise ValueError("Lane.coeffs and Lane.x_range_m are both given (metres known) or both None")
        if self.coeffs is not None:
            if len(self.coeffs) != 3 or not all(np.isfinite(self.coeffs)):
                raise ValueError(f"Lane.coeffs must be 3 finite numbers, got {self.coeffs}")
            object.__setattr__(self, "coeffs", tuple(float(c) for c in self.coeffs))
            object.__setattr__(self, "x_range_m", tuple(float(v) for v in self.x_range_m))
        pts = np.asarray(self.points_image, dtype=np.float32).reshape(-1, 2)
        object.__setattr__(self, "points_image", _readonly(pts))

    @property
    def in_metres(self) -> bool:
        """True when the line is known on the ground (a camera was known), not only in the image."""
        return self.coeffs is not None

    def y_at(self, x_m: np.ndarray | float) -> np.ndarray:
        """Lateral position (m, left positive) of the line at forward distance(s) x_m (metric lanes only)."""
        if self.coeffs is None:
            raise ValueError("this lane is known in the image only (no camera): it has no metric position")
        c0, c1, c2 = self.coeffs
        x = np.asarray(x_m, dtype=np.float64)
        return c0 + c1 * x + c2 * x * x


@dataclass(frozen=True)
class EgoLane:
    """The lane the vehicle drives in, at the camera's position.

    Attributes:
        width_m: distance between its two lines.
        offset_m: lateral offset of the camera from the lane centre (m, left positive).
        heading_error_rad: vehicle heading relative to the lane direction (rad, left positive).
        curvature_1pm: lane curvature (1/m, positive turns left); ``radius_m`` is 1/|curvature| (inf when straight).
        left_seen, right_seen: whether each line was seen in this frame (otherwise held by the filter).
        departure: "none", "left" or "right": lane departure warning (with hysteresis).
        confidence: 0..1.
    """

    width_m: float
    offset_m: float
    heading_error_rad: float
    curvature_1pm: float
    left_seen: bool
    right_seen: bool
    departure: str = "none"
    confidence: float = 0.0

    @property
    def radius_m(self) -> float:
        return float("inf") if abs(self.curvature_1pm) < 1e-9 else 1.0 / abs(self.curvature_1pm)


OBJECT_LANES = ("ego", "left", "right", "off_road", "unknown")


@dataclass(frozen=True)
class SceneObject:
    """A tracked object placed in the scene.

    Attributes:
        track: the tracker's value (id, filtered box in frame pixels, class label, score).
        distance_m: ground distance from the camera to the object's nearest ground contact point (m), or
            None when no estimate exists (e.g. a box whose bottom lies above the horizon).
        distance_sigma_m: one standard deviation of ``distance_m`` (m), from a pixel of box-bottom error
            and the pitch uncertainty; None with ``distance_m``.
        position_m: (x forward, y left) of that contact point in the vehicle frame (m), or None.
        distance_source: "ground" (box bottom through the ground plane), "size" (box height and a class
            height prior: signs, or a box cut by the image bottom) or "none".
        lane: one of OBJECT_LANES. in_path: in the ego lane (or, without lanes, within the vehicle's
            width ahead) and on drivable road.
        closing_speed_mps: rate at which the distance shrinks (m/s, positive = approaching), or None.
        ttc_s: time to collision, distance / closing speed when approaching, else None.
    """

    track: Track
    distance_m: float | None = None
    distance_sigma_m: float | None = None
    position_m: tuple[float, float] | None = None
    distance_source: str = "none"
    lane: str = "unknown"
    in_path: bool = False
    closing_speed_mps: float | None = None
    ttc_s: float | None = None

    def __post_init__(self) -> None:
        if self.lane not in OBJECT_LANES:
            raise ValueError(f"SceneObject.lane must be one of {OBJECT_LANES}, got {self.lane!r}")
        if self.distance_source not in ("ground", "size", "none"):
            raise ValueError(f"SceneObject.distance_source must be ground, size or none, got {self.distance_source!r}")


CAMERA_STATES = ("calibrating", "calibrated")


@dataclass(frozen=True)
class AutoCamera:
    """The camera a run estimates for itself (``camera: auto``): where it stands and what it assumes.

    Attributes:
        state: "calibrating" (no metric output yet: lanes in the image only) or "calibrated" (lanes in
            metres, distances and warnings, all from the estimated camera).
        pitch_deg, yaw_deg: mounting angles from the lane lines' vanishing point (positive: looks down /
            turned left); None until measured.
        height_m: above the road, from the lane-width prior; None until measured.
        height_source: "lane width" (measured across the ego lane) or "prior" (no frame showed both lines).
        hfov_deg: horizontal field of view used; ``focal_source`` says where it came from.
        focal_source: "metadata:<tag>", "dashes" (from the dash period of the lane lines) or "prior".
        confidence: 0..1, grows with the straight, consistent frames seen.
        frames_used: frames whose lane lines went into the estimate.
    """

    state: str
    pitch_deg: float | None
    yaw_deg: float | None
    height_m: float | None
    height_source: str
    hfov_deg: float
    focal_source: str
    confidence: float
    frames_used: int

    def __post_init__(self) -> None:
        if self.state not in CAMERA_STATES:
            raise ValueError(f"AutoCamera.state must be one of {CAMERA_STATES}, got {self.state!r}")


@dataclass(frozen=True)
class Scene:
    """What fusion adds to a frame: lanes, the ego lane, placed objects and warnings.

    Attributes:
        lanes: lane lines, ego_left / ego_right first when present; in metres and in the image with a
            camera, in the image only without one.
        ego_lane: None when neither ego line is seen nor held by the filter (and without a metric camera).
        objects: tracked objects (confirmed tracks matched in this frame).
        warnings: active warnings, e.g. ("lane_departure_left", "forward_collision").
        camera: name of the camera model given (its YAML ``name``); an ``AutoCamera`` when the run
            estimates its own; None when there is neither (then no metric quantities: lanes in the image
            only, no distances; tracks still come through).
    """

    lanes: tuple[Lane, ...] = ()
    ego_lane: EgoLane | None = None
    objects: tuple[SceneObject, ...] = ()
    warnings: tuple[str, ...] = ()
    camera: str | AutoCamera | None = None


@dataclass(frozen=True)
class FrameResult:
    """Everything the pipeline knows about one frame.

    Attributes:
        frame_index, timestamp_s: copied from the Frame.
        frame_size: (H, W) of the frame in frame pixels.
        detections: boxes in frame pixels.
        det_class_names: names indexed by ``detections.labels``.
        seg: segmentation in input pixels (``letterbox`` maps it to the frame).
        letterbox: the geometry used for this frame.
        timings_ms: stage name → milliseconds spent on this frame.
        scene: the fused scene (lanes, ego lane, tracked objects, warnings), None when fusion is off.
    """

    frame_index: int
    timestamp_s: float
    frame_size: tuple[int, int]
    detections: Detections
    det_class_names: tuple[str, ...]
    seg: SegMap | None
    letterbox: Letterbox
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    scene: Scene | None = None

    def __post_init__(self) -> None:
        if len(self.detections) and int(self.detections.labels.max()) >= len(self.det_class_names):
            raise ValueError(
                f"FrameResult: label {int(self.detections.labels.max())} but only "
                f"{len(self.det_class_names)} detection classes"
            )
        object.__setattr__(self, "timings_ms", dict(self.timings_ms))


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__


@dataclass(frozen=True)
class Prediction:
    """What a predictor scored by ``perception eval`` returns for one frame (our pipeline, a peer model, a COCO
    teacher): everything in frame pixels.

    Attributes:
        seg: uint8 [H, W] class ids (0 background, 1 drivable, 2 lane), or None for a detector only.
        boxes: float32 [N, 4] x1, y1, x2, y2 in frame pixels.
        scores: float32 [N].
        labels: int64 [N], indices into the detection classes (car, pedestrian, cyclist, traffic_sign).
    """

    seg: np.ndarray | None
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
