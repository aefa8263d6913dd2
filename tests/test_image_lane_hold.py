"""Lane lines in image space held through short gaps (a dash not yet in view, a car in the way)."""

from __future__ import annotations

import pytest

from perception.fusion.image_lane_hold import HOLD_CONFIDENCE, HOLD_S, ImageLaneHold
from perception.fusion.image_lanes import ImageLine

H, W = 360, 640
FRAME = (H, W)


def line(x_bottom: float, slope: float | None = None, confidence: float = 0.8) -> ImageLine:
    """A straight line through (x_bottom, H - 1), seen below row 200; by default heading for the vanishing
    point (320, 150), else with dx/dy = ``slope``."""
    if slope is None:
        slope = (x_bottom - 320.0) / (H - 1 - 150.0)
    return ImageLine(
        coeffs=(x_bottom - slope * (H - 1), slope, 0.0),
        y_range=(200.0, H - 1.0),
        coverage=0.5,
        residual_px=1.0,
        confidence=confidence,
    )


LEFT2, LEFT, RIGHT = line(-150), line(160), line(480)


def bottoms(lines):
    return [round(float(ln.x_at(H - 1))) for ln in lines]


def test_a_line_missing_for_a_few_frames_is_held_with_lower_confidence_then_dropped():
    hold = ImageLaneHold()
    hold.update([LEFT, RIGHT], FRAME, 0.0)
    lines, sides, held = hold.update([RIGHT], FRAME, 0.2)
    assert bottoms(lines) == [160, 480] and sides == ["ego_left", "ego_right"] and held == [True, False]
    assert lines[0].confidence == pytest.approx(0.8 * HOLD_CONFIDENCE) and lines[1].confidence == 0.8
    lines, _, _ = hold.update([RIGHT], FRAME, HOLD_S + 0.05)
    assert bottoms(lines) == [480]


def test_a_line_seen_again_replaces_the_held_one_and_its_clock_restarts():
    hold = ImageLaneHold()
    hold.update([LEFT, RIGHT], FRAME, 0.0)
    hold.update([RIGHT], FRAME, 0.3)
    moved = line(166)  # seen again a few px away: the same line
    lines, _, _ = hold.update([moved, RIGHT], FRAME, 0.4)
    assert bottoms(lines) == [166, 480]
    lines, _, _ = hold.update([RIGHT], FRAME, 0.4 + HOLD_S - 0.05)  # held from its last sighting, not the first
    assert bottoms(lines) == [166, 480]


def test_when_the_ego_line_drops_out_the_next_line_keeps_its_name():
    hold = ImageLaneHold()
    hold.update([LEFT2, LEFT, RIGHT], FRAME, 0.0)
    lines, sides, held = hold.update([LEFT2, RIGHT], FRAME, 0.1)
    assert bottoms(lines) == [-150, 160, 480]
    assert sides == ["next_left", "ego_left", "ego_right"] and held == [False, True, False]


def test_a_held_line_that_would_cross_a_seen_one_is_dropped():
    hold = ImageLaneHold()
    hold.update([LEFT, RIGHT], FRAME, 0.0)
    # a line seen a little right of where LEFT was, leaning less: the held LEFT would cross it
    crossing = line(215, -0.4)
    lines, _, _ = hold.update([crossing, RIGHT], FRAME, 0.1)
    assert bottoms(lines) == [215, 480]


def test_reset_forgets_the_lines():
    hold = ImageLaneHold()
    hold.update([LEFT, RIGHT], FRAME, 0.0)
    hold.reset()
    lines, _, _ = hold.update([RIGHT], FRAME, 0.1)
    assert bottoms(lines) == [480]
