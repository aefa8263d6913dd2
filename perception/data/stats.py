"""What a dataset holds: sample counts, label coverage, boxes per class, class pixel fractions, image sizes.

``dataset_stats`` reads every sample once (under the skip-or-raise policy of ``iter_samples``); the
result prints as a table (``format``) or serialises to JSON (``to_dict``) for ``perception data stats``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from perception.data.base import Dataset, SkipLog, iter_samples
from perception.data.sample import IGNORE


@dataclass
class DatasetStats:
    """Counts over the samples of one dataset that loaded.

    Attributes:
        dataset: a one-line description (kind, root, split).
        seg_classes / det_classes: the class lists ids index.
        listed: samples the dataset lists; ``samples`` of them loaded, the rest are in ``skipped``.
        with_seg: samples with a mask. lane_labelled: samples whose mask gives lane paint its own class.
        with_boxes: samples annotated with boxes (possibly none); nonempty_boxes: those with at least one.
        boxes_per_class: class name -> boxes, ignore-flagged ones included.
        ignored_per_class: class name -> boxes flagged ignore (crowd, group regions).
        pixels_per_class: class name -> mask pixels of that class; ignore_pixels: IGNORE pixels;
            invalid_pixels: pixels with an id that is neither a class nor IGNORE (should stay 0).
        image_sizes: (width, height) -> samples.
        skipped: samples skipped under on_error="skip".
        dropped_boxes: boxes the loader dropped for having no area in the image (bad_boxes="drop").
        boxes_from: how boxes were made (``meta["boxes_from"]`` of the loaders that derive boxes from masks,
            with its caveat) -> samples.
    """

    dataset: str
    seg_classes: tuple[str, ...]
    det_classes: tuple[str, ...]
    listed: int = 0
    samples: int = 0
    with_seg: int = 0
    lane_labelled: int = 0
    with_boxes: int = 0
    nonempty_boxes: int = 0
    boxes_per_class: dict[str, int] = field(default_factory=dict)
    ignored_per_class: dict[str, int] = field(default_factory=dict)
    pixels_per_class: dict[str, int] = field(default_factory=dict)
    ignore_pixels: int = 0
    invalid_pixels: int = 0
    image_sizes: Counter = field(default_factory=Counter)
    skipped: SkipLog = field(default_factory=SkipLog)
    dropped_boxes: int = 0
    boxes_from: Counter = field(default_factory=Counter)

    @property
    def total_boxes(self) -> int:
        return sum(self.boxes_per_class.values())

    @property
    def pixel_fraction(self) -> dict[str, float]:
        """Class name -> fraction of the labelled, non-ignored mask pixels (0.0 each when there are none)."""
        total = sum(self.pixels_per_class.values())
        return {name: (n / total if total else 0.0) for name, n in self.pixels_per_class.items()}

    @property
    def ignore_fraction(self) -> float:
        """IGNORE pixels over all mask pixels."""
        total = sum(self.pixels_per_class.values()) + self.ignore_pixels + self.invalid_pixels
        return self.ignore_pixels / total if total else 0.0

    def to_dict(self) -> dict:
        """JSON-ready: plain ints, floats, strings; image sizes as "WxH" keys."""
        return {
            "dataset": self.dataset,
            "listed": self.listed,
            "samples": self.samples,
            "with_seg": self.with_seg,
            "lane_labelled": self.lane_labelled,
            "with_boxes": self.with_boxes,
            "nonempty_boxes": self.nonempty_boxes,
            "boxes": self.total_boxes,
            "boxes_per_class": dict(self.boxes_per_class),
            "ignored_per_class": dict(self.ignored_per_class),
            "pixels_per_class": dict(self.pixels_per_class),
            "pixel_fraction": self.pixel_fraction,
            "ignore_pixels": self.ignore_pixels,
            "ignore_fraction": self.ignore_fraction,
            "invalid_pixels": self.invalid_pixels,
            "image_sizes": {f"{w}x{h}": n for (w, h), n in sorted(self.image_sizes.items())},
            "skipped": {
                "total": self.skipped.total,
                "counts": dict(self.skipped.counts),
                "examples": list(self.skipped.examples),
            },
            "dropped_boxes": self.dropped_boxes,
            "boxes_from": dict(self.boxes_from),
        }

    def format(self) -> str:
        """A readable table for the terminal."""
        lines = [
            f"dataset       {self.dataset}",
            f"samples       {self.samples} loaded of {self.listed} listed, {self.skipped.total} skipped",
            f"masks         {self.with_seg} samples ({self.lane_labelled} with lane paint labelled)",
            f"boxes         {self.with_boxes} samples annotated, {self.nonempty_boxes} with at least one box; "
            f"{self.total_boxes} boxes ({sum(self.ignored_per_class.values())} ignore), "
            f"{self.dropped_boxes} dropped as bad",
            "image sizes   " + (", ".join(f"{w}x{h}: {n}" for (w, h), n in self.image_sizes.most_common()) or "-"),
        ]
        if self.with_seg:
            lines += ["", "mask pixels   fraction of labelled, non-ignored pixels"]
            for name, frac in self.pixel_fraction.items():
                lines.append(f"  {name:<14}{frac:8.4f}")
            lines.append(f"  {'(ignore)':<14}{self.ignore_fraction:8.4f}  of all mask pixels")
            if self.invalid_pixels:
                lines.append(f"  {'(invalid ids)':<14}{self.invalid_pixels:8d}  pixels")
        if self.with_boxes:
            lines += ["", f"{'boxes':<16}{'count':>8}{'ignore':>8}"]
            for name, n in self.boxes_per_class.items():
                lines.append(f"  {name:<14}{n:8d}{self.ignored_per_class.get(name, 0):8d}")
            for how, n in self.boxes_from.most_common():
                lines.append(f"  boxes from: {how} ({n} samples)")
        if self.skipped.total:
            lines += ["", f"skipped       {self.skipped.total} samples; first problems:"]
            lines += [f"  {msg}" for msg in self.skipped.examples]
        return "\n".join(lines)


def _describe(dataset: Dataset) -> str:
    return f"{dataset.kind} {dataset.root} (split {dataset.split})"


def dataset_stats(dataset: Dataset, on_error: str = "raise") -> DatasetStats:
    """Read every sample of ``dataset`` once and count what it holds.

    Args:
        on_error: "raise" stops at the first broken sample (DatasetError naming the file); "skip" counts it
            in ``stats.skipped`` and goes on.
    Returns:
        DatasetStats; ``dropped_boxes`` is the loader's ``dropped_boxes`` afterwards (bad boxes dropped in the
        samples it has loaded, each sample counted once).
    """
    seg_classes, det_classes = tuple(dataset.seg_classes), tuple(dataset.det_classes)
    stats = DatasetStats(
        dataset=_describe(dataset),
        seg_classes=seg_classes,
        det_classes=det_classes,
        listed=len(dataset),
        boxes_per_class=dict.fromkeys(det_classes, 0),
        ignored_per_class=dict.fromkeys(det_classes, 0),
    )
    pixels = np.zeros(256, np.int64)
    n_det = len(det_classes)
    for sample in iter_samples(dataset, on_error, stats.skipped):
        stats.samples += 1
        stats.image_sizes[sample.size] += 1
        if sample.seg is not None:
            stats.with_seg += 1
            stats.lane_labelled += bool(sample.lane_labelled)
            pixels += np.bincount(sample.seg.ravel(), minlength=256)
        if sample.boxes is not None:
            stats.with_boxes += 1
            stats.nonempty_boxes += len(sample.boxes) > 0
            if "boxes_from" in sample.meta:
                stats.boxes_from[str(sample.meta["boxes_from"])] += 1
            for label, ignored in zip(sample.labels.tolist(), sample.ignore.tolist(), strict=True):
                name = det_classes[label] if 0 <= label < n_det else f"id {label}"
                stats.boxes_per_class[name] = stats.boxes_per_class.get(name, 0) + 1
                stats.ignored_per_class[name] = stats.ignored_per_class.get(name, 0) + int(ignored)
    n_seg = len(seg_classes)
    stats.pixels_per_class = {name: int(pixels[i]) for i, name in enumerate(seg_classes)}
    stats.ignore_pixels = int(pixels[IGNORE])
    stats.invalid_pixels = int(pixels.sum() - pixels[:n_seg].sum() - pixels[IGNORE])
    stats.dropped_boxes = dataset.dropped_boxes
    return stats
