"""Reads the "perception folder" layout back (written by ``perception.data.writers.DatasetWriter``).

The split's index is ``annotations/{split}.json`` (COCO, every sample listed, with ``has_boxes``,
``has_seg`` and ``lane_labelled`` per image and ignore flags per box). When that file is missing (a run
killed before ``close()``), the reader falls back to the files on disk, with a log warning:

- images: every image under ``images/{split}/``;
- boxes: ``labels/{split}/{name}.txt`` when present, else None (in this layout a missing label file means
  "boxes never labelled", not "no objects"); every box ``ignore=False``, because ignored boxes were
  never written to the txt files;
- masks: ``masks/{split}/{name}.png`` when present; lane_labelled: dataset.yaml's value when it is true or
  false, else (mixed) False, so lane supervision is treated as missing rather than wrong.

Class lists come from ``dataset.yaml`` (identity mapping). A class map, when given, maps the folder's seg
ids (``map_seg``) and det class names (``map_det``) to another class list instead.
Meta comes back as JSON gives it: numpy arrays as lists, dict keys as strings.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from perception.data.base import Dataset
from perception.data.boxes import sanitize_boxes
from perception.data.classmap import ClassMap, class_map_from_dict
from perception.data.coco import CocoImage, check_image_size, parse_coco
from perception.data.io import check_same_size, list_images, read_image, read_json, read_label
from perception.data.sample import IGNORE, DatasetError, Sample
from perception.data.writers import FORMAT, VERSION
from perception.data.yolo import read_yolo_boxes

log = logging.getLogger(__name__)


def read_folder_info(root: Path) -> dict[str, Any]:
    """dataset.yaml of a perception folder, checked for format, version and class lists."""
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    path = root / "dataset.yaml"
    if not path.is_file():
        raise DatasetError(f"{path}: not found (is {root} a folder written by `perception synth` / DatasetWriter?)")
    try:
        info = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DatasetError(f"{path}: cannot read as YAML ({err})") from err
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DatasetError(f"{path}: 'format' is not {FORMAT!r}")
    if info.get("version") != VERSION:
        raise DatasetError(f"{path}: version {info.get('version')!r} is not supported (expected {VERSION})")
    for key in ("seg_classes", "det_classes"):
        value = info.get(key)
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise DatasetError(f"{path}: {key!r} must be a list of class names")
    return info


def identity_class_map(info: dict[str, Any], source: str) -> ClassMap:
    """Class map that keeps the folder's own ids: seg ids 0..n-1 and 255, det class names; anything else errors."""
    seg = info["seg_classes"]
    return class_map_from_dict(
        {
            "seg_classes": seg,
            "det_classes": info["det_classes"],
            "seg": {"values": {**{i: n for i, n in enumerate(seg)}, IGNORE: "ignore"}, "lane_labelled": True},
            "det": {"classes": {n: n for n in info["det_classes"]}, "unmapped": "error"},
        },
        source,
    )


@dataclass(frozen=True)
class _Item:
    name: str
    image: Path
    mask: Path | None  # None: no seg
    labels_txt: Path | None  # fallback only: YOLO txt to read, None: boxes never labelled
    lane_labelled: bool
    coco: CocoImage | None  # JSON index entry (boxes from here)


