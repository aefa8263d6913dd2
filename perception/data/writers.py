"""The project's own dataset layout ("perception folder"), written by ``perception synth`` and converters.

::

    DIR/dataset.yaml               Ultralytics-compatible (path, train/val/... = images/{split}, names) plus
                                   format: perception-folder, version: 1, seg_classes, det_classes,
                                   lane_labelled (true / false / mixed), description, counts per split,
                                   complete (false until close() ran)
    DIR/images/{split}/{name}.jpg  (or .png)
    DIR/masks/{split}/{name}.png   uint8 class ids into seg_classes, 255 = ignore; only for samples with seg
    DIR/labels/{split}/{name}.txt  YOLO txt "cls cx cy w h", normalised, 6 decimals; for every sample with
                                   boxes (an empty file = no objects). Boxes flagged ignore are NOT written
                                   here: YOLO txt cannot mark them, and writing them as plain boxes would
                                   teach a detector to fire on them. No file = boxes never labelled.
    DIR/annotations/{split}.json   COCO detection JSON, the index of the split (see below)
    DIR/meta/{split}/{name}.json   Sample.meta when non-empty (numpy arrays -> lists, numpy scalars -> Python,
                                   dict keys -> strings)

COCO JSON: ``images`` lists EVERY sample of the split (id, file_name relative to ``images/{split}/``,
width, height) with three extra fields: ``has_boxes`` (false: boxes were never labelled, which readers
must keep apart from "labelled, no objects"), ``has_seg`` and ``lane_labelled``. ``annotations``: id,
image_id, category_id = det id + 1, bbox [x, y, w, h] float pixels, area = w * h, ``ignore`` 0/1, and
``iscrowd`` equal to ``ignore``: pycocotools' COCOeval overwrites ``ignore`` with ``iscrowd``, so an
ignored box written as iscrowd 0 would count as a box to find there. ``categories``: id, name.
Note for evaluation with pycocotools: drop images with ``has_boxes: false`` first, or they count as
"no objects" and every detection on them as a false positive.

Ultralytics reads ``dataset.yaml`` directly (``path`` is left empty so it resolves next to the YAML file;
``path: .`` would resolve against the current directory). It treats a missing label file as "no objects",
so a split with unlabelled samples is not fit for Ultralytics training as is.

Writes go through a temporary file and ``os.replace``, so a killed run never leaves a half-written file;
the COCO JSON and the final dataset.yaml are written once, on ``close()`` (the images and label files of
a killed run stay readable: ``perception.data.folder.FolderDataset`` falls back to labels/*.txt).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from perception.data.sample import DET_CLASSES, IGNORE, SEG_CLASSES, Sample
from perception.errors import OutputError
from perception.paths import ensure_writable_dir

log = logging.getLogger(__name__)

FORMAT = "perception-folder"
VERSION = 1
IMAGE_FORMATS = ("jpg", "png")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a hidden temporary file and ``os.replace``; OutputError on failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            log.debug("could not remove %s", tmp)
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from err


def to_jsonable(value: Any, where: str) -> Any:
    """``value`` with numpy arrays -> lists, numpy scalars -> Python, tuples -> lists; ValueError otherwise."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ValueError(f"{where}: {type(value).__name__} cannot be written as JSON")


def check_name(name: str) -> str:
    """A sample name usable as a relative path ("clip003/000012"): ValueError for empty parts, '..', '\\'."""
    parts = name.split("/") if isinstance(name, str) else [""]
    if not name or any(p in ("", ".", "..") for p in parts) or "\\" in name or "\0" in name:
        raise ValueError(f"sample name {name!r} is not a relative path of non-empty parts without '..' or '\\'")
    return name


@dataclass
class _Split:
    names: set[str] = field(default_factory=set)
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: {"images": 0, "with_seg": 0, "with_boxes": 0, "boxes": 0, "ignored_boxes": 0}
    )


