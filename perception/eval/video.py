"""Temporal stability of predictions on video: do masks and boxes hold still where the scene does?

Fed frame by frame, in order, per clip (``start_clip`` between clips). Everything is accumulated as sums
over all frame pairs or triples of the whole run, then divided once (never averaged per clip):

- ``video.mask_iou.<class>``: IoU of the predicted class mask between consecutive frames,
  sum(|M_t ∩ M_t+1|) / sum(|M_t ∪ M_t+1|). 1 for a mask that never changes; the scene moves too, so
  compare models on the same clips rather than against 1.
- ``video.box_jitter``: boxes are linked across consecutive frames (same class, greedy by IoU >= 0.5);
  for every object seen in three consecutive frames, the second difference of its box corners,
  |b_t+1 - 2 b_t + b_t-1| (mean over the 4 coordinates), divided by the box diagonal at t. Constant
  motion or a constant zoom gives 0; a box shaking by ±d px gives about 4d / diagonal. Reported as the
  mean over all such triples.
- ``video.box_dropouts``: fraction of linked objects (present at t-1 and t+1, linked to each other by IoU)
  that vanish at t: a flicker the tracker downstream must bridge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception.postprocess.nms import box_iou


def _link(a_boxes, a_labels, b_boxes, b_labels, iou_min: float) -> list[tuple[int, int]]:
    """Greedy one-to-one links between two box sets of the same class, highest IoU first."""
    if len(a_boxes) == 0 or len(b_boxes) == 0:
        return []
    iou = box_iou(a_boxes, b_boxes)
    iou[np.asarray(a_labels)[:, None] != np.asarray(b_labels)[None, :]] = 0.0
    links, used_a, used_b = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < iou_min:
            break
        if i not in used_a and j not in used_b:
            links.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return links


class TemporalStability:
    """Accumulates temporal stability over clips.

    Args:
        class_names: segmentation class names (index = class id); class 0 is not scored.
        iou_min: IoU that links a box to the same object in the next frame.
    """

    def __init__(self, class_names: Sequence[str], iou_min: float = 0.5):
        self.class_names = tuple(class_names)
        self.iou_min = iou_min
        self.inter = np.zeros(len(class_names), np.int64)
        self.union = np.zeros(len(class_names), np.int64)
        self.jitter_sum = 0.0
        self.jitter_n = 0
        self.gaps = 0
        self.gap_candidates = 0
        self.start_clip()

    def start_clip(self) -> None:
        """Forget the previous frames (the next frame is the first of a new clip)."""
        self._prev_seg = None
        self._hist: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, seg: np.ndarray | None, boxes: np.ndarray, labels: np.ndarray) -> None:
        """One frame: seg uint8 [H, W] class ids (or None), boxes float [N, 4] xyxy, labels int [N]."""
        if seg is not None:
            if self._prev_seg is not None:
                if self._prev_seg.shape != seg.shape:
                    raise ValueError(f"frame size changed within a clip: {self._prev_seg.shape} -> {seg.shape}")
                for c in range(1, len(self.class_names)):
                    a, b = self._prev_seg == c, seg == c
                    self.inter[c] += np.count_nonzero(a & b)
                    self.union[c] += np.count_nonzero(a | b)
            self._prev_seg = seg
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        labels = np.asarray(labels).reshape(-1)
        self._hist = (self._hist + [(boxes, labels)])[-3:]
        if len(self._hist) == 3:
            self._triples()

    def _triples(self) -> None:
        (b0, l0), (b1, l1), (b2, l2) = self._hist
        ab = dict(_link(b0, l0, b1, l1, self.iou_min))
        bc = dict(_link(b1, l1, b2, l2, self.iou_min))
        for i, j in ab.items():
            k = bc.get(j)
            if k is None:
                continue
            diag = float(np.hypot(b1[j, 2] - b1[j, 0], b1[j, 3] - b1[j, 1]))
            second = np.abs(b2[k] - 2 * b1[j] + b0[i]).mean()
            self.jitter_sum += second / max(diag, 1e-6)
            self.jitter_n += 1
        # Objects at t-1 and t+1 that overlap each other: did they vanish at t?
        seen_at_t = set(bc.values())
        for i, k in _link(b0, l0, b2, l2, self.iou_min):
            self.gap_candidates += 1
            if i not in ab and k not in seen_at_t:
                self.gaps += 1

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in range(1, len(self.class_names)):
            out[f"video.mask_iou.{self.class_names[c]}"] = (
                float(self.inter[c] / self.union[c]) if self.union[c] else float("nan")
            )
        out["video.box_jitter"] = self.jitter_sum / self.jitter_n if self.jitter_n else float("nan")
        out["video.box_dropouts"] = self.gaps / self.gap_candidates if self.gap_candidates else float("nan")
        out["video.box_triples"] = float(self.jitter_n)
        return out
