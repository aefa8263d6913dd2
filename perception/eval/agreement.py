"""Teacher-agreement recall: on unlabelled video, how many of the objects the COCO teachers agree on does a
model find?

Reference objects, per frame: each teacher's boxes with score >= ``min_score`` (0.5) are fused by WBF
(``perception.teachers.ensemble``); a fused box that at least ``min_agree`` (2) teachers contributed to is an
object the model should find. The model's detections (its own display threshold) match references of the
same class one to one, greedily by IoU, at IoU >= ``match_iou`` (0.5). Recall per class = matched
references / references, over all frames; ``frames_all_found`` counts frames where every reference of the
class was found.

Only a consistency measure: teachers miss objects and agree on some mistakes, so a model above 0.9 finds
what the teachers find, not everything on the road.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from perception.postprocess.nms import box_iou

log = logging.getLogger(__name__)


@dataclass
class AgreementCounts:
    """Per class: references, references found, frames with references, frames where all were found."""

    classes: tuple[str, ...]
    frames: int = 0
    refs: np.ndarray = field(init=False)  # int64 [C] each
    found: np.ndarray = field(init=False)
    frames_with: np.ndarray = field(init=False)
    frames_all_found: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.classes)
        self.refs, self.found = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.frames_with, self.frames_all_found = np.zeros(n, np.int64), np.zeros(n, np.int64)

    def metrics(self) -> dict[str, float]:
        """``agree.recall.CLASS``, ``agree.frames_all_found.CLASS`` (fractions), ``agree.refs.CLASS``, and
        ``agree.recall`` over all classes; NaN where a class has no reference."""
        out: dict[str, float] = {}
        for c, name in enumerate(self.classes):
            out[f"agree.refs.{name}"] = float(self.refs[c])
            out[f"agree.recall.{name}"] = self.found[c] / self.refs[c] if self.refs[c] else float("nan")
            out[f"agree.frames_all_found.{name}"] = (
                self.frames_all_found[c] / self.frames_with[c] if self.frames_with[c] else float("nan")
            )
        total = int(self.refs.sum())
        out["agree.recall"] = float(self.found.sum() / total) if total else float("nan")
        out["frames"] = float(self.frames)
        return out


def match_one_to_one(ref: np.ndarray, pred: np.ndarray, iou_threshold: float) -> np.ndarray:
    """bool [R]: which reference boxes (float32 [R, 4] xyxy) a prediction (float32 [P, 4]) matches, each
    prediction used once, pairs taken in order of decreasing IoU, IoU >= ``iou_threshold``."""
    matched = np.zeros(len(ref), bool)
    if len(ref) == 0 or len(pred) == 0:
        return matched
    iou = box_iou(ref, pred)
    used = np.zeros(len(pred), bool)
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        r, p = divmod(int(flat), len(pred))
        if iou[r, p] < iou_threshold:
            break
        if not matched[r] and not used[p]:
            matched[r] = used[p] = True
    return matched


def agreement_recall(
    predictor,
    ensemble,
    frames: Iterable[np.ndarray],
    classes: tuple[str, ...],
    min_agree: int = 2,
    match_iou: float = 0.5,
    progress=None,
) -> AgreementCounts:
    """Score ``predictor`` (``predict(frame) -> Prediction``) against what ``ensemble`` (a
    ``TeacherEnsemble`` built with ``skip_box_thr`` = the teachers' minimum score) agrees on.

    Args:
        frames: BGR uint8 [H, W, 3] frames.
        classes: the detection classes, indexing both the teachers' and the model's labels.
    """
    counts = AgreementCounts(tuple(classes))
    for i, frame in enumerate(frames):
        result = ensemble.run(frame)
        fused = result.fused
        agree = fused.models.sum(1) >= min_agree
        pred = predictor.predict(frame)
        for c in range(len(classes)):
            ref = fused.boxes[agree & (fused.labels == c)]
            if not len(ref):
                continue
            found = match_one_to_one(ref, pred.boxes[pred.labels == c], match_iou)
            counts.refs[c] += len(ref)
            counts.found[c] += int(found.sum())
            counts.frames_with[c] += 1
            counts.frames_all_found[c] += int(found.all())
        counts.frames += 1
        if progress is not None:
            progress.update(i + 1)
    return counts


def video_agreement(
    predictor,
    ensemble,
    video: str,
    classes: tuple[str, ...],
    min_agree: int = 2,
    match_iou: float = 0.5,
    max_frames: int | None = None,
    progress: bool = True,
    unit: str = "frames",
) -> AgreementCounts:
    """``agreement_recall`` over the decoded frames of ``video`` (the first ``max_frames``); frames that do not
    decode are skipped, and a warning says how many."""
    from perception.progress import Progress
    from perception.sources import BadFrame, VideoFileSource

    source = VideoFileSource(video)
    bad: list[BadFrame] = []

    def decoded():
        for f in source:
            if isinstance(f, BadFrame):
                bad.append(f)
            else:
                yield f.image

    bar = Progress(source.expected_frames, enabled=progress, unit=unit)
    frames = itertools.islice(decoded(), max_frames)
    counts = agreement_recall(predictor, ensemble, frames, classes, min_agree, match_iou, progress=bar)
    bar.finish()
    source.close()
    if bad:
        log.warning("%s: %d frames could not be decoded, e.g. %s", video, len(bad), bad[0])
    return counts


def format_agreement(
    results: dict[str, dict[str, float]],
    classes: tuple[str, ...],
    teachers: list[str],
    min_agree: int,
    min_score: float,
    match_iou: float,
) -> str:
    """The agreement table: per class and in all, each model's recall and the fraction of frames where it
    found every agreed object (``AgreementCounts.metrics`` per model name)."""
    lines = [
        f"objects that >= {min_agree} of {', '.join(teachers)} box with score >= {min_score}, found at IoU "
        f">= {match_iou} (recall | frames with all found):",
        f"{'class':14s}" + "".join(f"{spec[-28:]:>30s}" for spec in results),
    ]
    for c in (*classes, None):
        key = f"agree.recall.{c}" if c else "agree.recall"
        row = f"{(c or 'all'):14s}"
        for m in results.values():
            all_found = m.get(f"agree.frames_all_found.{c}", float("nan")) if c else float("nan")
            refs = f" of {int(m[f'agree.refs.{c}'])}" if c else ""
            row += f"{m[key]:>10.3f} | {all_found:5.3f}{refs:>11s}"
        lines.append(row)
    return "\n".join(lines)
