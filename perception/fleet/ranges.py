"""A drive split into frame ranges: the plan, the frames of a range, and its ``.npz`` file.

A range [start, end) of a video is decoded from its start (an exact seek: OpenCV's FFmpeg backend seeks
to the key frame before ``start`` and decodes forward), batched through the network (no fusion: that is
stateful and runs per video in merge.py) and written as one ``.npz`` per range, atomically (a temporary
file renamed into place), so a range file either holds the whole range or does not exist. The last range
of a video is open-ended (``end`` None): a container whose frame count is wrong loses no frame. The worker
that runs a range through the network is ``worker.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from perception.frames import Frame, Letterbox
from perception.sources import BadFrame, open_source

LETTERBOX_FIELDS = 11  # frame h, w; input h, w; roi x, y, w, h; scale; pad x, y


def count_frames(path: Path) -> tuple[int | None, float]:
    """(frames the container or folder says it holds, or None; frames/s, as ``perception run`` times them)."""
    source = open_source(path)
    source.close()
    return source.expected_frames, source.fps


def plan_ranges(frames: int | None, range_frames: int) -> list[tuple[int, int | None]]:
    """[start, end) ranges of ``range_frames``; the last one open-ended. Unknown count: one open range."""
    if range_frames < 1:
        raise ValueError(f"range_frames must be >= 1, got {range_frames}")
    if not frames:
        return [(0, None)]
    starts = list(range(0, frames, range_frames))
    return [(s, s + range_frames) for s in starts[:-1]] + [(starts[-1], None)]


def range_name(start: int, end: int | None) -> str:
    return f"{start:09d}-{'end' if end is None else f'{end:09d}'}.npz"


def iter_range(path: Path, start: int, end: int | None) -> Iterator[Frame | BadFrame]:
    """Frames ``start`` .. ``end`` - 1 (to the end when None), with the indices and timestamps a
    ``perception run`` of the whole input gives them."""
    source = open_source(path, start=start, end=end)
    try:
        yield from source
    finally:
        source.close()


def letterbox_row(lb: Letterbox) -> list[float]:
    """A Letterbox as the ``LETTERBOX_FIELDS`` numbers of a range file row (``letterbox_from_row`` reads it)."""
    return [*lb.frame_size, *lb.input_size, *lb.roi_xywh, lb.scale, lb.pad_x, lb.pad_y]


def letterbox_from_row(row: np.ndarray) -> Letterbox:
    r = [float(v) for v in row]
    return Letterbox(
        (int(r[0]), int(r[1])),
        (int(r[2]), int(r[3])),
        (int(r[4]), int(r[5]), int(r[6]), int(r[7])),
        r[8],
        int(r[9]),
        int(r[10]),
    )


def write_range_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed to a temporary name, fsync, rename: the file is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
