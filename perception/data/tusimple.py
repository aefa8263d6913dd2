"""TuSimple lane-detection layout: JSON-lines label files and clip folders of images.

Layout of a dataset folder ``DIR``::

    DIR/label_data_0313.json ...   # JSON lines (train/val labels), and/or
    DIR/test_label.json            # JSON lines (test labels)
    DIR/clips/<date>/<clip>/20.jpg # images, found by each line's raw_file (relative to DIR)

One line per labelled image: ``{"lanes": [[x, ...], ...], "h_samples": [y, ...], "raw_file": "clips/.../20.jpg"}``;
each lane has one x per row of ``h_samples`` (image pixels), ``-2`` (any negative value) where the lane is
absent on that row. Images may have any size; x and y are in that image's pixels.

Which label files a split reads: ``DIR/<split>.json`` when it exists (e.g. ``--split label_data_0531``), else
``train`` reads ``label_data*.json``, ``test`` reads ``test_label.json``, and any other split (``perception
eval``'s default ``val``, or ``all``) reads every one of them.

Every label line is checked when the dataset is opened (valid JSON object, the three keys, numbers, one x
per h_sample, the image file present, no raw_file twice); a bad one is a ``DatasetError`` naming the file
and line. Images are decoded when a sample is loaded.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.data.base import Dataset
from perception.data.classmap import ClassMap
from perception.data.io import read_image
from perception.data.sample import DET_CLASSES, SEG_CLASSES, DatasetError, Sample

TRAIN_GLOB = "label_data*.json"
TEST_FILE = "test_label.json"
ABSENT = -2.0  # TuSimple's x for "no lane on this row" (written as the integer -2)
H_STEP = 10  # label rows every 10 pixels, as TuSimple
TUSIMPLE_HEIGHT = 720  # TuSimple's frames: 1280x720, rows 160..710
TUSIMPLE_FIRST_ROW = 160

# Lane polylines only: no masks, no boxes. The class lists are the project's, so a predictor's classes
# match; lane_labelled False because there is no lane mask.
TUSIMPLE_CLASS_MAP = ClassMap(SEG_CLASSES, DET_CLASSES, lane_labelled=False, source="<tusimple: lane polylines>")


def tusimple_h_samples(height: int) -> np.ndarray:
    """TuSimple's label rows scaled to an image ``height``: every 10 px from the row at 160/720 of the height
    (rounded to a multiple of 10) to the last multiple of 10 at least 10 px above the bottom.

    int64 [R]; 160, 170, ..., 710 for 720 rows (TuSimple's own); 80, ..., 350 for 360 rows.
    """
    if height < 4 * H_STEP:
        raise ValueError(f"image height {height} is too small for TuSimple rows every {H_STEP} px")
    first = int(round(height * TUSIMPLE_FIRST_ROW / TUSIMPLE_HEIGHT / H_STEP)) * H_STEP
    last = (height - H_STEP) // H_STEP * H_STEP
    return np.arange(first, last + 1, H_STEP, dtype=np.int64)


def label_line(raw_file: str, lanes: list[np.ndarray], h_samples: np.ndarray) -> str:
    """One TuSimple label line (JSON, no newline): x rounded to whole pixels, absent as -2."""
    out = []
    for xs in lanes:
        xs = np.asarray(xs, np.float64)
        out.append([int(round(x)) if x >= 0 else int(ABSENT) for x in xs])
    return json.dumps({"lanes": out, "h_samples": [int(y) for y in h_samples], "raw_file": raw_file})


def resample_polyline(lane: np.ndarray, h_samples: np.ndarray) -> np.ndarray:
    """x of a polyline at each row of ``h_samples``, by linear interpolation in y.

    Args:
        lane: float [K, 2] points (x, y) in image pixels, any order (sorted by y here; a lane that turns back
            in y is not representable as x(y) and is taken as the sorted point sequence).
        h_samples: float [R] image rows.

    Returns:
        float64 [R]: x at each row, ``ABSENT`` (-2) where the row is outside the polyline's y range
        (an empty polyline is absent everywhere; a single point only on its own row).
    """
    lane = np.asarray(lane, np.float64)
    h = np.asarray(h_samples, np.float64)
    if lane.size == 0:
        return np.full(h.shape, ABSENT)
    if lane.ndim != 2 or lane.shape[1] != 2:
        raise ValueError(f"a lane must be an [K, 2] array of (x, y) points, got shape {list(lane.shape)}")
    order = np.argsort(lane[:, 1], kind="stable")
    x, y = lane[order, 0], lane[order, 1]
    out = np.interp(h, y, x)
    out[(h < y[0]) | (h > y[-1])] = ABSENT
    return out


def polyline_to_tusimple(lane: np.ndarray, h_samples: np.ndarray, image_width: int) -> np.ndarray:
    """A polyline in image pixels as a TuSimple lane: x at each row of ``h_samples``.

    Args:
        lane: float [K, 2] points (x, y) in the labels' image pixels.
        h_samples: float [R] image rows. image_width: the image's width in pixels.

    Returns:
        float64 [R]: x by linear interpolation in y (``resample_polyline``), ``ABSENT`` (-2) outside the
        polyline's y range or outside the image (x < 0 or x >= image_width).
    """
    xs = resample_polyline(lane, h_samples)
    xs[(xs < 0) | (xs >= image_width)] = ABSENT
    return xs


def order_left_to_right(lanes_xs: Sequence[np.ndarray], h_samples: np.ndarray) -> list[int]:
    """Indices that sort TuSimple lanes left to right: by x at the bottom-most row they have in common.

    That row is the lowest of the lanes' bottom ends (every lane reaches it when their row ranges overlap);
    a lane that does not reach it is compared by its x at its own nearest present row. Lanes with no present
    row sort last. Ties keep the input order.

    Args:
        lanes_xs: float [R] x values at ``h_samples`` (negative = absent), one per lane.
        h_samples: float [R] image rows.
    """
    h = np.asarray(h_samples, np.float64)
    present = [np.asarray(xs, np.float64) >= 0 for xs in lanes_xs]
    bottoms = [h[p].max() for p in present if p.any()]
    if not bottoms:
        return list(range(len(lanes_xs)))
    row = min(bottoms)
    keys = []
    for xs, p in zip(lanes_xs, present, strict=True):
        if not p.any():
            keys.append(np.inf)
            continue
        y, x = h[p], np.asarray(xs, np.float64)[p]
        order = np.argsort(y, kind="stable")
        keys.append(float(np.interp(row, y[order], x[order])))  # clamps to the nearest end outside its range
    return sorted(range(len(lanes_xs)), key=lambda i: keys[i])


@dataclass(frozen=True)
class TusimpleLabel:
    """One label line: ``lanes`` float64 [L, R] x per lane and row (negative = absent), ``h_samples`` float64
    [R] rows, ``raw_file`` the image path relative to the dataset folder, ``where`` "file:line"."""

    raw_file: str
    lanes: np.ndarray
    h_samples: np.ndarray
    where: str


def _numbers(value, what: str, where: str) -> np.ndarray:
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise DatasetError(f"{where}: {what} must be a list of finite numbers")
    return np.array(value, np.float64)


def parse_label_line(text: str, where: str) -> TusimpleLabel:
    """A label line's JSON as a TusimpleLabel; DatasetError naming ``where`` ("file:line") when malformed."""
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{where}: not valid JSON: {err.msg} (column {err.colno})") from err
    if not isinstance(entry, dict):
        raise DatasetError(f"{where}: a label line must be a JSON object, got {type(entry).__name__}")
    missing = [k for k in ("lanes", "h_samples", "raw_file") if k not in entry]
    if missing:
        raise DatasetError(f"{where}: missing key {', '.join(repr(k) for k in missing)}")
    raw_file = entry["raw_file"]
    if not isinstance(raw_file, str) or not raw_file:
        raise DatasetError(f"{where}: 'raw_file' must be a non-empty string (the image path)")
    h = _numbers(entry["h_samples"], "'h_samples'", where)
    if len(h) == 0:
        raise DatasetError(f"{where}: 'h_samples' is empty")
    if not isinstance(entry["lanes"], list):
        raise DatasetError(f"{where}: 'lanes' must be a list of lanes (lists of x values)")
    lanes = []
    for k, lane in enumerate(entry["lanes"]):
        xs = _numbers(lane, f"lane {k}", where)
        if len(xs) != len(h):
            raise DatasetError(f"{where}: lane {k} has {len(xs)} x values but 'h_samples' has {len(h)} rows")
        lanes.append(xs)
    return TusimpleLabel(raw_file, np.array(lanes, np.float64).reshape(len(lanes), len(h)), h, where)


def read_label_file(path: Path) -> list[TusimpleLabel]:
    """Every label line of a JSON-lines file (blank lines skipped); DatasetError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from err
    return [parse_label_line(line, f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def label_files(root: Path, split: str) -> list[Path]:
    """The label files a split reads (module docstring); DatasetError when there are none."""
    named = root / f"{split}.json"
    if named.is_file():
        return [named]
    train = sorted(root.glob(TRAIN_GLOB))
    test = [root / TEST_FILE] if (root / TEST_FILE).is_file() else []
    files = train if split == "train" else test if split == "test" else train + test
    if not files:
        wanted = {"train": TRAIN_GLOB, "test": TEST_FILE}.get(split, f"{TRAIN_GLOB} or {TEST_FILE}")
        raise DatasetError(f"{root}: no TuSimple label file {wanted} for split {split!r}")
    return files


class TusimpleDataset(Dataset):
    """TuSimple lane labels (module docstring).

    Samples: image uint8 [H, W, 3] BGR; seg, boxes None; name = raw_file; meta = ``{"lanes": [[x, ...],
    ...] (float, -2 absent), "h_samples": [y, ...], "raw_file": str, "label": "file:line"}`` in the image's
    pixels.

    Args:
        root: the folder holding the label files and ``clips/``. split: see the module docstring.
        class_map: unused by the labels (no masks or boxes); None gives the project's class lists.
        bad_boxes: accepted for the registry's common signature (no boxes here).
    """

    kind = "tusimple"
    title = "TuSimple"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val",
        class_map: ClassMap | None = None,
        bad_boxes: str = "error",
    ):
        super().__init__(root, split, class_map or TUSIMPLE_CLASS_MAP, bad_boxes)
        root_p = Path(root)
        self.label_files = label_files(root_p, split)
        self.labels: list[TusimpleLabel] = []
        first: dict[str, str] = {}
        for path in self.label_files:
            for label in read_label_file(path):
                if label.raw_file in first:
                    where = first[label.raw_file]
                    raise DatasetError(f"{label.where}: {label.raw_file!r} is labelled twice (first at {where})")
                first[label.raw_file] = label.where
                image = root_p / label.raw_file
                if not image.is_file():
                    raise DatasetError(f"{label.where}: image {label.raw_file!r} not found ({image})")
                self.labels.append(label)
        if not self.labels:
            raise DatasetError(f"{', '.join(str(p) for p in self.label_files)}: no label lines")
        self.names = [label.raw_file for label in self.labels]

    def load(self, index: int) -> Sample:
        label = self.labels[index]
        image = read_image(Path(self.root) / label.raw_file)
        meta = {
            "lanes": label.lanes.tolist(),
            "h_samples": label.h_samples.tolist(),
            "raw_file": label.raw_file,
            "label": label.where,
        }
        return Sample(image=image, name=label.raw_file, meta=meta)
