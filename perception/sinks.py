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

``JsonlSink`` is the one JSON-lines writer: ``perception run``'s results.jsonl, and (``RotatingJsonlSink``) the
camera node's log, one of the ``RecordSink`` destinations the node publishes each record to.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from perception.errors import ConfigError, OutputError
from perception.frames import FrameResult, Scene
from perception.paths import ensure_writable_dir

log = logging.getLogger(__name__)

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


class RecordSink(Protocol):
    """A destination for each frame's record in the camera node: the JSONL log (``RotatingJsonlSink``), UDP,
    ZeroMQ, ROS 2 (``perception.live``). ``publish`` gets the record once serialised (``line``: one JSON
    object, UTF-8, no newline) and never raises: a failure is counted in ``errors``, because a consumer that
    went away must not stop the node."""

    name: str
    sent: int
    errors: int

    def publish(self, record: dict[str, Any], line: bytes, result: FrameResult) -> None: ...

    def close(self) -> None: ...


class CountedSink:
    """``sent``/``errors`` counters and one log line per distinct failure (a dead consumer would flood the log)."""

    name = "output"

    def __init__(self) -> None:
        self.sent = 0
        self.errors = 0
        self._logged: set[str] = set()

    def _failed(self, why: str) -> None:
        self.errors += 1
        if why not in self._logged:
            self._logged.add(why)
            log.warning("output %s: %s (counted; logged once)", self.name, why)


def _open_for_writing(path: Path):
    try:
        return open(path, "wb")
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror})") from err


class JsonlSink(CountedSink):
    """The one JSON-lines writer: one object per line, each line flushed, so a crash or a power cut leaves
    every written line valid.

    ``perception run`` writes ``results.jsonl`` with ``write``: a failed write raises, and the run stops and
    says so. The camera node writes its log through ``publish`` (``RecordSink``): a failed write (a full
    disk) is counted and logged once, and the node keeps running. ``RotatingJsonlSink`` is the same writer
    over a folder of size-capped files.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)
        self.name = f"jsonl:{self.path}"
        self._file = _open_for_writing(self.path)

    def write(self, record: dict[str, Any], line: bytes | None = None) -> None:
        """Append ``record`` (``line``: the record already serialised, compact JSON without a newline)."""
        if line is None:
            line = json.dumps(record, separators=(",", ":")).encode()
        self._write_line(line)

    def _write_line(self, line: bytes) -> None:
        self._file.write(line + b"\n")
        self._file.flush()
        self.sent += 1

    def publish(self, record: dict[str, Any], line: bytes, result: FrameResult) -> None:
        try:
            self.write(record, line)
        except (OSError, OutputError) as err:  # a full disk: count it, keep the node up
            self._failed(f"write failed: {err}")

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


class RotatingJsonlSink(JsonlSink):
    """JSON lines in ``folder``: ``<prefix>-<UTC start time>.jsonl``, a new file past ``max_bytes``, the oldest
    deleted beyond ``keep`` files (the camera node's log). Other files in the folder are never touched."""

    def __init__(self, folder: str | os.PathLike, max_bytes: int = 100 * 2**20, keep: int = 10, prefix: str = "camera"):
        CountedSink.__init__(self)
        if max_bytes <= 0 or keep <= 0:
            raise ConfigError(f"JSONL log: max size ({max_bytes} bytes) and files kept ({keep}) must be > 0")
        self.folder = ensure_writable_dir(folder)
        self.name = f"jsonl:{self.folder}"
        self.max_bytes = max_bytes
        self.keep = keep
        self.prefix = prefix
        self.files: list[Path] = []
        self._file = None
        self._size = 0
        self._open_new()

    @property
    def path(self) -> Path:
        """The file being written."""
        return self.files[-1]

    def _open_new(self) -> None:
        if self._file is not None:
            self._file.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.folder / f"{self.prefix}-{stamp}.jsonl"
        n = 1
        while path.exists() or path in self.files:
            path = self.folder / f"{self.prefix}-{stamp}-{n}.jsonl"
            n += 1
        self._file = _open_for_writing(path)
        self.files.append(path)
        self._size = 0
        # Oldest first: earlier runs' files by time, then this run's in the order written (not by mtime: a
        # clock that started behind, or coarse timestamps, must not make the file just opened look oldest).
        earlier = [p for p in self.folder.glob(f"{self.prefix}-*.jsonl") if p not in self.files]
        existing = sorted(earlier, key=lambda p: p.stat().st_mtime) + [p for p in self.files if p.exists()]
        for old in existing[: max(0, len(existing) - self.keep)]:
            old.unlink(missing_ok=True)
            if old in self.files:
                self.files.remove(old)

    def _write_line(self, line: bytes) -> None:
        if self._size > 0 and self._size + len(line) + 1 > self.max_bytes:
            self._open_new()
        super()._write_line(line)
        self._size += len(line) + 1


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
