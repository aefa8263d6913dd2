"""BDD100K: boxes from the det_20 JSON, drivable area and lane markings from the released masks.

Layout (BDD100K as distributed)::

    root/images/100k/{split}/{name}.jpg
    root/labels/det_20/det_{split}.json           boxes (optional)
    root/labels/drivable/masks/{split}/{stem}.png drivable area (optional, per image)
    root/labels/lane/masks/{split}/{stem}.png     lane markings (optional, per image)

Boxes. ``det_{split}.json`` is a JSON list of frames ``{"name": "x.jpg", "labels": [{"id", "category",
"box2d": {"x1", "y1", "x2", "y2"}, "attributes": {"occluded", "truncated", "crowd"}}]}``; "labels" missing
or null means no objects. box2d is a Scalabel Box2D whose x2/y2 are the last pixel INSIDE the box: the
toolkit converts it to a COCO box with ``width = x2 - x1 + 1`` (``box2d_to_bbox`` in scalabel/scalabel,
scalabel/label/transforms.py, used by bdd100k's ``label/to_coco.py``). This loader therefore returns
x1, y1, x2 + 1, y2 + 1 (the project's exclusive edges). ``crowd`` boxes get ``ignore=True``. Categories
map through ``configs/datasets/bdd100k.yaml`` (unlisted ones are dropped). An image missing from the JSON
has ``boxes=None`` (not annotated), one listed with no labels an empty box array; no JSON at all gives
``boxes=None`` everywhere.

Drivable masks (bdd100k doc/source/format.rst, "Drivable Area"): one byte per pixel, 0 direct,
1 alternative, 2 background; mapped by the class map (direct, alternative -> drivable).

Lane masks (bdd100k ``bdd100k/eval/lane.py``, "Byte structure for lane marking", and
``bdd100k/label/to_mask.py`` ``set_lane_color``): one byte per pixel::

    bit  7 6 5 4 3 2 1 0
         - - d s b c c c     d direction (0 parallel, 1 vertical), s style (0 solid, 1 dashed),
                             b background (1 = no lane marking here), c category 0..7

Categories: 0 crosswalk, 1 double other, 2 double white, 3 double yellow, 4 road curb, 5 single other,
6 single white, 7 single yellow. The masks are drawn on a background value of 255 (all bits set); the
toolkit's ``get_foreground`` tests bit 3 == 0, and so does this loader. Beware a binary 0/255 lane mask
from another tool: read this way its 0 pixels would all be lane.

Segmentation per image: lane pixels (of the chosen ``lane_categories``) become ``lane`` and override the
drivable classes. With both masks ``lane_labelled=True``. With only a drivable mask, ``lane_labelled=False``
(paint is unknown, not absent). With only a lane mask, every non-lane pixel is ``IGNORE`` (the road is not
labelled there) and ``lane_labelled=True``. With neither, ``seg=None``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from perception.data.base import Dataset, find_split_dir
from perception.data.boxes import sanitize_boxes
from perception.data.classmap import ClassMap
from perception.data.io import check_same_size, list_images, read_image, read_json, read_label
from perception.data.sample import IGNORE, DatasetError, Sample
from perception.errors import ConfigError

LANE_CATEGORIES = (
    "crosswalk",
    "double other",
    "double white",
    "double yellow",
    "road curb",
    "single other",
    "single white",
    "single yellow",
)
LANE_BACKGROUND_BIT = 3
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BOX_FIELDS = ("x1", "y1", "x2", "y2")


def lane_pixels(mask: np.ndarray, categories: Sequence[int] = tuple(range(8))) -> np.ndarray:
    """bool [H, W]: pixels of a BDD100K lane mask (uint8 [H, W]) that hold a marking of one of ``categories``."""
    foreground = (mask >> LANE_BACKGROUND_BIT) & 1 == 0
    if len(categories) == len(LANE_CATEGORIES):
        return foreground
    return foreground & np.isin(mask & 0b111, np.asarray(categories, np.uint8))


class Bdd100kDataset(Dataset):
    """BDD100K frames with whichever of boxes, drivable mask and lane mask exist (see the module docstring).

    Args:
        root: the BDD100K folder holding ``images/`` and ``labels/``.
        split: "train", "val" or "test" (any folder under ``images/100k/``).
        class_map: None loads ``configs/datasets/bdd100k.yaml``; ``seg.values`` maps drivable-mask values,
            ``det.classes`` maps category names.
        bad_boxes: "error" or "drop" for boxes with no area inside the image.
        lane_categories: lane-mask categories that count as lane paint (names from ``LANE_CATEGORIES``);
            None takes all eight. Left-out categories (e.g. "road curb", which is not paint) fall back to
            the drivable mask's class, or IGNORE where there is no drivable mask.

    Samples: image uint8 [H, W, 3] BGR; seg uint8 [H, W] or None; boxes float32 [N, 4] xyxy pixels with
    exclusive x2/y2, or None. ``meta``: ``image_path``, ``det_json``, ``drivable_path``, ``lane_path``
    (None where absent).
    """

    kind = "bdd100k"
    title = "BDD100K"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_map: ClassMap | None = None,
        bad_boxes: str = "error",
        lane_categories: Sequence[str] | None = None,
    ):
        super().__init__(root, split, class_map, bad_boxes)
        if lane_categories is None:
            lane_categories = LANE_CATEGORIES
        unknown = [c for c in lane_categories if c not in LANE_CATEGORIES]
        if unknown:
            raise ValueError(f"unknown lane categories {unknown} (valid: {list(LANE_CATEGORIES)})")
        self.lane_categories = tuple(LANE_CATEGORIES.index(c) for c in lane_categories)

        base = Path(root)
        self.image_dir = find_split_dir(base / "images" / "100k", split, "BDD100K's images/100k/<split>/")
        self.files = [p.name for p in list_images(self.image_dir, IMAGE_SUFFIXES, recursive=False)]
        if not self.files:
            raise DatasetError(f"{self.image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.names = [f"{split}/{name}" for name in self.files]

        self.det_json = base / "labels" / "det_20" / f"det_{split}.json"
        self.frames = read_det_json(self.det_json) if self.det_json.exists() else None
        self.drivable_dir = base / "labels" / "drivable" / "masks" / split
        self.lane_dir = base / "labels" / "lane" / "masks" / split
        self.lane_id = self.seg_classes.index("lane") if "lane" in self.seg_classes else None
        if self.lane_id is None and self.lane_dir.is_dir():
            raise ConfigError(
                f"{self.class_map.source}: seg_classes {list(self.seg_classes)} have no 'lane' class for the "
                f"lane masks in {self.lane_dir}"
            )

    def load(self, index: int) -> Sample:
        fname = self.files[index]
        image_path = self.image_dir / fname
        image = read_image(image_path)
        h, w = image.shape[:2]
        stem = Path(fname).stem
        drivable_path = self.drivable_dir / f"{stem}.png"
        lane_path = self.lane_dir / f"{stem}.png"
        has_drivable, has_lane = drivable_path.exists(), lane_path.exists()

        seg = None
        if has_drivable:
            raw = read_label(drivable_path)
            check_same_size(raw, drivable_path, image, image_path)
            seg = self.class_map.map_seg(raw, str(drivable_path))
        if has_lane:
            lane_raw = read_label(lane_path)
            check_same_size(lane_raw, lane_path, image, image_path)
            if seg is None:
                seg = np.full((h, w), IGNORE, np.uint8)
            seg[lane_pixels(lane_raw, self.lane_categories)] = self.lane_id

        boxes = labels = ignore = None
        if self.frames is not None and fname in self.frames:
            boxes, labels, ignore = self._boxes(fname, self.frames[fname])
            boxes, labels, ignore, dropped = sanitize_boxes(
                boxes, labels, ignore, w, h, f"{self.det_json} (image {fname})", self.bad_boxes
            )
            self._record_dropped(index, dropped)
        return Sample(
            image=image,
            name=self.names[index],
            seg=seg,
            lane_labelled=has_lane,
            boxes=boxes,
            labels=labels,
            ignore=ignore,
            meta={
                "image_path": str(image_path),
                "det_json": str(self.det_json) if self.frames is not None else None,
                "drivable_path": str(drivable_path) if has_drivable else None,
                "lane_path": str(lane_path) if has_lane else None,
            },
        )

    def _boxes(self, fname: str, entries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mapped boxes of one frame's "labels": float64 [N, 4] xyxy exclusive, int64 [N], bool [N]."""
        where = f"{self.det_json}: image {fname}"
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise DatasetError(f'{where}: "labels" must be a list, got {type(entries).__name__}')
        boxes, labels, ignore = [], [], []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise DatasetError(f"{where}: label {i} is a {type(entry).__name__}, not an object")
            label_id = entry.get("id", f"#{i}")
            category = entry.get("category")
            if not isinstance(category, str):
                raise DatasetError(f'{where}: label {label_id}: missing or non-text "category"')
            cid = self.class_map.map_det(category, where)
            if cid is None:
                continue
            box = entry.get("box2d")
            if not isinstance(box, dict):
                raise DatasetError(f'{where}: label {label_id} ({category}): missing "box2d"')
            coords = []
            for key in BOX_FIELDS:
                value = box.get(key)
                if value is None:
                    raise DatasetError(f"{where}: label {label_id} ({category}): box2d is missing {key!r}")
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise DatasetError(f"{where}: label {label_id} ({category}): box2d {key}={value!r} is not a number")
                coords.append(float(value))
            x1, y1, x2, y2 = coords
            boxes.append((x1, y1, x2 + 1.0, y2 + 1.0))  # Box2D x2/y2 are inclusive pixel indices
            labels.append(cid)
            attributes = entry.get("attributes") or {}
            ignore.append(bool(attributes.get("crowd", False)) if isinstance(attributes, dict) else False)
        return (
            np.array(boxes, np.float64).reshape(-1, 4),
            np.array(labels, np.int64),
            np.array(ignore, bool),
        )


def read_det_json(path: Path) -> dict[str, list | None]:
    """``det_{split}.json`` -> {image file name: its raw "labels" value (None when missing)}.

    Raises DatasetError naming the file when it is missing, empty, not JSON, not a list of frames, or lists an
    image twice. The labels themselves are checked per sample, so one bad frame can be skipped.
    """
    data = read_json(path)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of frames, got {type(data).__name__}")
    frames: dict[str, list | None] = {}
    for i, frame in enumerate(data):
        name = frame.get("name") if isinstance(frame, dict) else None
        if not isinstance(name, str):
            raise DatasetError(f'{path}: frame {i} has no "name"')
        if name in frames:
            raise DatasetError(f"{path}: image {name} is listed twice")
        frames[name] = frame.get("labels")
    return frames
