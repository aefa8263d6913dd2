"""Where results go: JSON lines (flushed per frame) and an annotated video, or annotated images.

JSONL line (one per frame position, in order)::

    {"schema": "perception.frame/2", "frame": 12, "t": 0.48, "size": [540, 960],
     "detections": [{"box": [x1, y1, x2, y2], "score": 0.91, "class": "car", "class_id": 0}, ...],
     "seg_area": {"background": 0.61, "drivable": 0.35, "lane": 0.04},
     "timings_ms": {"decode": 1.2, "preprocess": 0.6, "inference": 14.0, "postprocess": 0.1, "render": 3.1},
     "scene": {"camera": "udacity", "ego_lane": {"width_m": 3.6, "offset_m": -0.12, ...},
               "lanes": [{"side": "ego_left", "coeffs_m": [1.7, 0.01, 0.0002], ...}, ...],
               "objects": [{"track_id": 3, "class": "car", "distance_m": 23.4, "ttc_s": null, ...}, ...],
               "warnings": []}}

Every field, its unit and its meaning: ``perception/schema/frame.schema.json`` (JSON Schema 2020-12,
versioned by the ``schema`` value; ``scene`` is null when fusion is off).

Boxes are in frame pixels (x1, y1, x2, y2; undistorted when undistortion is on). ``seg_area`` is the
fraction of the processed region (ROI, padding excluded) per class. A frame position that held no
usable image gets ``{"frame": i, "t": t, "error": "..."}`` instead, so line count = frames read.

A video gives one annotated video (``VideoSink``); an image folder gives one annotated image per input
image (``ImageSink``) with the input's file name and extension, at its path relative to the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.errors import OutputError
from perception.frames import FrameResult, Scene

SCHEMA_ID = "perception.frame/2"
SCHEMA_PATH = Path(__file__).parent / "schema" / "frame.schema.json"


# points_px: the lane's x every this many frame rows (TuSimple's spacing).
POINTS_ROW_STEP_PX = 10


def _rows_polyline(points: np.ndarray) -> list[list[float]]:
    """A lane's image polyline (float [K, 2] x, y) → [[x, y], ...] at the rows that are multiples of
    ``POINTS_ROW_STEP_PX`` within its rows, x interpolated, top to bottom."""
    if len(points) < 2:
        return [[round(float(x), 1), round(float(y), 1)] for x, y in points]
    order = np.argsort(points[:, 1], kind="stable")
    x, y = points[order, 0].astype(np.float64), points[order, 1].astype(np.float64)
    rows = np.arange(np.ceil(y[0] / POINTS_ROW_STEP_PX), np.floor(y[-1] / POINTS_ROW_STEP_PX) + 1) * POINTS_ROW_STEP_PX
    return [[round(float(xi), 1), float(r)] for xi, r in zip(np.interp(rows, y, x), rows, strict=True)]


def _camera_record(camera) -> str | dict | None:
    """The scene's camera: a file camera's name, or the self-calibrating camera's state."""
    if camera is None or isinstance(camera, str):
        return camera
    return {
        "source": "auto",
        "state": camera.state,
        "pitch_deg": _num(camera.pitch_deg, 3),
        "yaw_deg": _num(camera.yaw_deg, 3),
        "height_m": _num(camera.height_m, 3),
        "height_source": camera.height_source,
        "hfov_deg": _num(camera.hfov_deg, 2),
        "focal_source": camera.focal_source,
        "confidence": _num(camera.confidence, 3),
        "frames_used": camera.frames_used,
    }


