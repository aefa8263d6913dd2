"""Typed values passed between pipeline stages.

Every value is a frozen dataclass that checks its shapes and dtypes when built, so a stage that hands the
next one a malformed array fails at the hand-over, not three stages later. Arrays held by these values are
made read-only: a stage that wants to change one must copy it, which keeps every stage free of side
effects on its inputs.

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
        import cv2  # local: types stays importable without OpenCV for pure-value use

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
class SceneResult:
    """Everything the pipeline knows about one frame.

    Attributes:
        frame_index, timestamp_s: copied from the Frame.
        frame_size: (H, W) of the frame in frame pixels.
        detections: boxes in frame pixels.
        det_class_names: names indexed by ``detections.labels``.
        seg: segmentation in input pixels (``letterbox`` maps it to the frame).
        letterbox: the geometry used for this frame.
        timings_ms: stage name → milliseconds spent on this frame.
    """

    frame_index: int
    timestamp_s: float
    frame_size: tuple[int, int]
    detections: Detections
    det_class_names: tuple[str, ...]
    seg: SegMap | None
    letterbox: Letterbox
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.detections) and int(self.detections.labels.max()) >= len(self.det_class_names):
            raise ValueError(
                f"SceneResult: label {int(self.detections.labels.max())} but only "
                f"{len(self.det_class_names)} detection classes"
            )
        object.__setattr__(self, "timings_ms", dict(self.timings_ms))


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__
