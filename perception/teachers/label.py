"""Label frames with the teachers and write them as a "perception folder" dataset (``perception label``).

For every frame: the chosen teachers (``perception.teachers.detectors``, optionally with test-time
augmentation) run and their boxes are fused with weighted box fusion (``TeacherEnsemble``). A fused box
with score >= ``positive_threshold`` becomes a box label; one with ``ignore_threshold <= score <
positive_threshold`` an ``ignore`` box (uncertain: evaluation and training neither reward nor punish a
detection there; the YOLO txt files leave it out, the COCO JSON marks it ``iscrowd``/``ignore`` 1).
Below ``ignore_threshold`` nothing is written. Each sample's meta lists, per written box in the order of
the sample's boxes, ``meta["box_labels"]`` = ``{"score": fused score or null, "teachers": [names that
agreed], "source": "teacher" | "component" | "dataset", "ignore": bool}``; ``meta["teacher_labels"]``
holds the teachers, thresholds and options used.

Inputs (``open_frames``): a dataset spec ``KIND:PATH`` (any kind of ``perception.data.registry``, with a
split), ``video:PATH`` (every frame, or every k-th) or ``images:DIR`` (the images in a folder, sorted).

Boxes of datasets that have their own: they are kept, and teacher boxes are not added, except for
CamVid, whose boxes are connected components of its class masks (a row of touching parked cars is ONE
box), with ``camvid_boxes``:

- ``component``: the loader's component boxes only (the teachers add nothing);
- ``teacher``: a component box that contains two or more positive teacher boxes of its class (each at
  least 70 % inside it: intersection / teacher box area) is replaced by those teacher boxes; components
  no teacher splits (signs, cyclists, distant cars, a single car) stay as they are. Teacher boxes outside
  every component are not added: the masks say which objects exist (a teacher box there is a false
  positive or an object under the loader's ``min_area``);
- ``both``: as ``teacher``, but the component box is kept beside the teacher instances (both positive).

Lanes (``lanes="twinlitenetplus"``): a frame without a mask gets TwinLiteNet+'s segmentation (background
/ drivable / lane; lane wins where both fire), ``lane_labelled`` true. A frame with a mask whose paint is
not labelled (CamVid: paint is Road) keeps its classes, and the TwinLiteNet+ lane pixels that fall on its
drivable class become lane, ``lane_labelled`` true (docs/teachers.md measures how far such lane labels
can be trusted). A frame whose mask already labels lanes is left as it is.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from perception.data.camvid import COMPONENT_BOXES
from perception.data.io import IMAGE_SUFFIXES
from perception.data.sample import DET_CLASSES, SEG_CLASSES, Sample
from perception.errors import ConfigError
from perception.progress import Progress
from perception.teachers.ensemble import EnsembleResult, TeacherEnsemble

log = logging.getLogger(__name__)

CAMVID_BOX_MODES = ("component", "teacher", "both")
FRAME_KINDS = ("video", "images")
INSIDE_FRACTION = 0.7  # a teacher box counts as inside a component box when this much of its area is
MIN_INSTANCES = 2  # a component is split only when at least this many teacher boxes lie inside it
DEFAULT_POSITIVE = 0.4
DEFAULT_IGNORE = 0.15
TEACHER_SCORE_FLOOR = 0.05  # each teacher's own score threshold before fusion


@dataclass(frozen=True)
class BoxLabels:
    """Boxes for one frame with where each came from.

    Attributes:
        boxes: float32 [N, 4] x1, y1, x2, y2 in frame pixels. labels: int64 [N] into DET_CLASSES.
        ignore: bool [N]. scores: float32 [N], the fused score (NaN for boxes not from the teachers).
        teachers: N tuples of the teacher names that agreed (empty for boxes not from the teachers).
        sources: N strings, "teacher", "component" (CamVid mask component) or "dataset".
    """

    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    scores: np.ndarray
    teachers: tuple[tuple[str, ...], ...]
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls) -> BoxLabels:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.float32), (), ()
        )

    @classmethod
    def from_dataset(cls, boxes, labels, ignore, source: str) -> BoxLabels:
        n = len(labels)
        return cls(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(labels, np.int64),
            np.asarray(ignore, bool).reshape(n),
            np.full(n, np.nan, np.float32),
            ((),) * n,
            (source,) * n,
        )

    def select(self, index: Sequence[int]) -> BoxLabels:
        idx = np.asarray(index, np.int64)
        return BoxLabels(
            self.boxes[idx].reshape(-1, 4),
            self.labels[idx],
            self.ignore[idx],
            self.scores[idx],
            tuple(self.teachers[i] for i in idx),
            tuple(self.sources[i] for i in idx),
        )

    @staticmethod
    def concat(parts: Sequence[BoxLabels]) -> BoxLabels:
        if not parts:
            return BoxLabels.empty()
        return BoxLabels(
            np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.ignore for p in parts]),
            np.concatenate([p.scores for p in parts]),
            tuple(t for p in parts for t in p.teachers),
            tuple(s for p in parts for s in p.sources),
        )

    def meta(self) -> list[dict]:
        """Per box: {"score": float or None, "teachers": [...], "source": str, "ignore": bool}."""
        return [
            {
                "score": None if np.isnan(s) else round(float(s), 5),
                "teachers": list(t),
                "source": src,
                "ignore": bool(ig),
            }
            for s, t, src, ig in zip(
                self.scores.tolist(), self.teachers, self.sources, self.ignore.tolist(), strict=True
            )
        ]


def teacher_labels(result: EnsembleResult, positive_threshold: float, ignore_threshold: float) -> BoxLabels:
    """Fused teacher boxes -> positives (score >= positive_threshold) and ignore boxes (ignore_threshold <=
    score < positive_threshold); lower scores and boxes with no area are dropped."""
    f = result.fused
    b = f.boxes
    keep = np.flatnonzero((f.scores >= ignore_threshold) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    return BoxLabels(
        f.boxes[keep].reshape(-1, 4),
        f.labels[keep],
        f.scores[keep] < positive_threshold,
        f.scores[keep],
        tuple(tuple(result.agreeing(int(k))) for k in keep),
        ("teacher",) * len(keep),
    )


def inside_fraction(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """float64 [N, M]: area of (inner[i] ∩ outer[j]) / area of inner[i]; boxes float [N, 4] / [M, 4] xyxy."""
    a = np.asarray(inner, np.float64).reshape(-1, 1, 4)
    b = np.asarray(outer, np.float64).reshape(1, -1, 4)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    area = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    out = np.zeros(iw.shape, np.float64)
    np.divide(iw * ih, np.broadcast_to(area, iw.shape), out=out, where=np.broadcast_to(area, iw.shape) > 0)
    return out


def merge_component_boxes(
    components: BoxLabels,
    teacher: BoxLabels,
    mode: str,
    inside: float = INSIDE_FRACTION,
    min_instances: int = MIN_INSTANCES,
) -> BoxLabels:
    """Combine mask-component boxes with teacher boxes per ``mode`` (module docstring: component, teacher, both).

    Args:
        components: the loader's boxes (frame pixels). teacher: fused teacher boxes; only the positives
            (``ignore`` False) are used.
        inside: a teacher box belongs to a component of the same class when at least this fraction of its
            area lies inside the component's box (the component where the fraction is largest, if several).
        min_instances: a component is split when at least this many teacher boxes belong to it.

    Returns:
        BoxLabels in component order: each component, or its teacher instances ("teacher"), or the
        component followed by its instances ("both"). The inputs are not modified.
    """
    if mode not in CAMVID_BOX_MODES:
        raise ValueError(f"camvid_boxes must be one of {list(CAMVID_BOX_MODES)}, got {mode!r}")
    if mode == "component" or not len(components):
        return components
    pos = np.flatnonzero(~teacher.ignore)
    owner = np.full(len(pos), -1, np.int64)
    if len(pos):
        frac = inside_fraction(teacher.boxes[pos], components.boxes)
        frac[teacher.labels[pos][:, None] != components.labels[None, :]] = 0.0
        best = frac.argmax(1)
        ok = frac[np.arange(len(pos)), best] >= inside
        owner[ok] = best[ok]
    parts = []
    for c in range(len(components)):
        mine = pos[owner == c]
        if len(mine) >= min_instances:
            if mode == "both":
                parts.append(components.select([c]))
            parts.append(teacher.select(mine))
        else:
            parts.append(components.select([c]))
    return BoxLabels.concat(parts)


@dataclass(frozen=True)
class FrameItem:
    """One frame to label: its output name, the image (uint8 [H, W, 3] BGR) and its dataset sample, if any."""

    name: str
    image: np.ndarray
    sample: Sample | None = None


@dataclass
class FrameInput:
    """What ``open_frames`` found: the frames (lazily), how many, and the dataset they come from (if any)."""

    kind: str
    path: str
    frames: Iterator[FrameItem]
    total: int | None
    dataset: object | None = None
    skipped: list[str] | None = None


def open_frames(
    spec: str, split: str = "train", every: int = 1, class_map=None, dataset_options: dict | None = None
) -> FrameInput:
    """Frames of ``video:PATH``, ``images:DIR`` or a dataset ``KIND:PATH`` (its ``split``), every ``every``-th.
    ``dataset_options`` go to the dataset's loader (e.g. ``lane_autolabel`` for camvid).

    Raises ConfigError for a bad spec or ``every`` < 1, InputError / DatasetError for missing files.
    """
    if every < 1:
        raise ConfigError(f"--every must be at least 1, got {every}")
    kind, sep, path = spec.partition(":")
    if sep and kind in FRAME_KINDS:
        if not path:
            raise ConfigError(f"{spec!r} has no path after {kind}:")
        skipped: list[str] = []
        if kind == "video":
            from perception.sources import VideoFileSource

            source = VideoFileSource(path)
            total = None if source.expected_frames is None else -(-source.expected_frames // every)
            stem = Path(path).stem
            return FrameInput(kind, path, _video_items(source, stem, every), total, None, skipped)
        from perception.sources import ImageFolderSource

        source = ImageFolderSource(path)
        total = -(-len(source.files) // every)
        return FrameInput(kind, path, _image_items(source, every, skipped), total, None, skipped)
    from perception.data.registry import build_dataset, parse_data_spec

    kind, root = parse_data_spec(spec)
    dataset = build_dataset(kind, root, split=split, class_map=class_map, **(dataset_options or {}))
    indices = range(0, len(dataset), every)
    skipped = []
    return FrameInput(kind, root, _dataset_items(dataset, indices, skipped), len(indices), dataset, skipped)


def _video_items(source, stem: str, every: int) -> Iterator[FrameItem]:
    try:
        for frame in source:
            if frame.index % every == 0:
                yield FrameItem(f"{stem}/{frame.index:06d}", frame.image)
    finally:
        source.close()


def _image_items(source, every: int, skipped: list[str]) -> Iterator[FrameItem]:
    from perception.sources import BadFrame

    stems = [f.stem for f in source.files]
    for frame in source:
        if frame.index % every:
            continue
        file = source.files[frame.index]
        # a.jpg beside a.png: keep both, the second under a name with its suffix
        name = file.stem if stems.count(file.stem) == 1 else f"{file.stem}_{file.suffix.lstrip('.')}"
        if isinstance(frame, BadFrame):
            log.warning("skipped %s: %s", frame.source, frame.reason)
            skipped.append(f"{frame.source}: {frame.reason}")
            continue
        yield FrameItem(name, frame.image)


def _dataset_items(dataset, indices, skipped: list[str]) -> Iterator[FrameItem]:
    from perception.data.sample import DatasetError

    for i in indices:
        try:
            sample = dataset[i]
        except DatasetError as err:
            log.warning("skipped: %s", err)
            skipped.append(str(err))
            continue
        name = sample.name
        if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:  # CamVid names its samples "val/x.png"
            name = str(PurePosixPath(name).with_suffix(""))
        yield FrameItem(name, sample.image, sample)


class Labeller:
    """Turns frames into labelled Samples (module docstring for the rules).

    Args:
        ensemble: the fused teachers (``TeacherEnsemble``).
        positive_threshold / ignore_threshold: fused-score thresholds for box labels and ignore boxes.
        lanes: a lane teacher with ``masks(frame) -> (drivable, lane)`` (``TwinLiteNetPlus``) or None.
        camvid_boxes: "component", "teacher" or "both", for samples whose boxes are CamVid mask components.
        seg_classes: the output's segmentation classes (must hold "drivable" and "lane" when ``lanes``).
    """

    def __init__(
        self,
        ensemble: TeacherEnsemble,
        positive_threshold: float = DEFAULT_POSITIVE,
        ignore_threshold: float = DEFAULT_IGNORE,
        lanes=None,
        camvid_boxes: str = "component",
        seg_classes: Sequence[str] = SEG_CLASSES,
    ):
        if not 0.0 <= ignore_threshold <= positive_threshold <= 1.0:
            raise ConfigError(
                f"need 0 <= ignore threshold ({ignore_threshold}) <= positive threshold ({positive_threshold}) <= 1"
            )
        if camvid_boxes not in CAMVID_BOX_MODES:
            raise ConfigError(f"unknown camvid boxes mode {camvid_boxes!r} (valid: {', '.join(CAMVID_BOX_MODES)})")
        self.seg_classes = tuple(seg_classes)
        if lanes is not None and not {"drivable", "lane"} <= set(self.seg_classes):
            raise ConfigError(f"lane labels need 'drivable' and 'lane' segmentation classes, got {self.seg_classes}")
        self.ensemble = ensemble
        self.positive_threshold = float(positive_threshold)
        self.ignore_threshold = float(ignore_threshold)
        self.lanes = lanes
        self.camvid_boxes = camvid_boxes

    def describe(self) -> dict:
        """The options, for each sample's meta and the dataset description."""
        return {
            "teachers": list(self.ensemble.names),
            "thresholds": {
                "positive": self.positive_threshold,
                "ignore": self.ignore_threshold,
                "wbf_iou": self.ensemble.iou_thr,
                "teacher_score_floor": self.ensemble.skip_box_thr,
            },
            "lanes": None if self.lanes is None else self.lanes.name,
            "camvid_boxes": self.camvid_boxes,
        }

    def label(self, item: FrameItem) -> Sample:
        """One frame -> a Sample with teacher boxes (and lanes); the item's own sample is not modified.

        The teachers run only where their boxes are used: on frames without boxes of their own, and on
        CamVid-style component boxes with ``camvid_boxes`` "teacher" or "both".
        """
        s = item.sample
        info = self.describe()
        if s is not None and s.boxes is not None:
            from_components = s.meta.get("boxes_from") == COMPONENT_BOXES
            own = BoxLabels.from_dataset(s.boxes, s.labels, s.ignore, "component" if from_components else "dataset")
            if from_components and self.camvid_boxes != "component":
                boxes = merge_component_boxes(own, self.teacher_boxes(item.image), self.camvid_boxes)
            else:
                boxes = own
            if not from_components:
                info["camvid_boxes"] = None
        else:
            boxes = self.teacher_boxes(item.image)
            info["camvid_boxes"] = None
        meta: dict = dict(s.meta) if s is not None else {}
        seg, lane_labelled = (s.seg, s.lane_labelled) if s is not None else (None, False)
        if self.lanes is not None:
            seg, lane_labelled, note = self._lanes(item.image, seg, lane_labelled)
            if note:
                meta["lane_labels"] = note
        meta["teacher_labels"] = info
        meta["box_labels"] = boxes.meta()
        return Sample(
            image=item.image,
            name=item.name,
            seg=seg,
            lane_labelled=lane_labelled,
            boxes=boxes.boxes,
            labels=boxes.labels,
            ignore=boxes.ignore,
            meta=meta,
        )

    def teacher_boxes(self, image: np.ndarray) -> BoxLabels:
        """The fused teacher boxes of one frame (uint8 [H, W, 3] BGR): positives and ignore boxes."""
        return teacher_labels(self.ensemble.run(image), self.positive_threshold, self.ignore_threshold)

    def _lanes(self, image: np.ndarray, seg: np.ndarray | None, lane_labelled: bool):
        drivable_id, lane_id = self.seg_classes.index("drivable"), self.seg_classes.index("lane")
        if seg is not None and lane_labelled:
            return seg, True, None  # the dataset labels lanes itself
        drivable, lane = self.lanes.masks(image)
        if seg is None:
            out = np.zeros(image.shape[:2], np.uint8)  # background is class 0 in every project class list
            out[drivable] = drivable_id
            out[lane] = lane_id
            return out, True, f"{self.lanes.name}: drivable area and lane lines (no mask in the source)"
        out = seg.copy()
        out[lane & (seg == drivable_id)] = lane_id
        return out, True, f"{self.lanes.name} lane lines on the source's drivable class (source mask kept)"


