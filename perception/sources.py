"""Frame sources: a video file or a folder of images → Frames.

A source yields ``Frame`` values, or ``BadFrame`` where one frame could not be read (an unreadable image
in a folder); it raises ``InputError`` when the source as a whole cannot be opened. After iteration,
``frames_read`` and ``expected_frames`` tell whether decoding stopped early (a truncated video).
Live cameras (V4L2, RTSP, GStreamer) come with the camera node.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from perception.errors import InputError
from perception.types import Frame

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class BadFrame:
    """A frame position that holds no usable image; ``reason`` is one line for the user."""

    index: int
    timestamp_s: float
    source: str
    reason: str


class FrameSource(Protocol):
    name: str
    fps: float
    expected_frames: int | None  # None when the container does not say
    frames_read: int

    def __iter__(self) -> Iterator[Frame | BadFrame]: ...

    def close(self) -> None: ...


class VideoFileSource:
    """Decodes a video file with OpenCV (FFmpeg backend). Timestamps come from the container."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.exists():
            raise InputError(f"{self.path}: file not found")
        if self.path.stat().st_size == 0:
            raise InputError(f"{self.path}: file is empty")
        self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError(f"{self.path}: not a video OpenCV can decode (no video stream found)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.expected_frames = count if count > 0 else None
        self.frames_read = 0

    def __iter__(self) -> Iterator[Frame | BadFrame]:
        index = 0
        while True:
            ok, image = self._cap.read()
            if not ok or image is None:
                break
            pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            t = pos_ms / 1000.0 if pos_ms and pos_ms > 0 else index / self.fps
            self.frames_read += 1
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            yield Frame(index=index, timestamp_s=t, image=image, source=self.name)
            index += 1
        if self.frames_read == 0:
            raise InputError(f"{self.path}: opened as video but not one frame could be decoded")

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource:
    """Images in a folder (or one image file), sorted by file name, at a nominal ``fps`` for timestamps."""

    def __init__(self, path: str | os.PathLike, fps: float = 10.0):
        self.path = Path(path)
        self.name = str(self.path)
        if self.path.is_file() and self.path.suffix.lower() in IMAGE_SUFFIXES:
            self.files = [self.path]  # one image: a folder of one
        elif not self.path.is_dir():
            raise InputError(f"{self.path}: not a folder")
        else:
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise InputError(f"{self.path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.fps = float(fps)
        self.expected_frames = len(self.files)
        self.frames_read = 0

    def __iter__(self) -> Iterator[Frame | BadFrame]:
        for index, file in enumerate(self.files):
            t = index / self.fps
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            self.frames_read += 1
            if image is None:
                yield BadFrame(index, t, str(file), "not an image OpenCV can read")
                continue
            yield Frame(index=index, timestamp_s=t, image=image, source=str(file))

    def close(self) -> None:
        pass


def open_source(path: str | os.PathLike, fps: float | None = None) -> FrameSource:
    """A video file or an image folder, by what ``path`` is; InputError when it is neither."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(p, fps=fps or 10.0)
    return VideoFileSource(p)
