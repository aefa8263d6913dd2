"""Reading a dashed line's period on the road: the shift of the dash ends between frames, and the paint
stitched over frames that each see less than a period."""

from __future__ import annotations

import numpy as np
import pytest

from perception.fusion.dash_period import (
    DASH_BIN_M,
    DashAutocorrelation,
    DashStrip,
    RoadPaint,
    paint_shift,
)


def seen(start_m, stop_m, dash_m=3.0, period_m=12.0, phase_m=0.0):
    """The paint of a ``dash_m`` / ``period_m`` pattern (a dash starting at ``phase_m``) over
    [start_m, stop_m) ahead."""
    x = start_m + (np.arange(int(round((stop_m - start_m) / DASH_BIN_M))) + 0.5) * DASH_BIN_M
    return RoadPaint(start_m, (x - phase_m) % period_m < dash_m)


def test_dash_ends_inside_the_view_only():
    near, far = seen(6.0, 20.0, phase_m=4.5).ends()  # dashes 4.5..7.5 (cut by the view) and 16.5..19.5
    assert near.tolist() == [16.5] and far.tolist() == [7.5, 19.5]


def test_the_shift_is_the_distance_the_dash_ends_moved():
    before, after = seen(6.0, 20.0, phase_m=9.0), seen(6.0, 20.0, phase_m=7.25)  # the car drove 1.75 m
    assert paint_shift(before, after, 0.0, 6.0) == pytest.approx(1.75)
    # an end of the next dash is 12 m away: beyond any shift allowed, it does not pair up
    assert paint_shift(before, after, 0.0, 6.0) == paint_shift(before, after, 1.0, 2.5)
    # nothing in common: the dash of the first frame has left the view and no end of the next came in
    assert paint_shift(seen(6.0, 10.0, phase_m=7.0), seen(6.0, 10.0, phase_m=4.0), 0.0, 6.0) is None


def test_a_near_end_outweighs_a_far_one_that_disagrees():
    """A far end is known to a far row's depth (metres): where the near and far ends give different shifts,
    the near one's holds."""
    before = RoadPaint(6.0, np.zeros(120, bool))
    after = RoadPaint(6.0, np.zeros(120, bool))
    before.painted[16:28] = True  # 10..13 m
    after.painted[8:24] = True  # 8..12 m: near end moved 2 m, far end (poorly seen) only 1 m
    assert paint_shift(before, after, 0.0, 6.0) == pytest.approx(2.0)


def test_a_strip_stitched_from_short_views_shows_the_period():
    """Each frame sees 7 m of road (less than the 12 m period): one frame's autocorrelation has no peak;
    the strip stitched over a few seconds of driving at 15 m/s, 10 frames a second, shows 12 m."""
    fps, speed = 10.0, 15.0
    frames = [(k / fps, seen(6.0, 13.0, phase_m=9.0 - speed * k / fps)) for k in range(40)]
    one = DashAutocorrelation()
    one.add(frames[0][1].painted - frames[0][1].painted.mean())
    assert one.period_m() is None
    strip = DashStrip(frames[0][1], frames[0][0])
    assert all(strip.extend(paint, t) for t, paint in frames[1:])
    assert strip.frames == 40 and strip.length_m == pytest.approx(13.0 + 39 * 1.5, abs=0.5)  # driven + view
    pooled = DashAutocorrelation()
    pooled.add(*strip.signal(), frames=strip.frames)
    assert pooled.period_m() == pytest.approx(12.0, abs=0.3)


def test_a_strip_coasts_through_a_gap_on_its_speed_and_stops_after_a_pause():
    fps, speed = 10.0, 15.0
    paint = [seen(6.0, 13.0, phase_m=9.0 - speed * k / fps) for k in range(30)]
    strip = DashStrip(paint[0], 0.0)
    for k in range(1, 10):
        assert strip.extend(paint[k], k / fps)
    # no end in common with the frame before (0.3 s later), but the speed is known: the strip coasts on it
    assert strip.extend(paint[13], 1.3)
    assert strip.extend(paint[14], 1.4)
    # a frame long after the last cannot be placed
    assert not strip.extend(paint[29], 2.9)
    # nor can a second frame with no end in common when no speed was measured yet
    fresh = DashStrip(seen(6.0, 10.0, phase_m=7.0), 0.0)
    assert not fresh.extend(seen(6.0, 10.0, phase_m=4.0), 0.1)


def test_paint_that_seems_to_move_away_does_not_move_the_strip_back():
    """Mask noise can make the dashes seem to recede by a few centimetres between frames: the car does not
    drive backwards, so the strip's distance stays put."""
    strip = DashStrip(seen(3.0, 12.0, phase_m=6.0), 0.0)
    for k in range(1, 8):
        assert strip.extend(seen(3.0, 12.0, phase_m=6.0 + 0.25 * k), k / 10)
    assert strip.frames == 8 and strip.length_m == pytest.approx(12.0, abs=0.3)


def test_the_period_is_the_fundamental_despite_blotches_and_a_wandering_stitch():
    """Strips stitched with a noisy speed (dashes off their places by up to 1.5 m) pooled with blotchy paint
    that repeats nothing (a 12 m smear, a 2.5 m fleck): the period read is 12 m, not a multiple of it."""
    rng = np.random.default_rng(0)
    x = (np.arange(400) + 0.5) * DASH_BIN_M
    pooled = DashAutocorrelation()
    for _ in range(3):
        starts = 12.0 * np.arange(9) + rng.uniform(-1.5, 1.5, 9)
        painted = ((x[:, None] >= starts) & (x[:, None] < starts + 3.0)).any(1)
        pooled.add(*DashStrip(RoadPaint(3.0, painted), 0.0).signal())
    for _ in range(8):
        blotch = np.zeros(120, bool)
        blotch[20:70] = blotch[90:100] = True
        signal = DashStrip(RoadPaint(3.0, blotch), 0.0).signal()
        if signal is not None:
            pooled.add(*signal)
    assert pooled.period_m() == pytest.approx(12.0, abs=0.5)
