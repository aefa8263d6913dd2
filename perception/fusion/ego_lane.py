"""The ego lane from its named lines: measured in one frame, then filtered over time (Kalman over offset,
heading, curvature and width; lane changes) with the lane departure warning.

    assign_sides (lane_lines.py) ─► measure_ego_lane ─► LaneFilter.update ─► EgoLane

Vehicle frame: x forward, y left, metres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perception.frames import EgoLane
from perception.fusion.lane_lines import MIN_LANE_WIDTH_M, LineFit


@dataclass(frozen=True)
class EgoMeasurement:
    """One frame's ego-lane quantities before filtering (see EgoLane for units and signs)."""

    offset_m: float
    heading_rad: float
    curvature_1pm: float
    width_m: float | None  # None when it was not measured (one line seen, nothing across the next lane)
    left_seen: bool
    right_seen: bool
    confidence: float
    # With both lines: the same frame measured from its more confident line alone, for a filter that finds
    # the pair's width contradicting the lane it holds (one of the two lines is then a misread).
    one_line: EgoMeasurement | None = None


def _center_to_ego(c0: float, c1: float, c2: float) -> tuple[float, float, float]:
    """Lane-centre polynomial → (offset of the camera from it, heading error, curvature)."""
    heading = -math.atan(c1)
    curvature = 2.0 * c2 / (1.0 + c1 * c1) ** 1.5
    return -c0, heading, curvature


# A pair of ego lines measures the lane width only when both are this confident; otherwise the more
# confident one is used alone. A short or ragged line (a paint blob, a half-seen dash) placed half a metre
# off would otherwise set the width, and the filter holds the width through the single-line frames after.
MIN_PAIR_CONFIDENCE = 0.25
# One ego line seen, the other not (hidden by the car ahead, worn away, a dash pattern's gap) but the line
# beyond it is: the two lanes between them are taken as equally wide, as lanes of one carriageway are, so
# their gap is two lane widths. Both lines must be confident and near parallel, and the width narrower
# than a lane plus shoulder (a road edge two "lanes" away is more often a kerb than a line).
NEXT_LANE_MAX_WIDTH_M = 4.5
# The line beyond is further out and seen at a shallower angle than an ego line, so its fit is coarser: it
# sets the width only when it is this confident (a ragged one moved the offset 0.1 m in a frame on the real clip).
NEXT_LANE_MIN_CONFIDENCE = 0.5
NEXT_LANE_MAX_SLOPE_DIFF = 0.05


def _gap_across_m(a: LineFit, b: LineFit) -> float:
    """Distance (m) between two lines at the camera, measured across them: lines fitted separately need not
    be parallel, so along their mean direction rather than along y."""
    return abs(a.coeffs[0] - b.coeffs[0]) * math.cos(math.atan((a.coeffs[1] + b.coeffs[1]) / 2))


def width_across_next_lane(line: LineFit, line_is_left: bool, fits: Sequence[LineFit]) -> float | None:
    """Lane width (m) as half the gap from the seen ego ``line`` to a line across the camera one lane
    beyond the unseen ego line; None without such a line. Of several candidates the nearest wins."""
    if line.confidence < MIN_PAIR_CONFIDENCE:
        return None
    best = None
    for f in fits:
        across = f.coeffs[0] < 0 if line_is_left else f.coeffs[0] > 0
        if f is line or not across or f.confidence < NEXT_LANE_MIN_CONFIDENCE:
            continue
        if abs(f.coeffs[1] - line.coeffs[1]) > NEXT_LANE_MAX_SLOPE_DIFF:
            continue
        width = _gap_across_m(line, f) / 2
        # the camera must lie inside the ego lane this width implies
        if MIN_LANE_WIDTH_M <= width <= NEXT_LANE_MAX_WIDTH_M and abs(line.coeffs[0]) < width:
            best = width if best is None else min(best, width)
    return best


