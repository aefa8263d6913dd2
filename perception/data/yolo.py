"""YOLO-txt (Ultralytics) detection datasets, and the YOLO label-file parser the folder dataset shares.

Layouts (the first that exists wins; ``image_dir`` / ``label_dir`` override)::

    root/images/{split}/**/*.jpg   +  root/labels/{split}/**/*.txt
    root/{split}/images/**/*.jpg   +  root/{split}/labels/**/*.txt

Class names come from ``root/data.yaml`` or ``root/dataset.yaml`` (key ``names``, a list or ``{id: name}``)
when present, or from the ``class_names`` argument. The class map (``configs/datasets/yolo.yaml`` by
default) may be keyed by YOLO class id (int) or by class name (str); an id key wins over a name key.

Label files, one object per line: ``cls cx cy w h`` with the centre and size normalised to [0, 1] by the
image width and height. Conventions and how they are enforced:

- a line with other than 5 numbers is an error naming ``file:line``: the segment (polygon), pose and OBB
  variants of the format are not read by this loader;
- a class id that is not a non-negative integer, or is outside the ``names`` list, is an error naming
  ``file:line``;
- a box with a non-positive width or height is a bad box: an error naming ``file:line`` under
  ``bad_boxes="error"``, dropped and counted under ``"drop"``;
- coordinates slightly outside [0, 1] (rounding) and boxes partly outside the image are clipped to it;
  a box with no area inside the image is a bad box (``perception.data.boxes.sanitize_boxes``);
- an image with no label file has no objects (the Ultralytics convention): its boxes are an empty array,
  not None. A missing labels *folder* is an error, because it would silently make every image empty;
- a label file with no image is ignored, with a log warning.

YOLO txt cannot mark a box as "ignore" (crowd, occluded): every box read here has ``ignore=False``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from perception.data.base import Dataset
from perception.data.boxes import sanitize_boxes
from perception.data.classmap import ClassMap
from perception.data.io import IMAGE_SUFFIXES, list_images, read_image
from perception.data.sample import DatasetError, Sample

log = logging.getLogger(__name__)


def read_yolo_txt(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a YOLO detection label file.

    Returns:
        (rows float64 [N, 4] cx, cy, w, h as written (normalised), classes int64 [N], line numbers int64 [N],
        1-based). Blank lines are skipped.
    Raises:
        DatasetError naming ``file:line`` for a line with other than 5 numbers, a non-finite value or a
        class id that is not a non-negative integer.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"{path}: cannot read label file ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: label file is not UTF-8 text") from err
    rows, classes, lines = [], [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{lineno}"
        if len(tokens) != 5:
            raise DatasetError(
                f"{where}: expected 5 numbers 'cls cx cy w h', got {len(tokens)} "
                "(segment/pose label formats are not supported)"
            )
        try:
            values = [float(t) for t in tokens]
        except ValueError as err:
            raise DatasetError(f"{where}: not a number in {line.strip()!r}") from err
        if not all(np.isfinite(values)):
            raise DatasetError(f"{where}: non-finite value in {line.strip()!r}")
        cls = values[0]
        if cls < 0 or cls != int(cls):
            raise DatasetError(f"{where}: class id {tokens[0]!r} is not a non-negative integer")
        rows.append(values[1:])
        classes.append(int(cls))
        lines.append(lineno)
    return np.array(rows, np.float64).reshape(-1, 4), np.array(classes, np.int64), np.array(lines, np.int64)


def yolo_to_xyxy(rows: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised cx, cy, w, h float [N, 4] -> float64 [N, 4] x1, y1, x2, y2 pixels (exclusive x2/y2)."""
    rows = np.asarray(rows, np.float64).reshape(-1, 4)
    cx, cy, w, h = rows[:, 0] * width, rows[:, 1] * height, rows[:, 2] * width, rows[:, 3] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def drop_nonpositive_size(rows: np.ndarray, path: Path, lines: np.ndarray, bad_boxes: str) -> tuple[np.ndarray, int]:
    """Bool [N] keep-mask for YOLO rows with positive width and height; raises per ``bad_boxes``."""
    bad = (rows[:, 2] <= 0) | (rows[:, 3] <= 0)
    if bad.any() and bad_boxes == "error":
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{path}:{int(lines[i])}: box width {rows[i, 2]:g} / height {rows[i, 3]:g} is not positive "
            "(pass bad_boxes='drop' to skip such boxes)"
        )
    return ~bad, int(bad.sum())


