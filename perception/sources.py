"""Frame sources: a video file or a folder of images → Frames.

A source yields ``Frame`` values, or ``BadFrame`` where one frame could not be read (an unreadable image
in a folder); it raises ``InputError`` when the source as a whole cannot be opened. After iteration,
``frames_read`` and ``expected_frames`` tell whether decoding stopped early (a truncated video).

Live cameras (a V4L2 device, an RTSP/HTTP stream, a GStreamer pipeline, or a video file played at its
own rate) are ``Grabber`` values: one blocking ``read`` per image, opened from a ``CameraSpec``. The camera
node (``perception/live/``) reads them in its own thread and reconnects when they fail.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from perception.errors import InputError
from perception.frames import Frame

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class BadFrame:
    """A frame position that holds no usable image; ``reason`` is one line for the user."""

    index: int
    timestamp_s: float
    source: str
    reason: str


def size_change_reason(frame_hw: tuple[int, int], stream_hw: tuple[int, int]) -> str:
    """Why a frame of another size than the stream's first is not used (one line, WxH)."""
    return f"frame is {frame_hw[1]}x{frame_hw[0]}, the stream is {stream_hw[1]}x{stream_hw[0]}"


class FrameSource(Protocol):
    name: str
    fps: float
    expected_frames: int | None  # None when the container does not say
    frames_read: int

    def __iter__(self) -> Iterator[Frame | BadFrame]: ...

    def close(self) -> None: ...


class VideoFileSource:
    """Decodes a video file with OpenCV (FFmpeg backend). Timestamps come from the container.

    ``start``, ``end``: only frames [start, end) (to the end when None), with the indices and timestamps
    they have in the whole file: the fleet runs ranges of one drive on several workers. The seek is exact
    (FFmpeg seeks to the key frame before ``start`` and decodes forward); a container that cannot seek is
    decoded from its start and the frames before ``start`` skipped.
    """

    def __init__(self, path: str | os.PathLike, start: int = 0, end: int | None = None):
        self.start, self.end = int(start), end
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

    def _seek(self) -> bool:
        """Position the decoder at frame ``start``; False when the file has fewer frames."""
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, self.start)
        if int(round(self._cap.get(cv2.CAP_PROP_POS_FRAMES))) == self.start:
            return True
        self._cap.release()
        self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        return all(self._cap.grab() for _ in range(self.start))

    def __iter__(self) -> Iterator[Frame | BadFrame]:
        index = self.start
        if self.start > 0 and not self._seek():
            return
        while self.end is None or index < self.end:
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
        if self.frames_read == 0 and self.start == 0:  # a range past the end is empty, not broken
            raise InputError(f"{self.path}: opened as video but not one frame could be decoded")

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource:
    """Images in a folder (or one image file), sorted by file name, at a nominal ``fps`` for timestamps."""

    def __init__(self, path: str | os.PathLike, fps: float = 10.0, start: int = 0, end: int | None = None):
        self.start, self.end = int(start), end
        self.path = Path(path)
        self.name = str(self.path)
        # root: the folder the images are named relative to (annotated images keep that relative path)
        self.root = self.path.parent if self.path.is_file() else self.path
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
        for index, file in enumerate(self.files[self.start : self.end], start=self.start):
            t = index / self.fps
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            self.frames_read += 1
            if image is None:
                yield BadFrame(index, t, str(file), "not an image OpenCV can read")
                continue
            yield Frame(index=index, timestamp_s=t, image=image, source=str(file))

    def close(self) -> None:
        pass


