"""The dataset interface every loader implements, and the skip-or-raise policy for bad samples.

A dataset is a sized, indexable collection of ``Sample``. Indexing a broken sample raises
``DatasetError`` naming the file and the problem; ``iter_samples`` applies the user's policy
(``on_error="raise"`` stops there, ``"skip"`` counts the sample as skipped and goes on), so a bad file is
either an error or a counted skip, never a silently wrong label.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from perception.data.boxes import check_bad_boxes
from perception.data.classmap import ClassMap, load_class_map
from perception.data.sample import DatasetError, Sample

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")


class Dataset:
    """Base class: subclasses fill ``self.names`` (one per sample) and implement ``load(i)``.

    The constructor holds what every loader shares (subclasses call it first, then check their own layout):

    Args:
        root: the dataset folder; DatasetError naming it and the dataset (``title``) when it is not a folder.
        split: "train", "val", ... (what a split is, is the subclass's business).
        class_map: source labels -> project classes; None loads ``configs/datasets/<kind>.yaml``.
        bad_boxes: "error" or "drop" for boxes with no area inside the image (``boxes.check_bad_boxes``).

    Attributes:
        kind: the registry name (``perception.data.registry``). title: the dataset's name in messages.
        root: where the dataset lives (for messages). split / class_map / bad_boxes: as given.
        seg_classes / det_classes: the class lists the sample ids index (the class map's).
        names: per-sample identifiers, in index order.
        dropped_boxes: bad boxes dropped under ``bad_boxes="drop"`` in the samples loaded so far; loaders
            report them per sample with ``_record_dropped``, so loading a sample twice counts it once.
    """

    kind = "dataset"
    title = "dataset"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_map: ClassMap | None = None,
        bad_boxes: str = "error",
    ):
        self.bad_boxes = check_bad_boxes(bad_boxes)
        self.root = str(root)
        if not Path(root).is_dir():
            raise DatasetError(f"{self.root}: {self.title} root folder not found")
        self.split = split
        self.class_map = class_map if class_map is not None else load_class_map(self.kind)
        self.seg_classes = tuple(self.class_map.seg_classes)
        self.det_classes = tuple(self.class_map.det_classes)
        self.names: list[str] = []
        self._dropped: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.kind} dataset at {self.root} has {len(self)} samples, asked for {index}")
        return self.load(index % len(self))

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def _record_dropped(self, index: int, n: int) -> None:
        """Loading sample ``index`` dropped ``n`` bad boxes (replaces that sample's earlier count)."""
        self._dropped[index] = int(n)

    @property
    def dropped_boxes(self) -> int:
        """Boxes dropped under ``bad_boxes="drop"`` in the samples loaded so far (each sample counted once)."""
        return sum(self._dropped.values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={self.root!r}, split={self.split!r}, samples={len(self)})"


def find_split_dir(parent: Path, split: str, layout: str) -> Path:
    """``parent / split`` for datasets whose splits are the sub-folders of ``parent``.

    Raises DatasetError naming ``parent`` when it is not a folder (with ``layout``, the expected layout, e.g.
    "BDD100K's images/100k/<split>/") or has no sub-folder ``split`` (listing the splits it has).
    """
    if not parent.is_dir():
        raise DatasetError(f"{parent}: folder not found (expected {layout})")
    splits = sorted(p.name for p in parent.iterdir() if p.is_dir())
    if split not in splits:
        raise DatasetError(f"{parent}: no split {split!r} (splits found: {splits})")
    return parent / split


@dataclass
class SkipLog:
    """Samples skipped under ``on_error="skip"``: a count per problem and the first few messages."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 10

    def add(self, err: DatasetError) -> None:
        self.counts[type(err).__name__] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(err))
        log.warning("skipped: %s", err)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {list(ON_ERROR)}, got {on_error!r}")
    return on_error


def iter_samples(dataset: Dataset, on_error: str = "raise", skipped: SkipLog | None = None) -> Iterator[Sample]:
    """Every sample in index order; broken ones raise or are counted in ``skipped`` per ``on_error``."""
    check_on_error(on_error)
    for i in range(len(dataset)):
        try:
            yield dataset[i]
        except DatasetError as err:
            if on_error == "raise":
                raise
            if skipped is not None:
                skipped.add(err)