class FolderDataset(Dataset):
    """A "perception folder" dataset (module docstring).

    Samples: image uint8 [H, W, 3] BGR; seg uint8 [H, W] (255 = ignore) or None; boxes float32 [N, 4]
    xyxy pixels (exclusive x2/y2), labels int64 [N], ignore bool [N], or None when never labelled;
    name = the name it was written under ("clip003/000012"); meta = the meta JSON (or {}).

    Args:
        root: the folder holding dataset.yaml. split: a split written there.
        class_map: None keeps the folder's classes; otherwise it maps the folder's seg ids and det class
            names to its own class lists.
        bad_boxes: "error" or "drop" for boxes with no area inside the image; ``dropped_boxes`` counts drops.
    """

    kind = "synthetic"
    title = "perception folder"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_map: ClassMap | None = None,
        bad_boxes: str = "error",
    ):
        root_p = Path(root)
        info = read_folder_info(root_p)  # the folder's class lists: the default class map keeps them
        class_map = class_map if class_map is not None else identity_class_map(info, str(root_p / "dataset.yaml"))
        super().__init__(root, split, class_map, bad_boxes)
        self.info = info
        self.source_det_classes: tuple[str, ...] = tuple(info["det_classes"])
        self.annotation_file = root_p / "annotations" / f"{split}.json"
        self.image_dir = root_p / "images" / split
        if self.annotation_file.is_file():
            self._items = self._index_from_json(root_p, split)
        else:
            self._items = self._index_from_files(root_p, split)
        if not self._items:
            raise DatasetError(f"{self.annotation_file}: split {split!r} has no images")
        self.names = [it.name for it in self._items]

    def _index_from_json(self, root: Path, split: str) -> list[_Item]:
        entries = parse_coco(read_json(self.annotation_file), self.annotation_file, self.class_map)
        items, seen = [], set()
        for e in entries:
            name = Path(e.file_name).with_suffix("").as_posix()
            if name in seen:
                raise DatasetError(f"{self.annotation_file}: sample {name!r} is listed twice")
            seen.add(name)
            has_seg = e.entry.get("has_seg", False)
            lane = e.entry.get("lane_labelled", False)
            if not isinstance(has_seg, bool) or not isinstance(lane, bool):
                raise DatasetError(
                    f"{self.annotation_file}: image {e.id}: has_seg / lane_labelled must be true or false"
                )
            items.append(
                _Item(
                    name=name,
                    image=self.image_dir / e.file_name,
                    mask=root / "masks" / split / f"{name}.png" if has_seg else None,
                    labels_txt=None,
                    lane_labelled=lane,
                    coco=e,
                )
            )
        return items

    def _index_from_files(self, root: Path, split: str) -> list[_Item]:
        if not self.image_dir.is_dir():
            raise DatasetError(f"{root}: split {split!r} not found (no {self.annotation_file} and no {self.image_dir})")
        log.warning(
            "%s is missing (writer not closed?): reading images and labels/*.txt instead; ignore flags are lost",
            self.annotation_file,
        )
        lane = self.info.get("lane_labelled")
        lane = lane if isinstance(lane, bool) else False
        items = []
        for img in list_images(self.image_dir):
            name = img.relative_to(self.image_dir).with_suffix("").as_posix()
            mask = root / "masks" / split / f"{name}.png"
            txt = root / "labels" / split / f"{name}.txt"
            items.append(
                _Item(
                    name=name,
                    image=img,
                    mask=mask if mask.is_file() else None,
                    labels_txt=txt if txt.is_file() else None,
                    lane_labelled=lane,
                    coco=None,
                )
            )
        return items

    def _txt_det_id(self, cls: int, where: str) -> int | None:
        """Det id of class ``cls`` of a fallback labels/*.txt file (an index into dataset.yaml's det_classes)."""
        if cls >= len(self.source_det_classes):
            raise DatasetError(f"{where}: class id {cls} is outside det_classes {list(self.source_det_classes)}")
        return self.class_map.map_det(self.source_det_classes[cls], where)

    def load(self, index: int) -> Sample:
        it = self._items[index]
        image = read_image(it.image)
        h, w = image.shape[:2]
        seg = None
        if it.mask is not None:
            if not it.mask.is_file():
                raise DatasetError(f"{it.mask}: mask is missing ({self.annotation_file} says image has seg)")
            raw = read_label(it.mask)
            check_same_size(raw, it.mask, image, it.image)
            seg = self.class_map.map_seg(raw, str(it.mask))
        boxes = labels = ignore = None
        n_bad, file = 0, ""
        if it.coco is not None:
            check_image_size(image, it.coco, it.image, self.annotation_file)
            if it.coco.boxes is not None:
                boxes, labels, ignore = it.coco.boxes, it.coco.labels, it.coco.ignore
                file = f"{self.annotation_file} (image {it.coco.id} {it.coco.file_name})"
        elif it.labels_txt is not None:
            boxes, labels, n_bad = read_yolo_boxes(it.labels_txt, w, h, self._txt_det_id, self.bad_boxes)
            ignore = np.zeros(len(labels), bool)
            file = str(it.labels_txt)
        if boxes is not None:
            boxes, labels, ignore, dropped = sanitize_boxes(boxes, labels, ignore, w, h, file, self.bad_boxes)
            self._record_dropped(index, n_bad + dropped)
        meta_path = Path(self.root) / "meta" / self.split / f"{it.name}.json"
        meta = read_json(meta_path) if meta_path.is_file() else {}
        if not isinstance(meta, dict):
            raise DatasetError(f"{meta_path}: meta must be a JSON object")
        return Sample(
            image=image,
            name=it.name,
            seg=seg,
            lane_labelled=it.lane_labelled and self.class_map.lane_labelled,
            boxes=boxes,
            labels=labels,
            ignore=ignore,
            meta=meta,
        )