def read_yolo_boxes(
    path: Path, width: int, height: int, det_id: Callable[[int, str], int | None], bad_boxes: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Boxes of a YOLO label file in pixels, mapped to project classes.

    Args:
        path: the label file (``read_yolo_txt``). width / height: the image's size in pixels.
        det_id: (YOLO class id, ``"file:line"``) -> project det id, or None to leave the box out (a class the
            class map drops); it raises DatasetError naming ``file:line`` for a class it cannot map.
        bad_boxes: "error" raises on a box with non-positive width or height, "drop" leaves it out.
    Returns:
        (boxes float64 [N, 4] x1, y1, x2, y2 pixels with exclusive x2/y2, not yet clipped to the image;
        labels int64 [N]; the number of boxes dropped for a non-positive size).
    """
    rows, classes, lines = read_yolo_txt(path)
    keep, n_bad = drop_nonpositive_size(rows, path, lines, bad_boxes)
    ids = [det_id(c, f"{path}:{n}") for c, n in zip(classes.tolist(), lines.tolist(), strict=True)]
    keep &= np.array([i is not None for i in ids], bool)
    labels = np.array([i for i, k in zip(ids, keep, strict=True) if k], np.int64)
    return yolo_to_xyxy(rows[keep], width, height), labels, n_bad


def read_names(value, file: Path) -> list[str]:
    """Ultralytics ``names``: a list, or a mapping {0: name, 1: name, ...} with ids 0..n-1."""
    if isinstance(value, Mapping):
        if not all(isinstance(k, int) for k in value) or sorted(value) != list(range(len(value))):
            raise DatasetError(f"{file}: 'names' keys must be the class ids 0..{len(value) - 1}")
        value = [value[i] for i in range(len(value))]
    if not isinstance(value, Sequence) or isinstance(value, str) or not all(isinstance(n, str) for n in value):
        raise DatasetError(f"{file}: 'names' must be a list of class names or a mapping id -> name")
    return list(value)


class YoloDataset(Dataset):
    """Ultralytics YOLO-txt detection dataset (see module docstring for layouts and conventions).

    Samples: image uint8 [H, W, 3] BGR; seg None; boxes float32 [N, 4] xyxy pixels (exclusive x2/y2),
    labels int64 [N] project det ids, ignore bool [N] all False; name = image path relative to the image
    folder; meta ``{"source": image path}``.

    Args:
        root: dataset folder. split: "train", "val", ... (folder names).
        class_map: source class (YOLO id or name) -> project class; None loads ``configs/datasets/yolo.yaml``.
        bad_boxes: "error" or "drop" for boxes with no area inside the image; ``dropped_boxes`` counts drops.
        class_names: class names by YOLO id, overriding data.yaml / dataset.yaml.
        image_dir / label_dir: explicit folders, overriding the layout search.
    """

    kind = "yolo"
    title = "YOLO"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_map: ClassMap | None = None,
        bad_boxes: str = "error",
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        image_dir: str | os.PathLike | None = None,
        label_dir: str | os.PathLike | None = None,
    ):
        super().__init__(root, split, class_map, bad_boxes)
        root_p = Path(root)
        self.class_names, self.names_source = self._find_class_names(root_p, class_names)
        self._id_keys = {k for k in self.class_map.det_source_classes if isinstance(k, int) and not isinstance(k, bool)}
        if self.class_names is None and not self._id_keys:
            raise DatasetError(
                f"{root_p}: no data.yaml or dataset.yaml with class 'names', and class map {self.class_map.source} "
                "is keyed by name only; pass class_names=[...] or a class map keyed by YOLO class id"
            )
        self.image_dir, self.label_dir = self._find_layout(root_p, split, image_dir, label_dir)
        images = list_images(self.image_dir)
        if not images:
            raise DatasetError(f"{self.image_dir}: no images (looked for {', '.join(IMAGE_SUFFIXES)})")
        self._images = images
        self._labels: list[Path] = []
        by_stem: dict[Path, Path] = {}
        for img in images:
            rel = img.relative_to(self.image_dir)
            stem = rel.with_suffix("")
            if stem in by_stem:
                raise DatasetError(
                    f"{img}: shares its label file {stem}.txt with {by_stem[stem]}; rename one of the images"
                )
            by_stem[stem] = img
            self.names.append(rel.as_posix())
            self._labels.append(self.label_dir / stem.with_suffix(".txt"))
        self._warn_orphan_labels(set(by_stem))

    @staticmethod
    def _find_class_names(root: Path, class_names) -> tuple[list[str] | None, str]:
        if class_names is not None:
            return read_names(class_names, Path("class_names")), "class_names"
        for fname in ("data.yaml", "dataset.yaml"):
            f = root / fname
            if f.is_file():
                try:
                    data = yaml.safe_load(f.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
                    raise DatasetError(f"{f}: cannot read as YAML ({err})") from err
                if isinstance(data, dict) and "names" in data:
                    names = read_names(data["names"], f)
                    if "nc" in data and data["nc"] != len(names):
                        raise DatasetError(f"{f}: nc is {data['nc']} but 'names' lists {len(names)} classes")
                    return names, str(f)
        return None, ""

    @staticmethod
    def _find_layout(root: Path, split: str, image_dir, label_dir) -> tuple[Path, Path]:
        if image_dir is not None:
            img = Path(image_dir)
            if not img.is_dir():
                raise DatasetError(f"{img}: image folder not found")
            lab = Path(label_dir) if label_dir is not None else _sibling_labels(img)
        else:
            candidates = [
                (root / "images" / split, root / "labels" / split),
                (root / split / "images", root / split / "labels"),
            ]
            found = next((pair for pair in candidates if pair[0].is_dir()), None)
            if found is None:
                tried = " or ".join(str(c[0]) for c in candidates)
                raise DatasetError(f"{root}: split {split!r} not found (no folder {tried})")
            img, lab = found
            lab = Path(label_dir) if label_dir is not None else lab
        if not lab.is_dir():
            raise DatasetError(
                f"{lab}: label folder not found (an image without a label file has no objects, so a missing "
                "folder would make every image empty; create the folder if that is what you mean)"
            )
        return img, lab

    def _warn_orphan_labels(self, stems: set[Path]) -> None:
        txts = sorted(self.label_dir.rglob("*.txt"))
        orphans = [p for p in txts if p.relative_to(self.label_dir).with_suffix("") not in stems]
        if orphans:
            log.warning(
                "%s: %d label file(s) have no image and are ignored, e.g. %s", self.label_dir, len(orphans), orphans[0]
            )

    def _det_id(self, cls: int, where: str) -> int | None:
        if self.class_names is not None and cls >= len(self.class_names):
            raise DatasetError(
                f"{where}: class id {cls} is outside the {len(self.class_names)} names in {self.names_source}"
            )
        if cls in self._id_keys:
            return self.class_map.map_det(cls, where)
        if self.class_names is not None:
            return self.class_map.map_det(self.class_names[cls], where)
        return self.class_map.map_det(cls, where)

    def load(self, index: int) -> Sample:
        img_path, label_path = self._images[index], self._labels[index]
        image = read_image(img_path)
        h, w = image.shape[:2]
        if label_path.is_file():
            boxes, labels, n_bad = read_yolo_boxes(label_path, w, h, self._det_id, self.bad_boxes)
        else:  # no label file: no objects (the Ultralytics convention)
            boxes, labels, n_bad = np.zeros((0, 4)), np.zeros(0, np.int64), 0
        boxes, labels, ignore, n_dropped = sanitize_boxes(
            boxes, labels, np.zeros(len(labels), bool), w, h, str(label_path), self.bad_boxes
        )
        self._record_dropped(index, n_bad + n_dropped)
        return Sample(
            image=image,
            name=self.names[index],
            boxes=boxes,
            labels=labels,
            ignore=ignore,
            meta={"source": str(img_path)},
        )


def _sibling_labels(image_dir: Path) -> Path:
    """Ultralytics rule: the label folder is the image folder with its last ``images`` component -> ``labels``."""
    parts = list(image_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return image_dir.parent / "labels"