def open_source(
    path: str | os.PathLike, fps: float | None = None, start: int = 0, end: int | None = None
) -> FrameSource:
    """A video file or an image folder, by what ``path`` is; InputError when it is neither.

    ``start``, ``end``: only frames [start, end), indexed and timed as in the whole source.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(p, fps=fps or 10.0, start=start, end=end)
    return VideoFileSource(p, start=start, end=end)


STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
CAMERA_KINDS = ("v4l2", "stream", "gstreamer", "file")


@dataclass(frozen=True)
class CameraSpec:
    """Where live frames come from.

    Attributes:
        kind: "v4l2" (a /dev/videoN device or an index), "stream" (RTSP/HTTP/... URL, FFmpeg),
            "gstreamer" (a pipeline string ending in appsink) or "file" (a video file simulating a camera).
        target: the device index, device path, URL, pipeline or file path.
        realtime: file only: deliver frames at the file's frame rate, as a camera would; otherwise as fast
            as they are read.
        loop: file only: start again at the end (a soak test runs for hours on a short clip).
    """

    kind: str
    target: str | int
    realtime: bool = True
    loop: bool = False

    @property
    def name(self) -> str:
        return f"/dev/video{self.target}" if isinstance(self.target, int) else str(self.target)

    @property
    def is_file(self) -> bool:
        return self.kind == "file"


def parse_camera_source(text: str, realtime: bool = True, loop: bool = False) -> CameraSpec:
    """``--source`` text → CameraSpec; InputError naming the source when it is none of the kinds.

    ``0`` or ``/dev/video0``: V4L2. ``rtsp://...``, ``http://...``: a stream. Text with ``!``: a GStreamer
    pipeline. Anything else must be an existing video file.
    """
    t = text.strip()
    if not t:
        raise InputError(
            "--source is empty: give /dev/videoN or an index, a stream URL, a GStreamer pipeline or a video file"
        )
    if t.isdigit():
        return CameraSpec("v4l2", int(t))
    if t.startswith("/dev/video"):
        return CameraSpec("v4l2", t)
    if "!" in t:
        return CameraSpec("gstreamer", t)
    scheme = t.split("://", 1)[0].lower() if "://" in t else ""
    if scheme in STREAM_SCHEMES:
        return CameraSpec("stream", t)
    if scheme:
        raise InputError(f"{t}: unknown stream scheme '{scheme}://' (known: {', '.join(STREAM_SCHEMES)})")
    path = Path(t)
    if not path.exists():
        raise InputError(
            f"{t}: no such file or device (a source is /dev/videoN or an index, an rtsp:// or http:// URL, "
            "a GStreamer pipeline with '!', or a video file)"
        )
    if path.is_dir():
        raise InputError(f"{t}: is a folder; the camera node takes a video file (`perception run` takes folders)")
    if path.stat().st_size == 0:
        raise InputError(f"{t}: file is empty")
    return CameraSpec("file", str(path), realtime=realtime, loop=loop)


class Grabber(Protocol):
    """A live source, opened. ``read`` blocks until the next image (BGR uint8 [H, W, 3]) and returns None
    when the source ended or failed (``end_reason`` says which; ``ended`` is True only for a file that
    played to its end, which is not a failure)."""

    name: str
    fps: float | None
    ended: bool
    end_reason: str

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


def _has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    for line in info.splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.upper()
    return False


class OpenCVGrabber:
    """A CameraSpec opened with cv2.VideoCapture (V4L2, FFmpeg or GStreamer backend).

    V4L2 devices keep a one-frame driver buffer (a deep buffer would hand out old frames); streams get
    open and read timeouts so a dead server fails a read instead of blocking for FFmpeg's default. A file
    with ``realtime`` is paced to its frame rate; with ``loop`` it restarts at its end.
    """

    STREAM_TIMEOUT_MS = 5000

    def __init__(self, spec: CameraSpec):
        self.spec = spec
        self.name = spec.name
        self.ended = False
        self.end_reason = ""
        if spec.kind not in CAMERA_KINDS:
            raise InputError(f"{spec.name}: unknown camera kind '{spec.kind}' (known: {', '.join(CAMERA_KINDS)})")
        if spec.kind == "gstreamer" and not _has_gstreamer():
            raise InputError(
                f"{spec.name}: this OpenCV build has no GStreamer support (the PyPI wheels do not); "
                "use an OpenCV built with GStreamer (the Jetson image has one)"
            )
        self._cap = self._open()
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps <= 1000 else None
        self._start_wall: float | None = None
        self._played = 0  # frames delivered since the (re)start of a file, for pacing

    def _open(self) -> cv2.VideoCapture:
        spec = self.spec
        if spec.kind == "v4l2":
            cap = cv2.VideoCapture(spec.target, cv2.CAP_V4L2)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        elif spec.kind == "stream":
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self.STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self.STREAM_TIMEOUT_MS,
            ]
            cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
        elif spec.kind == "gstreamer":
            cap = cv2.VideoCapture(str(spec.target), cv2.CAP_GSTREAMER)
        else:
            cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            what = {"v4l2": "camera device", "stream": "stream", "gstreamer": "GStreamer pipeline", "file": "video"}[
                spec.kind
            ]
            raise InputError(f"{spec.name}: cannot open the {what}")
        return cap

    def read(self) -> np.ndarray | None:
        if self.spec.is_file and self.spec.realtime and self.fps:
            now = time.monotonic()
            if self._start_wall is None:
                self._start_wall = now
            due = self._start_wall + self._played / self.fps
            if due > now:
                time.sleep(due - now)
        try:
            ok, image = self._cap.read()
        except cv2.error as err:  # a corrupt stream can raise from inside the decoder
            ok, image = False, None
            self.end_reason = f"decoder error: {err}".splitlines()[0]
        if not ok or image is None:
            if self.spec.is_file and not self.end_reason:
                if self.spec.loop and self._played > 0:
                    self._cap.release()
                    self._cap = self._open()
                    self._start_wall, self._played = None, 0
                    return self.read()
                self.ended = True
                self.end_reason = "end of file"
            elif not self.end_reason:
                self.end_reason = "no frame (device unplugged, stream ended or read timed out)"
            return None
        self._played += 1
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        return image

    def close(self) -> None:
        self._cap.release()
