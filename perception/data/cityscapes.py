"""Cityscapes (gtFine): semantic masks from labelIds, exact object boxes from instanceIds.

Layout (as distributed)::

    root/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png
    root/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png       uint8 standard label ids (0..33)
    root/gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png    uint16

instanceIds (cityscapesScripts ``json2instanceImg``): a pixel of a thing instance holds
``classId * 1000 + k`` (k = 0, 1, ... per class); a value below 1000 is a plain label id: stuff, or a
"group" region of a thing class whose members were not separated (e.g. "cargroup" holds 26).

Segmentation: ``configs/datasets/cityscapes.yaml`` maps road (7) to drivable, the void ids 0-3 to
``IGNORE`` and every other id to background. Cityscapes has no lane-marking class (paint is road), so
samples carry ``lane_labelled=False``.

Boxes, for the classes the class map's ``det.classes`` lists (keys are label ids):

* thing classes (ids 24-33, those with instances): one exact box per instance from instanceIds;
  touching objects stay separate;
* a group region of a mapped thing class: one box per connected component, flagged ``ignore=True``
  (it holds an unknown number of objects: evaluation neither rewards nor penalises detections there);
* traffic signs (20) and other classes without instances: connected components of the class in
  labelIds. Caveat: touching signs merge into one box.

When an image has no instanceIds file, every box comes from connected components of labelIds (touching
objects merge, groups are not told apart); ``meta["boxes_from"]`` says which way each sample's boxes were
made. Box order: instances, then group regions, then component boxes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from perception.data.base import Dataset, find_split_dir
from perception.data.boxes import boxes_from_class_mask, boxes_from_instance_mask, check_min_area, sanitize_boxes
from perception.data.classmap import ClassMap
from perception.data.io import check_same_size, read_image, read_label
from perception.data.sample import DatasetError, Sample

# Label ids with hasInstances=True in cityscapesScripts' labels.py: person, rider, car, truck, bus,
# caravan, trailer, train, motorcycle, bicycle.
THING_IDS = frozenset(range(24, 34))
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"

BOXES_FROM_INSTANCES = (
    "things: instanceIds (exact; group regions are ignore boxes); classes without instances (traffic signs): "
    "connected components of the class mask: touching objects merge"
)
BOXES_FROM_COMPONENTS = (
    "no instanceIds file: connected components of the class mask for every class: touching objects merge, "
    "group regions are not told apart"
)


class CityscapesDataset(Dataset):
    """Cityscapes gtFine frames: seg from labelIds, boxes from instanceIds (see the module docstring).

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: "train", "val" or "test" (any split folder under ``leftImg8bit/``; note the public test
            labels are placeholders).
        class_map: label ids -> project classes; None loads ``configs/datasets/cityscapes.yaml``.
        bad_boxes: "error" or "drop" for boxes with no area inside the image.
        min_area: connected components (traffic signs, group regions, fallback boxes) with fewer pixels
            give no box (default 20 px). Instance boxes are never dropped for size.

    Samples: image uint8 [H, W, 3] BGR; seg uint8 [H, W]; boxes float32 [N, 4] xyxy pixels, exclusive
    x2/y2; ignore True for group regions. ``meta``: ``image_path``, ``label_path``, ``instance_path``
    (None when absent), ``city``, ``boxes_from``.
    """

    kind = "cityscapes"
    title = "Cityscapes"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_map: ClassMap | None = None,
        bad_boxes: str = "error",
        min_area: int = 20,
    ):
        super().__init__(root, split, class_map, bad_boxes)
        self.min_area = check_min_area(min_area)
        det_values = self.class_map.det_label_values()
        # Classes without instances in Cityscapes: boxes from the class mask (the thing classes are asked
        # of the class map per sample, so that det.unmapped: error can name the file).
        self.component_values = {v: cid for v, cid in det_values.items() if v not in THING_IDS}

        base = Path(root)
        self.image_dir = find_split_dir(base / "leftImg8bit", split, "Cityscapes' leftImg8bit/<split>/<city>/")
        self.label_dir = base / "gtFine" / split
        if not self.label_dir.is_dir():
            raise DatasetError(f"{self.label_dir}: label folder not found (gtFine/{split} beside leftImg8bit/)")
        self.items: list[tuple[str, str]] = []  # (city, stem)
        for city in sorted(p for p in self.image_dir.iterdir() if p.is_dir()):
            for file in sorted(city.glob(f"*{IMAGE_SUFFIX}")):
                self.items.append((city.name, file.name[: -len(IMAGE_SUFFIX)]))
        if not self.items:
            raise DatasetError(f"{self.image_dir}: no *{IMAGE_SUFFIX} images in <city>/ folders")
        self.names = [f"{split}/{city}/{stem}" for city, stem in self.items]

    def load(self, index: int) -> Sample:
        city, stem = self.items[index]
        image_path = self.image_dir / city / f"{stem}{IMAGE_SUFFIX}"
        label_path = self.label_dir / city / f"{stem}{LABEL_SUFFIX}"
        instance_path = self.label_dir / city / f"{stem}{INSTANCE_SUFFIX}"
        image = read_image(image_path)
        label_ids = read_label(label_path)
        check_same_size(label_ids, label_path, image, image_path)
        seg = self.class_map.map_seg(label_ids, str(label_path))
        h, w = label_ids.shape

        has_instances = instance_path.exists()
        if has_instances:
            instances = read_label(instance_path, (np.uint16,))
            check_same_size(instances, instance_path, image, image_path)
            boxes, labels, ignore = self._boxes_from_instances(instances, label_ids, str(instance_path))
            boxes_from = BOXES_FROM_INSTANCES
        else:
            thing_values = self._mapped_things(np.unique(label_ids), str(label_path))
            values = {**thing_values, **self.component_values}
            boxes, labels, _ = boxes_from_class_mask(label_ids, values, self.min_area)
            ignore = np.zeros(len(boxes), bool)
            boxes_from = BOXES_FROM_COMPONENTS
        boxes, labels, ignore, dropped = sanitize_boxes(boxes, labels, ignore, w, h, str(label_path), self.bad_boxes)
        self._record_dropped(index, dropped)
        return Sample(
            image=image,
            name=self.names[index],
            seg=seg,
            lane_labelled=self.class_map.lane_labelled,
            boxes=boxes,
            labels=labels,
            ignore=ignore,
            meta={
                "image_path": str(image_path),
                "label_path": str(label_path),
                "instance_path": str(instance_path) if has_instances else None,
                "city": city,
                "boxes_from": boxes_from,
            },
        )

    def _mapped_things(self, class_ids, file: str) -> dict[int, int]:
        """{thing label id: det id} for the thing classes among ``class_ids`` that the class map keeps."""
        out = {}
        for cls in class_ids:
            cls = int(cls)
            if cls in THING_IDS:
                cid = self.class_map.map_det(cls, file)
                if cid is not None:
                    out[cls] = cid
        return out

    def _boxes_from_instances(
        self, instances: np.ndarray, label_ids: np.ndarray, file: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        values = np.unique(instances)
        inst_values = values[values >= 1000]
        things = self._mapped_things(np.unique(inst_values // 1000), file)
        instance_class = {int(v): things[int(v) // 1000] for v in inst_values if int(v) // 1000 in things}
        b_inst, l_inst, _ = boxes_from_instance_mask(instances, instance_class)
        groups = self._mapped_things(values[values < 1000], file)
        b_group, l_group, _ = boxes_from_class_mask(instances, groups, self.min_area)
        b_comp, l_comp, _ = boxes_from_class_mask(label_ids, self.component_values, self.min_area)
        boxes = np.concatenate([b_inst, b_group, b_comp])
        labels = np.concatenate([l_inst, l_group, l_comp])
        ignore = np.zeros(len(boxes), bool)
        ignore[len(b_inst) : len(b_inst) + len(b_group)] = True
        return boxes, labels, ignore