def _num(value: float | None, digits: int) -> float | None:
    """Rounded float, or None for None/NaN/inf (JSON has no NaN)."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def scene_json(scene: Scene, det_class_names: tuple[str, ...]) -> dict[str, Any]:
    """The fused part of a frame record (see the schema file for units)."""
    ego = scene.ego_lane
    return {
        "camera": _camera_record(scene.camera),
        "ego_lane": None
        if ego is None
        else {
            "width_m": _num(ego.width_m, 3),
            "offset_m": _num(ego.offset_m, 3),
            "heading_error_rad": _num(ego.heading_error_rad, 5),
            "curvature_1pm": _num(ego.curvature_1pm, 6),
            "radius_m": _num(ego.radius_m, 1),
            "left_seen": ego.left_seen,
            "right_seen": ego.right_seen,
            "departure": ego.departure,
            "confidence": _num(ego.confidence, 3),
        },
        "lanes": [
            {
                "side": ln.side,
                "coeffs_m": None
                if ln.coeffs is None
                else [_num(ln.coeffs[0], 4), _num(ln.coeffs[1], 6), _num(ln.coeffs[2], 7)],
                "x_range_m": None if ln.x_range_m is None else [_num(v, 2) for v in ln.x_range_m],
                "points_px": _rows_polyline(ln.points_image),
                "style": ln.style,
                "confidence": _num(ln.confidence, 3),
                "smoothed": ln.smoothed,
            }
            for ln in scene.lanes
        ],
        "objects": [
            {
                "track_id": o.track.track_id,
                "class": det_class_names[o.track.label] if o.track.label < len(det_class_names) else str(o.track.label),
                "box": [round(float(v), 2) for v in o.track.box_xyxy],
                "score": round(float(o.track.score), 4),
                "age_frames": o.track.age_frames,
                "distance_m": _num(o.distance_m, 2),
                "distance_sigma_m": _num(o.distance_sigma_m, 2),
                "position_m": None if o.position_m is None else [_num(v, 2) for v in o.position_m],
                "distance_source": o.distance_source,
                "lane": o.lane,
                "in_path": o.in_path,
                "closing_speed_mps": _num(o.closing_speed_mps, 2),
                "ttc_s": _num(o.ttc_s, 2),
            }
            for o in scene.objects
        ],
        "warnings": list(scene.warnings),
    }


def scene_to_json(result: FrameResult, timings_ms: dict[str, float] | None = None) -> dict[str, Any]:
    """A FrameResult as the JSONL record above (plain Python types, rounded for size)."""
    dets = result.detections
    names = result.det_class_names
    return {
        "schema": SCHEMA_ID,
        "frame": result.frame_index,
        "t": round(result.timestamp_s, 6),
        "size": list(result.frame_size),
        "detections": [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 4),
                "class": names[int(label)],
                "class_id": int(label),
            }
            for box, score, label in zip(dets.boxes_xyxy, dets.scores, dets.labels, strict=True)
        ],
        "seg_area": (
            {k: round(v, 5) for k, v in result.seg.area_fractions(result.letterbox).items()}
            if result.seg is not None
            else None
        ),
        "timings_ms": {k: round(v, 3) for k, v in (timings_ms or result.timings_ms).items()},
        "scene": scene_json(result.scene, names) if result.scene is not None else None,
    }


def error_to_json(frame_index: int, timestamp_s: float, reason: str) -> dict[str, Any]:
    """The JSONL record of a frame position that holds no usable frame (see the module docstring)."""
    return {"schema": SCHEMA_ID, "frame": frame_index, "t": round(timestamp_s, 6), "error": reason}


class JsonlSink:
    """Appends one JSON object per line and flushes each, so a crash leaves every written line valid."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._file = open(self.path, "w", encoding="utf-8")
        except OSError as err:
            raise OutputError(f"{self.path}: cannot write ({err.strerror})") from err

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class VideoSink:
    """Writes frames to a video; opens on the first frame so its size comes from the stream."""

    def __init__(self, path: str | os.PathLike, fps: float, fourcc: str = "mp4v"):
        self.path = Path(path)
        self.fps = fps
        self.fourcc = fourcc
        self.size_wh: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | None = None
        self.frames_written = 0

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                raise OutputError(f"{self.path}: OpenCV cannot open a '{self.fourcc}' video writer here")
            self.size_wh = (w, h)
        elif (w, h) != self.size_wh:
            raise ValueError(f"{self.path}: frame {w}x{h} differs from the video's {self.size_wh[0]}x{self.size_wh[1]}")
        self._writer.write(image)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class ImageSink:
    """Writes each annotated frame as an image named like the input image it came from.

    ``root`` is the input folder: the image ``root/a/b.png`` is written to ``folder/a/b.png`` (same
    relative path, file name and extension, so the format is the input's: a PNG stays lossless, a JPEG is
    re-encoded at OpenCV's default quality 95). An image from outside ``root`` is written under its bare
    file name. OutputError when ``folder`` is the input folder itself (it would overwrite the inputs) or an
    image cannot be written.
    """

    def __init__(self, folder: str | os.PathLike, root: str | os.PathLike):
        self.folder = Path(folder)
        self.root = Path(root)
        if self.folder.resolve() == self.root.resolve():
            raise OutputError(f"{self.folder}: annotated images would overwrite the input images there")
        self.images_written = 0

    def target(self, source_path: str | os.PathLike) -> Path:
        """Where the annotated version of the input image ``source_path`` goes."""
        src = Path(source_path)
        try:
            rel = src.relative_to(self.root)
        except ValueError:
            rel = Path(src.name)
        return self.folder / rel

    def write(self, image: np.ndarray, source_path: str | os.PathLike) -> Path:
        """Write ``image`` (uint8 [H, W, 3] BGR) as the annotated version of ``source_path``; return its path."""
        path = self.target(source_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            ok = cv2.imwrite(str(path), image)
        except (OSError, cv2.error) as err:
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise OutputError(f"{path}: cannot write the annotated image ({reason})") from err
        if not ok:
            raise OutputError(f"{path}: OpenCV could not write the annotated image")
        self.images_written += 1
        return path

    def close(self) -> None:
        pass
