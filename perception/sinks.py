"""Where results go: JSON lines (flushed per frame) and an annotated video.

JSONL line (one per frame position, in order)::

    {"frame": 12, "t": 0.48, "size": [540, 960],
     "detections": [{"box": [x1, y1, x2, y2], "score": 0.91, "class": "car", "class_id": 0}, ...],
     "seg_area": {"background": 0.61, "drivable": 0.35, "lane": 0.04},
     "timings_ms": {"decode": 1.2, "preprocess": 0.6, "inference": 14.0, "postprocess": 0.1, "render": 3.1}}

Boxes are in frame pixels (x1, y1, x2, y2; undistorted when undistortion is on). ``seg_area`` is the
fraction of the processed region (ROI, padding excluded) per class. A frame position that held no
usable image gets ``{"frame": i, "t": t, "error": "..."}`` instead, so line count = frames read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.errors import OutputError
from perception.types import SceneResult


def scene_to_json(result: SceneResult, timings_ms: dict[str, float] | None = None) -> dict[str, Any]:
    """A SceneResult as the JSONL record above (plain Python types, rounded for size)."""
    dets = result.detections
    names = result.det_class_names
    return {
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
    }


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove a file can be written there; OutputError otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".perception-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"{path}: output folder is not writable ({err.strerror or err})") from err
    return path


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
