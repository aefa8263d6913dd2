"""CamVid (the SegNet 11-class version): road-scene frames with semantic masks; boxes derived from the masks.

Layout (as at ../shared/data/camvid)::

    root/train/*.png    root/trainannot/*.png    one-channel labels with the image's file name
    root/val/*.png      root/valannot/*.png

Any ``<split>/`` folder with a ``<split>annot/`` folder beside it is a split; the upstream test split is
deliberately absent there, so ``split="test"`` raises ``DatasetError`` listing the splits found.

Label values: 0 Sky, 1 Building, 2 Pole, 3 Road, 4 Pavement, 5 Tree, 6 SignSymbol, 7 Fence, 8 Car,
9 Pedestrian, 10 Bicyclist, 11 Unlabelled. ``configs/datasets/camvid.yaml`` maps Road to drivable,
Unlabelled to ``IGNORE`` and every other listed value to background; a value it does not list is an
error naming the mask file.

Lanes: paint is labelled Road in this version, so samples carry ``lane_labelled=False`` (lane supervision
missing on these frames, not "no lane here"). With ``lane_autolabel=True`` the paint that
``perception.data.autolabel`` finds inside the Road label becomes lane class (2): measured on held-out
synthetic frames its precision is 0.99 at 2 px (recall 0.91, docs/autolabel.md), so those pixels are
trustworthy positives, but Road pixels it did not mark are not reliable negatives; ``lane_labelled``
stays False and ``meta["lane_labels"]`` says "auto-labelled paint: positives only".

Boxes: CamVid has none. They are derived from the 8-connected components of each object class in the
raw label mask (``boxes_from_class_mask``); components smaller than ``min_area`` pixels are dropped.
Caveat: a semantic mask does not separate touching objects of one class, so a row of parked cars or a
group of pedestrians becomes ONE box; these boxes undercount crowded scenes. Every sample says so in
``meta["boxes_from"]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from perception.data.base import Dataset
from perception.data.boxes import boxes_from_class_mask, check_min_area, sanitize_boxes
from perception.data.classmap import ClassMap
from perception.data.io import check_same_size, list_images, read_image, read_label
from perception.data.sample import DatasetError, Sample

AUTOLABEL_NOTE = "auto-labelled paint: positives only (unmarked road is not a lane negative)"
COMPONENT_BOXES = "connected components of the class mask: touching objects of one class merge into one box"


class CamVidDataset(Dataset):
    """CamVid frames with masks mapped to the project classes and mask-derived boxes.

    Args:
        root: folder holding ``<split>/`` and ``<split>annot/``.
        split: "train" or "val" (any split present on disk).
        class_map: source values -> project classes; None loads ``configs/datasets/camvid.yaml``. Its
            ``det.classes`` keys are mask values (integers).
        bad_boxes: "error" or "drop" for boxes with no area inside the image (cannot happen for boxes
            derived from a mask of the image's size; kept for the common loader signature).
        min_area: connected components with fewer pixels give no box (default 20 px: label specks).
        lane_autolabel: mark auto-labelled paint inside Road as lane (positives only, see above).

    Samples: image uint8 [H, W, 3] BGR; seg uint8 [H, W]; boxes float32 [N, 4] xyxy pixels, exclusive
    x2/y2, ordered by class then component; ignore all False. ``meta`` holds ``image_path``,
    ``mask_path`` and ``boxes_from`` (the merge caveat).
    """

    kind = "camvid"
    title = "CamVid"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_map: ClassMap | None = None,
        bad_boxes: str = "error",
        min_area: int = 20,
        lane_autolabel: bool = False,
    ):
        super().__init__(root, split, class_map, bad_boxes)
        self.min_area = check_min_area(min_area)
        self.lane_autolabel = bool(lane_autolabel)
        if self.lane_autolabel and not {"drivable", "lane"} <= set(self.seg_classes):
            raise ValueError(f"lane_autolabel needs 'drivable' and 'lane' segmentation classes, got {self.seg_classes}")
        self.det_values = self.class_map.det_label_values()

        base = Path(root)
        splits = camvid_splits(base)
        if split not in splits:
            raise DatasetError(
                f"{base}: no CamVid split {split!r} (splits found: {splits}; a split is a <name>/ folder "
                "with a <name>annot/ label folder beside it)"
            )
        self.image_dir = base / split
        self.mask_dir = base / f"{split}annot"
        self.files = [p.name for p in list_images(self.image_dir, (".png",), recursive=False)]
        if not self.files:
            raise DatasetError(f"{self.image_dir}: no .png images in this CamVid split")
        self.names = [f"{split}/{name}" for name in self.files]

    def load(self, index: int) -> Sample:
        image_path = self.image_dir / self.files[index]
        mask_path = self.mask_dir / self.files[index]
        image = read_image(image_path)
        raw = read_label(mask_path)
        check_same_size(raw, mask_path, image, image_path)
        seg = self.class_map.map_seg(raw, str(mask_path))
        meta = {"image_path": str(image_path), "mask_path": str(mask_path), "boxes_from": COMPONENT_BOXES}
        if self.lane_autolabel:
            from perception.data.autolabel import autolabel_lane_paint

            road = seg == self.seg_classes.index("drivable")
            seg[(autolabel_lane_paint(image, road) > 0) & road] = self.seg_classes.index("lane")
            meta["lane_labels"] = AUTOLABEL_NOTE
        h, w = raw.shape
        boxes, labels, _ = boxes_from_class_mask(raw, self.det_values, self.min_area)
        boxes, labels, ignore, dropped = sanitize_boxes(
            boxes, labels, np.zeros(len(boxes), bool), w, h, str(mask_path), self.bad_boxes
        )
        self._record_dropped(index, dropped)
        return Sample(
            image=image,
            name=self.names[index],
            seg=seg,
            lane_labelled=self.class_map.lane_labelled,
            boxes=boxes,
            labels=labels,
            ignore=ignore,
            meta=meta,
        )


def camvid_splits(root: Path) -> list[str]:
    """Names of the ``<split>/`` folders in ``root`` that have a ``<split>annot/`` folder beside them."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (root / f"{p.name}annot").is_dir())
