"""The dataset interface every loader implements, and the skip-or-raise policy for bad samples.

A dataset is a sized, indexable collection of ``Sample``. Indexing a broken sample raises
``DatasetError`` naming the file and the problem; ``iter_samples`` applies the user's policy
(``on_error="raise"`` stops there, ``"skip"`` counts the sample as skipped and goes on), so a bad file is
either an error or a counted skip, never a silently wrong label.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from perception.data.sample import DET_CLASSES, SEG_CLASSES, DatasetError, Sample

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")


class Dataset:
    """Base class: subclasses fill ``self.names`` (one per sample) and implement ``load(i)``.

    Attributes:
        root: where the dataset lives (for messages).
        seg_classes / det_classes: the class lists the sample ids index.
        names: per-sample identifiers, in index order.
    """

    kind = "dataset"

    def __init__(self, root: str, seg_classes: Sequence[str] = SEG_CLASSES, det_classes: Sequence[str] = DET_CLASSES):
        self.root = str(root)
        self.seg_classes = tuple(seg_classes)
        self.det_classes = tuple(det_classes)
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.kind} dataset at {self.root} has {len(self)} samples, asked for {index}")
        return self.load(index % len(self))

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={self.root!r}, samples={len(self)})"


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
