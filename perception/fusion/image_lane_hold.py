"""Lane lines in image space held through short gaps: a dashed line whose next dash has not come into view
yet, a line hidden for a moment by a car or lost in glare, is reported where it was last seen for up to
``HOLD_S`` seconds, with its confidence lowered.

Lines are matched from frame to frame by where they cross the bottom row and the middle of their seen rows,
not by name: names are given by order from the image centre, so when the ego lane's left line drops out,
the next line out takes its name for that frame. A held line that would cross or touch a line seen in this
frame is dropped (the car moved across: the seen line wins). Used where lanes are known in the image only
(no camera, or one still calibrating); with a camera the metric lane filter holds the ego lane instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from perception.fusion.image_lanes import SAME_LINE_FRACTION, ImageLine, name_image_lines

HOLD_S = 0.5  # a line unseen for longer is dropped
HOLD_CONFIDENCE = 0.5  # a held line's confidence is its last seen one times this
MATCH_FRACTION = 0.06  # the same line a frame later: within this fraction of the width at both rows
# A held line closer than this fraction of the width to a seen one, on any row both span, is that line seen
# again, or a ghost beside it.
CLEARANCE_FRACTION = 2 * SAME_LINE_FRACTION


@dataclass
class _Held:
    line: ImageLine
    seen_t: float


def _rows(line: ImageLine, height: int) -> np.ndarray:
    """The rows a line is compared at: the frame's bottom and the middle of its seen rows."""
    return np.array([height - 1, 0.5 * (line.y_range[0] + line.y_range[1])])


class ImageLaneHold:
    """Per stream: the lines seen lately; ``update`` returns this frame's lines with the held ones added."""

    def __init__(self, hold_s: float = HOLD_S):
        self.hold_s = hold_s
        self._held: list[_Held] = []

    def reset(self) -> None:
        self._held = []

    def update(
        self, lines: list[ImageLine], frame_size: tuple[int, int], timestamp_s: float
    ) -> tuple[list[ImageLine], list[str], list[bool]]:
        """This frame's ``lines`` plus the recent ones that match none of them, left to right at the bottom
        row; their names (``name_image_lines``: a seen line keeps its place in the order when a line beside
        it is missing for a moment); and which of them are held rather than seen."""
        h, w = frame_size
        matched = [False] * len(self._held)
        for line in lines:
            for k, held in enumerate(self._held):
                if not matched[k] and self._same(line, held.line, h, MATCH_FRACTION * w):
                    matched[k] = True
                    break
        kept = [
            held
            for k, held in enumerate(self._held)
            if not matched[k]
            and timestamp_s - held.seen_t <= self.hold_s
            and all(self._clear(held.line, line, h, CLEARANCE_FRACTION * w) for line in lines)
        ]
        self._held = [_Held(line, timestamp_s) for line in lines] + kept
        out = [(line, False) for line in lines] + [
            (dataclasses.replace(held.line, confidence=held.line.confidence * HOLD_CONFIDENCE), True) for held in kept
        ]
        out.sort(key=lambda pair: float(pair[0].x_at(h - 1)))
        merged = [line for line, _ in out]
        return merged, name_image_lines(merged, frame_size), [is_held for _, is_held in out]

    @staticmethod
    def _same(a: ImageLine, b: ImageLine, height: int, tol: float) -> bool:
        rows = _rows(b, height)
        return bool(np.all(np.abs(a.x_at(rows) - b.x_at(rows)) < tol))

    @staticmethod
    def _clear(held: ImageLine, seen: ImageLine, height: int, gap: float) -> bool:
        """Whether ``held`` stays on one side of ``seen``, at least ``gap`` px away, over the rows both span."""
        top = max(held.y_range[0], seen.y_range[0])
        rows = np.linspace(min(top, height - 1), height - 1, 8)
        dx = held.x_at(rows) - seen.x_at(rows)
        return bool(np.all(dx > gap) or np.all(dx < -gap))