def measure_ego_lane(
    sides: dict[str, LineFit], width_prior_m: float | None, fits: Sequence[LineFit] = ()
) -> EgoMeasurement | None:
    """Ego lane from its two lines, or from one line and a width: measured across the next lane when
    ``fits`` (all of the frame's lines) hold the line beyond the unseen one, else the filter's, else 3.5 m."""
    left, right = sides.get("ego_left"), sides.get("ego_right")
    if left is None and right is None:
        return None
    if left is not None and right is not None:
        stronger = {"ego_left": left} if left.confidence >= right.confidence else {"ego_right": right}
        one_line = measure_ego_lane(stronger, width_prior_m, fits)
        if min(left.confidence, right.confidence) < MIN_PAIR_CONFIDENCE:
            return one_line
        c = [(a + b) / 2 for a, b in zip(left.coeffs, right.coeffs, strict=True)]
        offset, heading, curvature = _center_to_ego(*c)
        conf = math.sqrt(left.confidence * right.confidence)
        return EgoMeasurement(offset, heading, curvature, _gap_across_m(left, right), True, True, conf, one_line)
    line = left if left is not None else right
    width = width_across_next_lane(line, left is not None, fits)
    half = (width or width_prior_m or 3.5) / 2
    c = list(line.coeffs)
    c[0] += -half if left is not None else half
    offset, heading, curvature = _center_to_ego(*c)
    return EgoMeasurement(offset, heading, curvature, width, left is not None, right is not None, 0.6 * line.confidence)


