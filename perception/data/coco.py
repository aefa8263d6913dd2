"""COCO detection datasets (``instances_*.json``), and the COCO JSON parser the folder dataset shares.

Layout (``annotation_file`` / ``image_dir`` override the search)::

    root/annotations/instances_{split}.json   or  instances_{split}2017.json
    root/{split}/  or  root/{split}2017/  or  root/images/{split}/  or  root/images/{split}2017/

Categories are mapped by NAME through the class map (``configs/datasets/coco.yaml`` by default; read its
caveats on ``bicycle`` and ``person``). Annotations of categories the map drops are left out; an
annotation with ``iscrowd: 1`` or ``ignore: 1`` becomes a box with ``ignore=True``. ``bbox`` [x, y, w, h]
(pixels, x/y the top-left edge) becomes x1, y1, x2, y2 = x, y, x + w, y + h, then
``perception.data.boxes.sanitize_boxes`` clips it to the image and raises on (or drops) boxes with no area.

An image listed in the JSON with no annotations has no objects (empty boxes). An image entry with
``"has_boxes": false`` (written by ``perception.data.writers.DatasetWriter`` for samples whose boxes were
never labelled) has ``boxes=None``. COCO gives no road masks: ``seg`` is always None.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception.data.base import Dataset
from perception.data.boxes import sanitize_boxes
from perception.data.classmap import ClassMap
from perception.data.io import read_image, read_json
from perception.data.sample import DatasetError, Sample


@dataclass(frozen=True, eq=False)
class CocoImage:
    """One ``images`` entry with its mapped boxes.

    Attributes:
        id: COCO image id. file_name: path relative to the image folder.
        width / height: as the JSON states them (None when absent).
        boxes: float64 [N, 4] x1, y1, x2, y2 pixels (not yet clipped), or None when the entry says
            ``"has_boxes": false``. labels: int64 [N] project det ids. ignore: bool [N].
        entry: the raw ``images`` entry (extra keys such as ``has_seg``, ``lane_labelled``).
    """

    id: int
    file_name: str
    width: int | None
    height: int | None
    boxes: np.ndarray | None
    labels: np.ndarray | None
    ignore: np.ndarray | None
    entry: dict = field(default_factory=dict)


def parse_coco(data: Any, path: Path, class_map: ClassMap) -> list[CocoImage]:
    """Images of a COCO detection JSON with their boxes mapped to project classes, in ``images`` order.

    Args:
        data: the parsed JSON. path: the file (for messages). class_map: category NAME -> project det id
            (``map_det``; None drops the category, an unmapped strict map raises).
    Raises:
        DatasetError naming ``path`` for a wrong structure, duplicate ids, an annotation whose image_id or
        category_id is not listed, a malformed ``bbox``, or annotations on an image with has_boxes false.
    """
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a COCO object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing or invalid {key!r} list")

    cat_det: dict[int, int | None] = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise DatasetError(f"{path}: category entry {c!r:.80} needs an integer id and a name")
        if c["id"] in cat_det:
            raise DatasetError(f"{path}: category id {c['id']} is listed twice")
        cat_det[c["id"]] = class_map.map_det(c["name"], str(path))

    index: dict[int, int] = {}
    images: list[dict] = []
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{path}: images[{i}] needs an integer id and a file_name")
        if im["id"] in index:
            raise DatasetError(f"{path}: image id {im['id']} is listed twice")
        index[im["id"]] = i
        images.append(im)

    per_image: list[list[tuple[list[float], int, bool]]] = [[] for _ in images]
    for j, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DatasetError(f"{path}: annotations[{j}] is not an object")
        aid = ann.get("id", f"#{j}")
        iid, cid = ann.get("image_id"), ann.get("category_id")
        if iid not in index:
            raise DatasetError(f"{path}: annotation {aid} has image_id {iid!r}, which is not in 'images'")
        if cid not in cat_det:
            raise DatasetError(f"{path}: annotation {aid} has category_id {cid!r}, which is not in 'categories'")
        det = cat_det[cid]
        if det is None:
            continue
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
        ):
            raise DatasetError(f"{path}: annotation {aid} bbox {bbox!r:.80} is not 4 finite numbers [x, y, w, h]")
        x, y, w, h = (float(v) for v in bbox)
        ignore = bool(ann.get("iscrowd", 0)) or bool(ann.get("ignore", 0))
        per_image[index[iid]].append(([x, y, x + w, y + h], det, ignore))

    out = []
    for im, anns in zip(images, per_image, strict=True):
        has_boxes = im.get("has_boxes", True)
        if has_boxes is False and anns:
            raise DatasetError(f"{path}: image {im['id']} says has_boxes false but has {len(anns)} annotations")
        if has_boxes is False:
            boxes = labels = ignore = None
        else:
            boxes = np.array([a[0] for a in anns], np.float64).reshape(-1, 4)
            labels = np.array([a[1] for a in anns], np.int64)
            ignore = np.array([a[2] for a in anns], bool)
        out.append(
            CocoImage(
                id=im["id"],
                file_name=im["file_name"],
                width=im.get("width"),
                height=im.get("height"),
                boxes=boxes,
                labels=labels,
                ignore=ignore,
                entry=im,
            )
        )
    return out


def check_image_size(image: np.ndarray, entry: CocoImage, path: Path, ann_path: Path) -> None:
    """DatasetError naming ``path`` when the decoded image (uint8 [H, W, 3]) differs in size from the width and
    height that ``ann_path`` states for it (its boxes would be off); no check when the entry states none."""
    h, w = image.shape[:2]
    if entry.width is not None and entry.height is not None and (entry.width, entry.height) != (w, h):
        raise DatasetError(
            f"{path}: image is {w}x{h} but {ann_path} says {entry.width}x{entry.height} for image {entry.id}"
        )


class CocoDataset(Dataset):
    """COCO detection dataset mapped to the project's detection classes.

    Samples: image uint8 [H, W, 3] BGR; seg None; lane_labelled False; boxes float32 [N, 4] xyxy pixels
    (exclusive x2/y2), labels int64 [N] project det ids, ignore bool [N] (crowd or ``ignore: 1``), or all
    three None for an image entry with ``has_boxes: false``; name = the entry's ``file_name``; meta
    ``{"image_id": int, "source": image path}``.

    Args:
        root: dataset folder. split: "train", "val", ... (see module docstring for the file search).
        class_map: category name -> project class; None loads ``configs/datasets/coco.yaml``.
        bad_boxes: "error" or "drop" for boxes with no area inside the image; ``dropped_boxes`` counts drops.
        annotation_file: the instances JSON, overriding the search. image_dir: the image folder.
    """

    kind = "coco"
    title = "COCO"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_map: ClassMap | None = None,
        bad_boxes: str = "error",
        annotation_file: str | os.PathLike | None = None,
        image_dir: str | os.PathLike | None = None,
    ):
        super().__init__(root, split, class_map, bad_boxes)
        root_p = Path(root)
        self.annotation_file = self._find_annotations(root_p, split, annotation_file)
        self.image_dir = self._find_images(root_p, split, image_dir)
        self._entries = parse_coco(read_json(self.annotation_file), self.annotation_file, self.class_map)
        if not self._entries:
            raise DatasetError(f"{self.annotation_file}: lists no images")
        seen: set[str] = set()
        for e in self._entries:
            if e.file_name in seen:
                raise DatasetError(f"{self.annotation_file}: file_name {e.file_name!r} is listed twice")
            seen.add(e.file_name)
            self.names.append(e.file_name)

    @staticmethod
    def _find_annotations(root: Path, split: str, annotation_file) -> Path:
        if annotation_file is not None:
            candidates = [Path(annotation_file)]
        else:
            ann = root / "annotations"
            candidates = [ann / f"instances_{split}.json", ann / f"instances_{split}2017.json"]
        for c in candidates:
            if c.is_file():
                return c
        raise DatasetError(f"{candidates[0]}: COCO annotation file not found (tried {', '.join(map(str, candidates))})")

    @staticmethod
    def _find_images(root: Path, split: str, image_dir) -> Path:
        if image_dir is not None:
            candidates = [Path(image_dir)]
        else:
            candidates = [root / split, root / f"{split}2017", root / "images" / split]
            candidates.append(root / "images" / f"{split}2017")
        for c in candidates:
            if c.is_dir():
                return c
        raise DatasetError(f"{candidates[0]}: COCO image folder not found (tried {', '.join(map(str, candidates))})")

    def load(self, index: int) -> Sample:
        entry = self._entries[index]
        path = self.image_dir / entry.file_name
        image = read_image(path)
        check_image_size(image, entry, path, self.annotation_file)
        boxes = labels = ignore = None
        if entry.boxes is not None:
            h, w = image.shape[:2]
            boxes, labels, ignore, dropped = sanitize_boxes(
                entry.boxes,
                entry.labels,
                entry.ignore,
                w,
                h,
                f"{self.annotation_file} (image {entry.id} {entry.file_name})",
                self.bad_boxes,
            )
            self._record_dropped(index, dropped)
        return Sample(
            image=image,
            name=entry.file_name,
            boxes=boxes,
            labels=labels,
            ignore=ignore,
            meta={"image_id": entry.id, "source": str(path)},
        )
