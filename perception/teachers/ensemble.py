"""Several teachers fused into one detector with weighted box fusion (``perception.teachers.box_fusion``).

Each teacher's detections, already in the project's classes (car, pedestrian, cyclist, traffic_sign) and
frame pixels, are one "model" of the fusion; boxes fuse per project class, so a bus from one teacher and a
truck from another (both "car") can agree. The fused score is the mean score of the agreeing teachers
times the fraction of teachers that agree: an object all M teachers find keeps its mean score, one that
only one finds gets 1 / M of it.

Riders once more, after the fusion (``riders=True``): each teacher already merges a person on a bicycle
into one cyclist box, but where one teacher saw the bicycle and another only the person, the fused
result holds a pedestrian box on (or inside) a cyclist box; it is merged into the cyclist box (union of
the boxes, the higher score, the union of the contributing teachers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perception.frames import Prediction
from perception.peers import DET_CLASSES
from perception.teachers.box_fusion import FusedBoxes, weighted_boxes_fusion
from perception.teachers.detectors import clip_boxes, rider_pairs, union_box

ENSEMBLE_IOU = 0.55  # the WBF paper's default


@dataclass(frozen=True)
class EnsembleResult:
    """One frame's fused detections and what each teacher said.

    Attributes:
        fused: FusedBoxes in frame pixels (boxes float32 [K, 4] x1, y1, x2, y2, scores [K], labels int64 [K]
            into DET_CLASSES, models bool [K, M] in the order of ``names``).
        per_teacher: each teacher's own Prediction (frame pixels), in the order of ``names``.
        names: the teachers' names.
    """

    fused: FusedBoxes
    per_teacher: tuple[Prediction, ...]
    names: tuple[str, ...]

    def agreeing(self, k: int) -> list[str]:
        """Names of the teachers that contributed to fused box ``k``."""
        return [self.names[m] for m in self.fused.model_indices(k)]


class TeacherEnsemble:
    """Teachers (each with ``name`` and ``predict(frame_bgr) -> Prediction``) fused by WBF.

    Args:
        teachers: the detectors, each one model of the fusion.
        weights: one positive weight per teacher (None: equal).
        iou_thr: WBF IoU; a box joins a cluster when its IoU with the fused box is strictly greater.
        skip_box_thr: teacher boxes below this score are left out of the fusion.
        max_dets: at most this many fused boxes per frame (highest scores).
        riders: merge fused pedestrian boxes that ride a fused cyclist box into it (module docstring).
    """

    seg_classes: tuple[str, ...] = ()
    det_classes: tuple[str, ...] = DET_CLASSES

    def __init__(
        self,
        teachers: Sequence,
        weights: Sequence[float] | None = None,
        iou_thr: float = ENSEMBLE_IOU,
        skip_box_thr: float = 0.0,
        max_dets: int = 300,
        riders: bool = True,
    ):
        if not teachers:
            raise ValueError("an ensemble needs at least one teacher")
        self.teachers = list(teachers)
        self.names = tuple(t.name for t in self.teachers)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.iou_thr = float(iou_thr)
        self.skip_box_thr = float(skip_box_thr)
        self.max_dets = int(max_dets)
        self.riders = bool(riders)
        self.name = "ensemble(" + ",".join(self.names) + ")"

    def run(self, frame_bgr: np.ndarray) -> EnsembleResult:
        """Every teacher on one frame (uint8 [H, W, 3] BGR), then WBF; boxes clipped to the frame."""
        preds = tuple(t.predict(frame_bgr) for t in self.teachers)
        fused = weighted_boxes_fusion(
            [p.boxes for p in preds],
            [p.scores for p in preds],
            [p.labels for p in preds],
            weights=self.weights,
            iou_thr=self.iou_thr,
            skip_box_thr=self.skip_box_thr,
        )
        if self.riders:
            fused = merge_fused_riders(fused)
        k = min(len(fused), self.max_dets)
        fused = FusedBoxes(
            clip_boxes(fused.boxes[:k], frame_bgr.shape[:2]),
            fused.scores[:k],
            fused.labels[:k],
            fused.models[:k],
            fused.counts[:k],
        )
        return EnsembleResult(fused, preds, self.names)

    def predict(self, frame_bgr: np.ndarray) -> Prediction:
        """Fused detections as a Prediction (seg None, frame pixels, labels into DET_CLASSES)."""
        f = self.run(frame_bgr).fused
        return Prediction(None, f.boxes, f.scores, f.labels)


def merge_fused_riders(fused: FusedBoxes) -> FusedBoxes:
    """Fused pedestrian boxes riding a fused cyclist box (``rider_pairs``) merged into it; a new value.

    The cyclist box becomes the union of both, its score the higher of the two, its models the union and
    its count the sum; the pedestrian box is removed. The result is re-sorted by descending score.
    """
    ped, cyc = DET_CLASSES.index("pedestrian"), DET_CLASSES.index("cyclist")
    pairs = rider_pairs(fused.boxes, fused.scores, fused.labels, (ped,), (cyc,))
    if not pairs:
        return fused
    boxes, scores = fused.boxes.copy(), fused.scores.copy()
    models, counts = fused.models.copy(), fused.counts.copy()
    for a, b in pairs:
        boxes[b] = union_box(fused.boxes[a], fused.boxes[b])
        scores[b] = max(fused.scores[a], fused.scores[b])
        models[b] |= fused.models[a]
        counts[b] += fused.counts[a]
    keep = np.setdiff1d(np.arange(len(fused)), [a for a, _ in pairs])
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return FusedBoxes(boxes[keep], scores[keep], fused.labels[keep].copy(), models[keep], counts[keep])


EVAL_SCORE_THRESHOLD = 0.001  # low enough for mAP to see each teacher's whole ranking


def teacher_specs() -> list[str]:
    """The ``perception eval --model`` names of the teachers: ``teacher:NAME`` and ``teacher:NAME+tta``."""
    from perception.teachers.detectors import TEACHERS

    names = [*TEACHERS, "ensemble"]
    return [f"teacher:{n}" for n in names] + [f"teacher:{n}+tta" for n in names]


def build_teacher_predictor(spec: str, threads: int = 0, score_threshold: float | None = None):
    """A teacher (or the WBF ensemble of all three) as a ``perception eval`` predictor, boxes only.

    Args:
        spec: ``teacher:yolox``, ``teacher:picodet``, ``teacher:yolofastest`` or ``teacher:ensemble``, each
            optionally with ``+tta``.
        score_threshold: None gives ``EVAL_SCORE_THRESHOLD`` (0.001): mAP sees the whole ranking.

    Raises:
        ConfigError listing the valid specs for an unknown one; ModelError for missing weight files.
    """
    from perception.errors import ConfigError
    from perception.teachers.detectors import TEACHERS, build_teacher

    valid = teacher_specs()
    if spec not in valid:
        raise ConfigError(f"unknown teacher {spec!r} (valid: {', '.join(valid)})")
    name, _, suffix = spec.split(":", 1)[1].partition("+")
    tta = suffix == "tta"
    thr = EVAL_SCORE_THRESHOLD if score_threshold is None else float(score_threshold)
    if name != "ensemble":
        return build_teacher(name, threads=threads, score_threshold=thr, tta=tta)
    teachers = [build_teacher(n, threads=threads, score_threshold=thr, tta=tta) for n in TEACHERS]
    return TeacherEnsemble(teachers, skip_box_thr=thr)
