"""What every predictor evaluated by ``perception eval`` returns for one frame, in frame pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """One frame's prediction in frame pixels.

    Attributes:
        seg: uint8 [H, W] class ids (0 background, 1 drivable, 2 lane), or None for a detector only.
        boxes: float32 [N, 4] x1, y1, x2, y2 in frame pixels.
        scores: float32 [N].
        labels: int64 [N], indices into the detection classes (car, pedestrian, cyclist, traffic_sign).
    """

    seg: np.ndarray | None
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