def label_to_folder(
    frames: FrameInput,
    labeller: Labeller,
    out_dir: str | os.PathLike,
    split: str = "train",
    progress: bool = True,
    description: str = "",
) -> dict:
    """Label every frame of ``frames`` and write them to ``out_dir`` (``DatasetWriter``); returns a summary.

    Summary: frames written, skipped (with messages), boxes, ignored boxes, boxes per class (positives),
    seconds and frames/s.
    """
    from perception.data.writers import DatasetWriter

    det_classes = tuple(DET_CLASSES)
    if frames.dataset is not None and tuple(frames.dataset.det_classes) != det_classes:
        raise ConfigError(
            f"{frames.kind} class map gives detection classes {list(frames.dataset.det_classes)}; teacher labels "
            f"need {list(det_classes)}"
        )
    bar = Progress(frames.total, enabled=progress)
    per_class = dict.fromkeys(det_classes, 0)
    n = boxes = ignored = 0
    t0 = time.perf_counter()
    with DatasetWriter(
        out_dir, seg_classes=labeller.seg_classes, det_classes=det_classes, description=description
    ) as w:
        for item in frames.frames:
            sample = labeller.label(item)
            w.add(sample, split)
            n += 1
            boxes += len(sample.labels)
            ignored += int(sample.ignore.sum())
            for c in sample.labels[~sample.ignore].tolist():
                per_class[det_classes[c]] += 1
            bar.update(n)
    bar.finish()
    seconds = time.perf_counter() - t0
    return {
        "frames": n,
        "skipped": list(frames.skipped or []),
        "boxes": boxes,
        "ignored_boxes": ignored,
        "positives_per_class": per_class,
        "seconds": round(seconds, 2),
        "fps": round(n / seconds, 2) if seconds > 0 else None,
    }
