"""Multi-object tracking metrics: CLEAR-MOT (MOTA, MOTP, ID switches, fragmentations) and IDF1.

Input, per frame: ground truth (ids, boxes, optional ignore flags) and hypotheses (ids, boxes), boxes float
[N, 4] x1, y1, x2, y2 in one pixel frame (any, the same for both). Ids only need to be unique within a
frame, and within a sequence for the same object; they may be ints or strings.

Per frame (:meth:`MotAccumulator.update`):

1. Ignore regions (MOTChallenge's distractor rule): all ground truth, ignored boxes included, is matched to
   the hypotheses (IoU >= ``iou_threshold``, most pairs then least summed 1 - IoU). Hypotheses matched to
   an ignored box are removed from the frame (neither TP nor FP, and absent from the identity counts);
   ignored boxes are removed too (never FN).
2. CLEAR-MOT matching (Bernardin and Stiefelhagen 2008): a ground-truth object keeps the hypothesis it was
   matched to in the previous frame while their IoU is still >= ``iou_threshold``; the remaining objects
   and hypotheses are matched with most pairs, then least summed 1 - IoU (Hungarian). With
   ``carry_over="last_match"`` the kept correspondence is the object's last match in any earlier frame
   (what py-motmetrics 1.4 does) instead of only the previous frame's (what TrackEval does).
3. Counts: TP (matches), FP (unmatched hypotheses), FN (unmatched objects), an ID switch when an object is
   matched to a hypothesis other than its last match (in any earlier frame of the sequence), a
   fragmentation when an object that had been matched, then missed (in frames where it is present), is
   matched again (py-motmetrics' definition: frames where the object is absent do not interrupt it).

Over the run: ``MOTA = 1 - (FN + FP + IDSW) / GT``; ``MOTP`` = mean IoU of the matches (py-motmetrics
reports the mean distance, 1 - this); ``idsw_per_100`` = IDSW per 100 matched ground-truth frames (TP).
Identity metrics (Ristani et al., "Performance Measures and a Data Set for Multi-Target, Multi-Camera
Tracking", 2016): per sequence, ground-truth ids and hypothesis ids are matched one to one so that the number
of frames in which the matched pair overlaps with IoU >= ``iou_threshold`` (IDTP) is largest; IDFN = GT - IDTP,
IDFP = hypotheses - IDTP, summed over sequences; ``IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN)``,
``IDP = IDTP / (IDTP + IDFP)``, ``IDR = IDTP / (IDTP + IDFN)``.

Accumulators over different sequences merge exactly (:meth:`MotAccumulator.merge`): every count is a sum,
and the identity matching of each sequence is solved on its own.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from perception.frames import Detections
from perception.fusion.association import max_weight_matching, min_cost_matching
from perception.fusion.tracking import ByteTracker
from perception.postprocess.nms import box_iou

CARRY_OVER = ("previous_frame", "last_match")

_COUNTS = ("num_frames", "num_gt", "num_hyp", "num_ignored_hyp", "tp", "fp", "fn", "idsw", "frag", "idtp")


def _ratio(num: float, den: float) -> float:
    return float(num) / den if den else math.nan


@dataclass(frozen=True)
class MotResult:
    """Tracking metrics over one or more sequences.

    Attributes:
        num_frames: frames seen.
        num_gt: ground-truth boxes (ignored ones excluded), summed over frames.
        num_hyp: hypothesis boxes (those on ignored ground truth excluded), summed over frames.
        num_ignored_hyp: hypothesis boxes removed because they matched ignored ground truth.
        tp, fp, fn: matched boxes, unmatched hypotheses, unmatched ground truth.
        idsw: identity switches. frag: fragmentations.
        iou_sum: summed IoU of the TP matches.
        idtp, idfp, idfn: identity true positives, false positives, false negatives.
        num_sequences: sequences (identity matchings) summed.
    """

    num_frames: int = 0
    num_gt: int = 0
    num_hyp: int = 0
    num_ignored_hyp: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    idsw: int = 0
    frag: int = 0
    iou_sum: float = 0.0
    idtp: int = 0
    idfp: int = 0
    idfn: int = 0
    num_sequences: int = 0

    @property
    def mota(self) -> float:
        """1 - (FN + FP + IDSW) / GT; NaN without ground truth. May be negative."""
        return 1.0 - _ratio(self.fn + self.fp + self.idsw, self.num_gt) if self.num_gt else math.nan

    @property
    def motp(self) -> float:
        """Mean IoU of the matches (NaN without matches)."""
        return _ratio(self.iou_sum, self.tp)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.num_gt)

    @property
    def idf1(self) -> float:
        return _ratio(2 * self.idtp, 2 * self.idtp + self.idfp + self.idfn)

    @property
    def idp(self) -> float:
        return _ratio(self.idtp, self.idtp + self.idfp)

    @property
    def idr(self) -> float:
        return _ratio(self.idtp, self.idtp + self.idfn)

    @property
    def idsw_per_100(self) -> float:
        """ID switches per 100 matched ground-truth frames (track-frames)."""
        return 100.0 * _ratio(self.idsw, self.tp)

    def to_dict(self) -> dict[str, float | int]:
        """Counts and metrics as plain numbers (NaN where undefined)."""
        out: dict[str, float | int] = asdict(self)
        for name in ("mota", "motp", "precision", "recall", "idf1", "idp", "idr", "idsw_per_100"):
            out[name] = getattr(self, name)
        return out


class _SequenceState:
    """Matching state and identity counts of the sequence being accumulated."""

    def __init__(self) -> None:
        self.frame = 0
        self.last_hyp: dict[Hashable, Hashable] = {}  # ground-truth id -> hypothesis id of its last match
        self.last_match_frame: dict[Hashable, int] = {}
        self.tracked_prev: dict[Hashable, bool] = {}  # matched the last time it was present
        self.in_gap: set[Hashable] = set()  # missed since its last match
        self.pair_frames: Counter = Counter()  # (gt id, hyp id) -> frames with IoU >= threshold

    def idtp(self) -> int:
        """Largest number of overlapping frames over one-to-one id matchings."""
        if not self.pair_frames:
            return 0
        gts = sorted({g for g, _ in self.pair_frames}, key=repr)
        hyps = sorted({h for _, h in self.pair_frames}, key=repr)
        gi, hi = {g: i for i, g in enumerate(gts)}, {h: j for j, h in enumerate(hyps)}
        weight = np.zeros((len(gts), len(hyps)))
        for (g, h), n in self.pair_frames.items():
            weight[gi[g], hi[h]] = n
        rows, cols = max_weight_matching(weight, weight > 0)
        return int(round(weight[rows, cols].sum()))


def _ids(values: Sequence[Hashable] | np.ndarray, name: str) -> list:
    ids = np.asarray(values).reshape(-1).tolist() if isinstance(values, np.ndarray) else list(values)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name} holds duplicate ids: {ids}")
    return ids


def _boxes(values, n: int, name: str) -> np.ndarray:
    boxes = np.asarray(values, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.shape != (n, 4) or not np.isfinite(boxes).all():
        raise ValueError(f"{name} must be finite [{n}, 4] x1, y1, x2, y2, got shape {boxes.shape}")
    return boxes


class MotAccumulator:
    """Accumulates CLEAR-MOT and identity counts over frames of one or more sequences.

    Args:
        iou_threshold: a ground-truth box and a hypothesis may match when IoU >= this.
        carry_over: "previous_frame" (keep a correspondence only from the previous frame, as TrackEval) or
            "last_match" (keep an object's last correspondence, as py-motmetrics 1.4).
    """

    def __init__(self, iou_threshold: float = 0.5, carry_over: str = "previous_frame"):
        if carry_over not in CARRY_OVER:
            raise ValueError(f"carry_over must be one of {CARRY_OVER}, got {carry_over!r}")
        if not 0 < iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = float(iou_threshold)
        self.carry_over = carry_over
        self._counts = dict.fromkeys(_COUNTS, 0)
        self._iou_sum = 0.0
        self._sequences = 0  # closed sequences, their idtp already in _counts
        self._seq = _SequenceState()

    def update(
        self,
        gt_ids: Sequence[Hashable] | np.ndarray,
        gt_boxes: np.ndarray,
        hyp_ids: Sequence[Hashable] | np.ndarray,
        hyp_boxes: np.ndarray,
        gt_ignore: np.ndarray | None = None,
    ) -> None:
        """Add one frame.

        Args:
            gt_ids: [N] ground-truth ids, unique in the frame.
            gt_boxes: float [N, 4] x1, y1, x2, y2.
            hyp_ids: [M] hypothesis (track) ids, unique in the frame.
            hyp_boxes: float [M, 4] x1, y1, x2, y2, same pixel frame as ``gt_boxes``.
            gt_ignore: optional bool [N]: True for ground truth that neither counts as missed nor makes a
                hypothesis on it a false positive.

        Raises:
            ValueError: shapes disagree, boxes are not finite, or ids repeat within the frame.
        """
        g_ids, h_ids = _ids(gt_ids, "gt_ids"), _ids(hyp_ids, "hyp_ids")
        g_boxes, h_boxes = _boxes(gt_boxes, len(g_ids), "gt_boxes"), _boxes(hyp_boxes, len(h_ids), "hyp_boxes")
        ignore = np.zeros(len(g_ids), bool) if gt_ignore is None else np.asarray(gt_ignore, bool).reshape(-1)
        if ignore.shape != (len(g_ids),):
            raise ValueError(f"gt_ignore must be bool [{len(g_ids)}], got shape {ignore.shape}")
        thr = self.iou_threshold
        iou = box_iou(g_boxes, h_boxes)
        c = self._counts
        c["num_frames"] += 1
        seq = self._seq
        seq.frame += 1

        if ignore.any():
            rows, cols = min_cost_matching(1.0 - iou, iou >= thr)
            drop = cols[ignore[rows]]
            keep_h = np.ones(len(h_ids), bool)
            keep_h[drop] = False
            c["num_ignored_hyp"] += int(drop.size)
            keep_g = ~ignore
            iou = iou[np.ix_(keep_g, keep_h)]
            g_ids = [g for g, k in zip(g_ids, keep_g.tolist(), strict=True) if k]
            h_ids = [h for h, k in zip(h_ids, keep_h.tolist(), strict=True) if k]
        ng, nh = len(g_ids), len(h_ids)
        c["num_gt"] += ng
        c["num_hyp"] += nh
        valid = iou >= thr
        for i, j in zip(*np.nonzero(valid), strict=True):
            seq.pair_frames[(g_ids[i], h_ids[j])] += 1

        match_of_gt = np.full(ng, -1, np.intp)
        hyp_taken = np.zeros(nh, bool)
        hyp_index = {h: j for j, h in enumerate(h_ids)}
        # 1. Keep still-valid correspondences.
        for i, g in enumerate(g_ids):
            prev = seq.last_hyp.get(g)
            if prev is None:
                continue
            if self.carry_over == "previous_frame" and seq.last_match_frame[g] != seq.frame - 1:
                continue
            j = hyp_index.get(prev)
            if j is not None and not hyp_taken[j] and valid[i, j]:
                match_of_gt[i] = j
                hyp_taken[j] = True
        # 2. The rest: most pairs, least summed 1 - IoU.
        free_g, free_h = np.flatnonzero(match_of_gt < 0), np.flatnonzero(~hyp_taken)
        if free_g.size and free_h.size:
            sub = np.ix_(free_g, free_h)
            rows, cols = min_cost_matching(1.0 - iou[sub], valid[sub])
            for r, k in zip(rows.tolist(), cols.tolist(), strict=True):
                i, j = int(free_g[r]), int(free_h[k])
                g = g_ids[i]
                if g in seq.last_hyp and seq.last_hyp[g] != h_ids[j]:
                    c["idsw"] += 1
                match_of_gt[i] = j
                hyp_taken[j] = True
        # 3. Counts and per-object state.
        n_match = int((match_of_gt >= 0).sum())
        c["tp"] += n_match
        c["fn"] += ng - n_match
        c["fp"] += nh - n_match
        for i, g in enumerate(g_ids):
            j = int(match_of_gt[i])
            if j >= 0:
                self._iou_sum += float(iou[i, j])
                seq.last_hyp[g] = h_ids[j]
                seq.last_match_frame[g] = seq.frame
                if g in seq.in_gap:
                    c["frag"] += 1
                    seq.in_gap.discard(g)
                seq.tracked_prev[g] = True
            elif seq.tracked_prev.get(g, False):
                seq.tracked_prev[g] = False
                seq.in_gap.add(g)

    def new_sequence(self) -> None:
        """End the current sequence: ids seen later are new objects and tracks (no switch across the cut)."""
        if self._seq.frame:
            self._counts["idtp"] += self._seq.idtp()
            self._sequences += 1
        self._seq = _SequenceState()

    def merge(self, other: MotAccumulator) -> MotAccumulator:
        """A new accumulator holding both runs as separate sequences (neither input is changed).

        Counts add up; each sequence keeps its own identity matching. The result starts a fresh sequence
        on its next :meth:`update`.
        """
        if other.iou_threshold != self.iou_threshold or other.carry_over != self.carry_over:
            raise ValueError(
                f"cannot merge accumulators with different settings: ({self.iou_threshold}, {self.carry_over}) "
                f"and ({other.iou_threshold}, {other.carry_over})"
            )
        out = MotAccumulator(self.iou_threshold, self.carry_over)
        for acc in (self, other):
            for k in _COUNTS:
                out._counts[k] += acc._counts[k]
            out._iou_sum += acc._iou_sum
            out._sequences += acc._sequences
            if acc._seq.frame:
                out._counts["idtp"] += acc._seq.idtp()
                out._sequences += 1
        return out

    def result(self) -> MotResult:
        """The metrics over everything accumulated so far (the current sequence included)."""
        c = dict(self._counts)
        n_seq = self._sequences
        if self._seq.frame:
            c["idtp"] += self._seq.idtp()
            n_seq += 1
        return MotResult(
            iou_sum=self._iou_sum,
            idfp=c["num_hyp"] - c["idtp"],
            idfn=c["num_gt"] - c["idtp"],
            num_sequences=n_seq,
            **c,
        )


# ----------------------------------------------------------------------------------------------------------
# The tracker on synthetic clips: ground truth made into noisy detections.


@dataclass(frozen=True)
class DetectionNoise:
    """How ground-truth boxes are turned into simulated detector output.

    Attributes:
        jitter: standard deviation of each box edge, as a fraction of the box width (x edges) or height.
        drop_p: probability that a ground-truth box is not detected in a frame.
        score_range: detection scores are uniform in [low, high).
        false_positives_per_frame: mean (Poisson) number of random boxes added per frame, each seen once.
        false_positive_size_px: (min, max) side length of those boxes in pixels.
    """

    jitter: float = 0.03
    drop_p: float = 0.1
    score_range: tuple[float, float] = (0.3, 0.95)
    false_positives_per_frame: float = 0.3
    false_positive_size_px: tuple[float, float] = (8.0, 80.0)


def noisy_detections(
    boxes_xyxy: np.ndarray,
    labels: np.ndarray,
    frame_size_hw: tuple[int, int],
    rng: np.random.Generator,
    noise: DetectionNoise = DetectionNoise(),
    num_classes: int = 4,
) -> Detections:
    """Simulated detections from ground truth.

    Args:
        boxes_xyxy: float [N, 4] ground-truth boxes x1, y1, x2, y2 in frame pixels.
        labels: int [N] class ids.
        frame_size_hw: (H, W) of the frame; boxes are clipped to it.
        rng: the random generator (all randomness comes from it).
        noise: the noise model.
        num_classes: labels of false positives are drawn from range(num_classes).

    Returns:
        ``Detections`` in frame pixels: the kept, jittered boxes first, then the false positives.
    """
    h, w = frame_size_hw
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    keep = rng.random(boxes.shape[0]) >= noise.drop_p
    boxes, labels = boxes[keep], labels[keep]
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    boxes = boxes + rng.normal(0.0, noise.jitter, boxes.shape) * np.tile(size, (1, 2))
    n_fp = int(rng.poisson(noise.false_positives_per_frame))
    lo, hi = noise.false_positive_size_px
    fp_wh = rng.uniform(lo, hi, (n_fp, 2))
    fp_xy = rng.uniform(0, 1, (n_fp, 2)) * np.maximum(np.array([w, h]) - fp_wh, 1.0)
    boxes = np.concatenate([boxes, np.concatenate([fp_xy, fp_xy + fp_wh], axis=1)])
    labels = np.concatenate([labels, rng.integers(0, num_classes, n_fp)])
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
    # Jitter can swap two edges of a thin box; keep the box valid.
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    scores = rng.uniform(*noise.score_range, boxes.shape[0])
    return Detections(boxes.astype(np.float32), scores.astype(np.float32), labels.astype(np.int32))


def track_clip(
    samples: Iterable,
    tracker: ByteTracker,
    rng: np.random.Generator,
    noise: DetectionNoise = DetectionNoise(),
    iou_threshold: float = 0.5,
    num_classes: int = 4,
    min_gt_size_px: float = 0.0,
) -> MotAccumulator:
    """Run ``tracker`` on noisy detections made from a clip's ground truth and score its tracks.

    Args:
        samples: the clip's frames in order, ``perception.data.sample.Sample`` values with ``boxes``,
            ``labels``, ``ignore`` and ``meta["objects"][k]["track_id"]`` (aligned with ``boxes``) and
            ``meta["timestamp_s"]``, as ``perception.data.synth.generate.synth_clip`` yields them.
        tracker: a tracker; it is reset first.
        rng: random generator for the detection noise.
        noise: the noise model.
        iou_threshold: IoU for a track to match a ground-truth box.
        num_classes: number of detection classes (labels of false positives).
        min_gt_size_px: ground-truth boxes whose width or height is below this (px) are scored as ignore
            regions too (0: only the samples' own ``ignore`` flags).

    Returns:
        The accumulator over the clip (one sequence). Ignored ground truth is fed to the tracker like the
        rest (a detector finds such objects too) and scored as ignore regions.
    """
    tracker.reset()
    acc = MotAccumulator(iou_threshold)
    for s in samples:
        gt_ids = [o["track_id"] for o in s.meta["objects"]]
        dets = noisy_detections(s.boxes, s.labels, s.image.shape[:2], rng, noise, num_classes)
        tracks = tracker.update(dets, float(s.meta["timestamp_s"]))
        hyp_boxes = np.stack([t.box_xyxy for t in tracks]) if tracks else np.zeros((0, 4))
        size = np.minimum(s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1])
        acc.update(gt_ids, s.boxes, [t.track_id for t in tracks], hyp_boxes, s.ignore | (size < min_gt_size_px))
    return acc


def evaluate_tracker_on_clips(
    clips: Iterable[Iterable],
    make_tracker: Callable[[], ByteTracker] = ByteTracker,
    noise: DetectionNoise = DetectionNoise(),
    seed: int = 0,
    iou_threshold: float = 0.5,
    min_gt_size_px: float = 0.0,
) -> tuple[MotResult, list[MotResult]]:
    """:func:`track_clip` over several clips (a fresh tracker each, noise from ``seed`` and the clip's index);
    returns (all clips merged, per clip)."""
    total = MotAccumulator(iou_threshold)
    per_clip = []
    for k, clip in enumerate(clips):
        rng = np.random.default_rng([seed, k])
        acc = track_clip(clip, make_tracker(), rng, noise, iou_threshold, min_gt_size_px=min_gt_size_px)
        per_clip.append(acc.result())
        total = total.merge(acc)
    return total.result(), per_clip