class LaneFilter:
    """Kalman filter over the ego lane [offset m, heading rad, curvature 1/m, width m], lane changes,
    and the lane departure warning with hysteresis.

    The state follows a random walk whose spread grows with the time between frames (no ego motion is
    known). A jump in the measured offset of about one lane width with a consistent width is a lane
    change: the filter restarts on the new lane instead of averaging two lanes. Lines not seen for
    ``hold_s`` end the ego lane (``update`` returns None).

    Args:
        vehicle_width_m: for the departure warning: distance from a wheel to a line is
            width/2 -/+ offset - vehicle_width/2.
        ldw_trigger_m: warn when a wheel comes within this distance of a line (negative: past it).
        ldw_hysteresis_m: the warning clears only once the wheel is this much further away again.
        hold_s: how long a lane is held without any line.
    """

    # Random-walk spread per second (1 sigma) and measurement noise, in state units.
    PROCESS = np.array([0.35, 0.04, 0.002, 0.05])
    MEASURE = np.array([0.06, 0.012, 0.0015, 0.08])
    GATE_SIGMAS = 4.0  # an offset or width further than this from the prediction is a misread frame, not a move
    # A pair of lines whose width keeps contradicting the held one for this long is a real change of width
    # (a lane widening at a merge), not a misread line.
    WIDTH_CHANGE_S = 0.5

    def __init__(
        self,
        vehicle_width_m: float = 1.8,
        ldw_trigger_m: float = 0.1,
        ldw_hysteresis_m: float = 0.25,
        hold_s: float = 1.0,
    ):
        self.vehicle_width_m = vehicle_width_m
        self.ldw_trigger_m = ldw_trigger_m
        self.ldw_hysteresis_m = ldw_hysteresis_m
        self.hold_s = hold_s
        self.reset()

    def reset(self) -> None:
        self.state: np.ndarray | None = None
        self.cov = np.eye(4)
        self.last_t: float | None = None
        self.last_seen_t: float | None = None
        self.departure = "none"
        self.lane_changes = 0
        self._width_contradicted_since: float | None = None

    def _start(self, m: EgoMeasurement, width_prior: float | None) -> None:
        width = m.width_m if m.width_m is not None else (width_prior or 3.5)
        self.state = np.array([m.offset_m, m.heading_rad, m.curvature_1pm, width])
        self.cov = np.diag((self.MEASURE * 2) ** 2)
        if m.width_m is None:
            self.cov[3, 3] = 0.5**2

    def update(self, m: EgoMeasurement | None, timestamp_s: float) -> EgoLane | None:
        dt = 0.1 if self.last_t is None else timestamp_s - self.last_t
        if not math.isfinite(dt) or dt <= 0:
            dt = 0.04  # a repeated or backwards timestamp: assume one frame at 25 fps, do not raise
        dt = min(dt, 2.0)
        self.last_t = timestamp_s
        if self.state is not None:
            self.cov = self.cov + np.diag((self.PROCESS**2) * dt)
        if m is not None and m.one_line is not None and self._pair_contradicts_width(m, timestamp_s):
            m = m.one_line
        used = m is not None and self._measure(m)
        if used:
            self.last_seen_t = timestamp_s
        elif self.state is not None and self.last_seen_t is not None and timestamp_s - self.last_seen_t > self.hold_s:
            # No line, or only lines that contradict the held lane, for hold_s: end it; what is seen now
            # (if anything) starts the next one.
            width = float(self.state[3])
            self.state = None
            self.departure = "none"
            if m is not None:
                self._start(m, width)
                self.last_seen_t = timestamp_s
                used = True
        if self.state is None:
            return None
        offset, heading, curvature, width = (float(v) for v in self.state)
        self._update_departure(offset, width)
        return EgoLane(
            width_m=width,
            offset_m=offset,
            heading_error_rad=heading,
            curvature_1pm=curvature,
            left_seen=bool(used and m.left_seen),
            right_seen=bool(used and m.right_seen),
            departure=self.departure,
            confidence=float(m.confidence if m is not None else 0.0),
        )

    def _pair_contradicts_width(self, m: EgoMeasurement, timestamp_s: float) -> bool:
        """True when both lines were measured but their width is off the held width by more than the gate,
        for less than ``WIDTH_CHANGE_S``: one of them is a misread line (a paint blob, a seam), and the frame
        is measured from the more confident line alone."""
        if self.state is None or m.width_m is None:
            return False
        r = (self.MEASURE[3] / max(m.confidence, 0.2)) ** 2
        innovation = m.width_m - self.state[3]
        if innovation * innovation <= self.GATE_SIGMAS**2 * (self.cov[3, 3] + r):
            self._width_contradicted_since = None
            return False
        if self._width_contradicted_since is None:
            self._width_contradicted_since = timestamp_s
        if timestamp_s - self._width_contradicted_since < self.WIDTH_CHANGE_S:
            return True
        self.cov[3, 3] = max(self.cov[3, 3], innovation * innovation)  # let the new width in
        self._width_contradicted_since = None
        return False

    def _measure(self, m: EgoMeasurement) -> bool:
        """Fold in one measurement; False when it was rejected (the held lane is kept as it is)."""
        if self.state is None:
            self._start(m, None)
            return True
        width = float(self.state[3])
        jump = m.offset_m - self.state[0]
        both = m.width_m is not None
        if abs(jump) > 0.5 * width:
            # A lane change (the lines moved one lane over) or a wrong line: only both lines in a
            # plausible width are trusted to restart the filter on the new lane.
            if both and abs(abs(jump) - width) < 0.35 * width:
                self.lane_changes += 1
                self._start(m, width)
                self.departure = "none"
            elif both:
                self._start(m, width)
            else:
                return False
            return True
        if not both and abs(jump) > 0.5:
            return False  # one line only and far from the held lane: more likely a misread line than a move
        z = np.array([m.offset_m, m.heading_rad, m.curvature_1pm] + ([m.width_m] if both else []))
        h = np.eye(4)[: len(z)]
        r = np.diag((self.MEASURE[: len(z)] / max(m.confidence, 0.2)) ** 2)
        if not both:
            r[0, 0] += (0.5 * math.sqrt(self.cov[3, 3])) ** 2  # the offset leans on the held width
        if jump * jump > self.GATE_SIGMAS**2 * (self.cov[0, 0] + r[0, 0]):
            # Skipped; the covariance keeps growing meanwhile, so a real shift passes within a few frames
            # (and a contradicted lane ends after hold_s).
            return False
        s = h @ self.cov @ h.T + r
        gain = self.cov @ h.T @ np.linalg.inv(s)
        self.state = self.state + gain @ (z - h @ self.state)
        self.cov = (np.eye(4) - gain @ h) @ self.cov
        return True

    def _update_departure(self, offset: float, width: float) -> None:
        left_margin = width / 2 - offset - self.vehicle_width_m / 2
        right_margin = width / 2 + offset - self.vehicle_width_m / 2
        if self.departure == "none":
            if left_margin < self.ldw_trigger_m:
                self.departure = "left"
            elif right_margin < self.ldw_trigger_m:
                self.departure = "right"
        else:
            margin = left_margin if self.departure == "left" else right_margin
            if margin > self.ldw_trigger_m + self.ldw_hysteresis_m:
                self.departure = "none"