class DatasetWriter:
    """Writes samples in the "perception folder" layout (module docstring); a context manager.

    Args:
        out_dir: dataset folder, created if needed; OutputError naming it when it cannot be written.
        seg_classes / det_classes: the class lists the samples' ids index (checked on ``add``).
        image_format: "jpg" (lossy, small) or "png" (lossless). jpeg_quality: 0..100.
        description: free text for dataset.yaml.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        seg_classes: Sequence[str] = SEG_CLASSES,
        det_classes: Sequence[str] = DET_CLASSES,
        image_format: str = "jpg",
        jpeg_quality: int = 95,
        description: str = "",
    ):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {list(IMAGE_FORMATS)}, got {image_format!r}")
        if not (isinstance(jpeg_quality, int) and 0 <= jpeg_quality <= 100):
            raise ValueError(f"jpeg_quality must be an integer 0..100, got {jpeg_quality!r}")
        self.out_dir = Path(out_dir)
        if (self.out_dir / "dataset.yaml").exists():
            log.warning("%s already holds a dataset; files of the same names are replaced", self.out_dir)
        ensure_writable_dir(self.out_dir)
        self.seg_classes = tuple(seg_classes)
        self.det_classes = tuple(det_classes)
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self.description = description
        self._splits: dict[str, _Split] = {}
        self._lane_flags: set[bool] = set()
        self._made_dirs: set[Path] = set()
        self._closed = False
        self._counts: dict[str, dict[str, int]] = {}

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Per split: images, with_seg, with_boxes, boxes, ignored_boxes written so far."""
        return {s: dict(st.counts) for s, st in self._splits.items()}

    def add(self, sample: Sample, split: str = "train") -> None:
        """Write one sample's image, mask, YOLO labels and meta; its COCO entry is kept until ``close()``.

        ``sample.name`` becomes the relative file name (may contain "/" for sub-folders). Raises ValueError
        for a duplicate name in the split, a bad name or split, class ids outside the class lists, or boxes
        outside the image (clip them with ``perception.data.boxes.sanitize_boxes`` first); OutputError
        when a file cannot be written.
        """
        if self._closed:
            raise ValueError(f"{self.out_dir}: writer is closed")
        if not split or not isinstance(split, str) or "/" in split or "\\" in split or split in (".", ".."):
            raise ValueError(f"split must be a plain folder name, got {split!r}")
        name = check_name(sample.name)
        state = self._splits.get(split)
        if state is not None and name in state.names:
            raise ValueError(f"{self.out_dir}: sample name {name!r} is already in split {split!r}")
        self._check_labels(sample)

        # Everything is encoded before the first file is written: a sample refused here leaves no files.
        h, w = sample.image.shape[:2]
        ext = ".jpg" if self.image_format == "jpg" else ".png"
        params = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality] if ext == ".jpg" else []
        files = [(self.out_dir / "images" / split / f"{name}{ext}", _encode(ext, sample.image, params, name))]
        if sample.seg is not None:
            files.append((self.out_dir / "masks" / split / f"{name}.png", _encode(".png", sample.seg, [], name)))
        if sample.boxes is not None:
            files.append((self.out_dir / "labels" / split / f"{name}.txt", _yolo_lines(sample, w, h).encode()))
        if sample.meta:
            meta = json.dumps(to_jsonable(sample.meta, f"{name}: meta"))
            files.append((self.out_dir / "meta" / split / f"{name}.json", meta.encode()))
        if state is None:
            state = self._start_split(split)
        for path, data in files:
            self._write(path, data)

        image_id = len(state.images) + 1
        state.images.append(
            {
                "id": image_id,
                "file_name": f"{name}{ext}",
                "width": w,
                "height": h,
                "has_boxes": sample.boxes is not None,
                "has_seg": sample.seg is not None,
                "lane_labelled": bool(sample.lane_labelled),
            }
        )
        c = state.counts
        c["images"] += 1
        if sample.seg is not None:
            c["with_seg"] += 1
            if bool(sample.lane_labelled) not in self._lane_flags:
                # at most twice a run; keeps dataset.yaml right for readers of an unclosed (killed) run
                self._lane_flags.add(bool(sample.lane_labelled))
                self._write_yaml(complete=False)
        if sample.boxes is not None:
            c["with_boxes"] += 1
            c["boxes"] += len(sample.boxes)
            c["ignored_boxes"] += int(sample.ignore.sum())
            rows = zip(sample.boxes.tolist(), sample.labels.tolist(), sample.ignore.tolist(), strict=True)
            for box, label, ign in rows:
                bw, bh = box[2] - box[0], box[3] - box[1]
                state.annotations.append(
                    {
                        "id": len(state.annotations) + 1,
                        "image_id": image_id,
                        "category_id": label + 1,
                        "bbox": [round(box[0], 5), round(box[1], 5), round(bw, 5), round(bh, 5)],
                        "area": round(bw * bh, 6),
                        "iscrowd": int(ign),
                        "ignore": int(ign),
                    }
                )
        state.names.add(name)

    def close(self) -> dict[str, dict[str, int]]:
        """Write annotations/{split}.json and the final dataset.yaml; returns the counts per split.

        Safe to call twice (the second call only returns the counts).
        """
        if self._closed:
            return self.counts
        self._closed = True
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.det_classes)]
        for split, st in self._splits.items():
            coco = {
                "info": {"description": self.description, "format": FORMAT, "version": VERSION},
                "images": st.images,
                "annotations": st.annotations,
                "categories": categories,
            }
            path = self.out_dir / "annotations" / f"{split}.json"
            self._write(path, json.dumps(coco, separators=(",", ":")).encode())
        self._write_yaml(complete=True)
        return self.counts

    # -- internals ------------------------------------------------------------------------------------

    def _check_labels(self, sample: Sample) -> None:
        name = sample.name
        h, w = sample.image.shape[:2]
        if sample.seg is not None:
            bad = (sample.seg >= len(self.seg_classes)) & (sample.seg != IGNORE)
            if bad.any():
                raise ValueError(
                    f"{name}: seg values {sorted(set(np.unique(sample.seg[bad]).tolist()))[:10]} are not ids into "
                    f"seg_classes {list(self.seg_classes)} or {IGNORE}"
                )
        if sample.boxes is not None and len(sample.boxes):
            labels = sample.labels
            if labels.min() < 0 or labels.max() >= len(self.det_classes):
                raise ValueError(f"{name}: box labels {labels.tolist()} are not ids into {list(self.det_classes)}")
            b = sample.boxes
            tol = 1e-3
            ok = (
                np.isfinite(b).all(1)
                & (b[:, 0] >= -tol)
                & (b[:, 1] >= -tol)
                & (b[:, 2] <= w + tol)
                & (b[:, 3] <= h + tol)
                & (b[:, 2] > b[:, 0])
                & (b[:, 3] > b[:, 1])
            )
            if not ok.all():
                i = int(np.flatnonzero(~ok)[0])
                raise ValueError(
                    f"{name}: box {i} {b[i].tolist()} is not inside the {w}x{h} image with positive size "
                    "(clip with perception.data.boxes.sanitize_boxes first)"
                )

    def _start_split(self, split: str) -> _Split:
        state = self._splits[split] = _Split()
        # A COCO file left by an earlier run would index the wrong images if this run is killed.
        stale = self.out_dir / "annotations" / f"{split}.json"
        try:
            stale.unlink(missing_ok=True)
        except OSError as err:
            raise OutputError(f"{stale}: cannot remove the earlier annotation file ({err.strerror or err})") from err
        self._write_yaml(complete=False)
        return state

    def _write(self, path: Path, data: bytes) -> None:
        parent = path.parent
        if parent not in self._made_dirs:
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputError(f"{parent}: cannot create folder ({err.strerror or err})") from err
            self._made_dirs.add(parent)
        write_atomic(path, data)

    def _write_yaml(self, complete: bool) -> None:
        flags = self._lane_flags
        lane = "mixed" if len(flags) > 1 else (next(iter(flags)) if flags else False)
        info: dict[str, Any] = {"path": ""}
        for split in self._splits:
            info[split] = f"images/{split}"
        info["names"] = dict(enumerate(self.det_classes))
        info.update(
            {
                "format": FORMAT,
                "version": VERSION,
                "seg_classes": list(self.seg_classes),
                "det_classes": list(self.det_classes),
                "lane_labelled": lane,
                "description": self.description,
                "counts": self.counts,
                "complete": complete,
            }
        )
        text = yaml.safe_dump(info, sort_keys=False, allow_unicode=True)
        self._write(self.out_dir / "dataset.yaml", text.encode())


def _encode(ext: str, array: np.ndarray, params: list[int], name: str) -> bytes:
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise OutputError(f"{name}: OpenCV could not encode {ext}")
    return buf.tobytes()


def _yolo_lines(sample: Sample, width: int, height: int) -> str:
    """YOLO txt for the sample's non-ignored boxes: "cls cx cy w h" normalised, 6 decimals, one per line."""
    keep = ~sample.ignore
    b = sample.boxes[keep].astype(np.float64)
    cx, cy = (b[:, 0] + b[:, 2]) / 2 / width, (b[:, 1] + b[:, 3]) / 2 / height
    bw, bh = (b[:, 2] - b[:, 0]) / width, (b[:, 3] - b[:, 1]) / height
    rows = np.clip(np.stack([cx, cy, bw, bh], 1), 0.0, 1.0)
    return "".join(
        f"{c} {r[0]:.6f} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f}\n"
        for c, r in zip(sample.labels[keep].tolist(), rows.tolist(), strict=True)
    )
