"""Lane lines from masks rendered by projecting known ground lines: geometry, styles, sides, letterboxes,
the ego-lane filter over time (outliers, lane changes, holding and dropping) and the departure warning."""

from __future__ import annotations

import math

import numpy as np
import pytest
from road_scene import (
    LANE,
    identity_letterbox,
    lane_lines,
    make_camera,
    render_road,
    seg_map,
)

from perception.fusion.ego_lane import EgoMeasurement, LaneFilter
from perception.fusion.lane_estimator import LaneEstimator
from perception.fusion.lane_lines import LineFit, find_lines, lane_points_ground
from perception.preprocess import letterbox_geometry

H, W = 360, 640
FPS = 25.0
CAMERA = make_camera(W, H)
IDENTITY = identity_letterbox(H, W)


def estimator(**filter_kwargs) -> LaneEstimator:
    return LaneEstimator(CAMERA, True, LANE, lane_filter=LaneFilter(**filter_kwargs) if filter_kwargs else None)


def heading_of(coeffs) -> float:
    """Vehicle heading relative to a line y(x) = c0 + c1 x + c2 x^2 (rad, left positive)."""
    return -math.atan(coeffs[1])


def curvature_of(coeffs) -> float:
    c1, c2 = coeffs[1], coeffs[2]
    return 2 * c2 / (1 + c1 * c1) ** 1.5


def ego_sides(lanes) -> dict:
    return {ln.side: ln for ln in lanes}


# --------------------------------------------------------------------------------------------------------
# One frame: geometry of the fitted lines and the ego lane.

ROADS = {
    "straight": dict(offset_m=0.3),
    "curve_left_r500": dict(offset_m=0.3, curvature_1pm=1 / 500),
    "curve_right_r500": dict(offset_m=0.3, curvature_1pm=-1 / 500),
    "heading_right_of_centre": dict(offset_m=-0.4, heading_rad=0.03),
    "heading_and_curve": dict(offset_m=0.3, heading_rad=-0.02, curvature_1pm=1 / 500),
}


@pytest.mark.parametrize("road", list(ROADS), ids=list(ROADS))
def test_lines_and_ego_lane_recover_the_painted_geometry(road):
    kw = ROADS[road]
    truth = lane_lines(width_m=3.5, **kw)
    if road == "straight":
        assert truth == [(1.45, 0.0, 0.0), (-2.05, 0.0, 0.0)]  # the road of the brief: 0.3 m left of centre
    seg = seg_map(render_road(CAMERA, truth))

    x, y = lane_points_ground(seg, IDENTITY, CAMERA, LANE, False)
    fits = find_lines(x, y)
    assert len(fits) == 2
    for fit, line in zip(fits, truth, strict=True):  # both sorted left to right
        assert fit.coeffs[0] == pytest.approx(line[0], abs=0.1)
        assert heading_of(fit.coeffs) == pytest.approx(heading_of(line), abs=0.01)
        assert curvature_of(fit.coeffs) == pytest.approx(curvature_of(line), abs=3e-4)
        assert fit.style == "solid"

    lanes, ego = estimator().update(seg, IDENTITY, 0.0)
    assert ego is not None and ego.left_seen and ego.right_seen
    assert ego.offset_m == pytest.approx(kw["offset_m"], abs=0.05)
    assert ego.width_m == pytest.approx(3.5, abs=0.1)
    assert ego.heading_error_rad == pytest.approx(kw.get("heading_rad", 0.0), abs=0.01)
    assert ego.curvature_1pm == pytest.approx(kw.get("curvature_1pm", 0.0), abs=3e-4)
    assert ego.departure == "none"
    sides = ego_sides(lanes)
    assert [ln.side for ln in lanes[:2]] == ["ego_left", "ego_right"]
    assert sides["ego_left"].coeffs[0] == pytest.approx(truth[0][0], abs=0.1)
    assert sides["ego_right"].coeffs[0] == pytest.approx(truth[1][0], abs=0.1)


@pytest.mark.parametrize("phase_m", [0.0, 2.0, 6.0, 8.0, 10.0])
@pytest.mark.parametrize("dashed_side", ["left", "right"])
def test_dashed_line_is_one_line_styled_dashed(dashed_side, phase_m):
    """3 m paint, 9 m gap; ``phase_m`` shifts the dashes (phase 2: a 1 m stub at 4-5 m, then 14-17 m)."""
    truth = lane_lines(0.3)
    dashed = [dashed_side == "left", dashed_side == "right"]
    seg = seg_map(render_road(CAMERA, truth, dashed=dashed, dash_m=(3.0, 9.0), dash_phase_m=phase_m))
    x, y = lane_points_ground(seg, IDENTITY, CAMERA, LANE, False)
    fits = find_lines(x, y)
    assert len(fits) == 2, [f.coeffs for f in fits]  # the dashes of one line are not several lines
    assert [f.style for f in fits] == ["dashed" if d else "solid" for d in dashed]
    for fit, line in zip(fits, truth, strict=True):
        assert fit.coeffs[0] == pytest.approx(line[0], abs=0.1)
        assert fit.x_range_m[1] - fit.x_range_m[0] > 30.0  # walked through the gaps, not stopped at one dash

    lanes, ego = estimator().update(seg, IDENTITY, 0.0)
    sides = ego_sides(lanes)
    assert sides["ego_left"].style == ("dashed" if dashed[0] else "solid")
    assert sides["ego_right"].style == ("dashed" if dashed[1] else "solid")
    assert ego.offset_m == pytest.approx(0.3, abs=0.05)


def test_dashed_line_is_kept_while_its_dashes_move_past():
    """Driving at 15 m/s the dash pattern slides 0.6 m per frame; every phase must keep the dashed line
    (the previous frame's lines seed the search where the nearest dash is far, e.g. 12-15 m)."""
    truth = lane_lines(0.3)
    est = estimator()
    for i in range(int(FPS)):
        seg = seg_map(render_road(CAMERA, truth, dashed=[True, False], dash_phase_m=(i * 0.6) % 12.0))
        lanes, ego = est.update(seg, IDENTITY, i / FPS)
        assert ego.left_seen and ego.right_seen, f"frame {i}"
        sides = ego_sides(lanes)
        assert (sides["ego_left"].style, sides["ego_right"].style) == ("dashed", "solid"), f"frame {i}"
        assert ego.offset_m == pytest.approx(0.3, abs=0.05)


def test_four_lines_get_their_sides():
    truth = lane_lines(0.3, n_left=1, n_right=1)  # next_left, ego_left, ego_right, next_right
    seg = seg_map(render_road(CAMERA, truth))
    lanes, ego = estimator().update(seg, IDENTITY, 0.0)
    assert [ln.side for ln in lanes] == ["ego_left", "ego_right", "next_left", "next_right"]
    sides = ego_sides(lanes)
    for side, line in zip(["next_left", "ego_left", "ego_right", "next_right"], truth, strict=True):
        assert sides[side].coeffs[0] == pytest.approx(line[0], abs=0.1), side
        assert len(sides[side].points_image) > 10  # drawable in frame pixels
    assert ego.offset_m == pytest.approx(0.3, abs=0.05)
    assert ego.width_m == pytest.approx(3.5, abs=0.1)


def test_next_lane_lines_do_not_become_the_held_ego_lane():
    """Ego lines worn off for a moment, only the next lanes' lines (5.25 m either side) visible: the learned
    lane is held, not rebuilt from lines a lane width away."""
    truth = lane_lines(0.0, n_left=1, n_right=1)
    est = estimator()
    for i in range(10):
        est.update(seg_map(render_road(CAMERA, truth)), IDENTITY, i / FPS)
    for i in range(10, 20):
        lanes, ego = est.update(seg_map(render_road(CAMERA, [truth[0], truth[3]])), IDENTITY, i / FPS)
        assert ego is not None and not ego.left_seen and not ego.right_seen
        assert ego.offset_m == pytest.approx(0.0, abs=0.05)
        assert ego.width_m == pytest.approx(3.5, abs=0.1)
        # The next lanes' lines are "other": there is no seen ego line to name them by.
        assert [ln.side for ln in lanes] == ["ego_left", "ego_right", "other", "other"]


# Seeds weight lane pixels by x^2, so a far dash counts like the near paint of a solid line.
@pytest.mark.parametrize("case", ["ego_line_nearest_dash_at_12m", "next_lane_lines"])
def test_single_frame_far_dashes_are_found(case):
    if case == "next_lane_lines":
        truth = lane_lines(0.3, n_left=1, n_right=1)
        seg = seg_map(render_road(CAMERA, truth, dashed=[True] * 4))
    else:
        truth = lane_lines(0.3)
        seg = seg_map(render_road(CAMERA, truth, dashed=[True, False], dash_phase_m=4.0))
    x, y = lane_points_ground(seg, IDENTITY, CAMERA, LANE, False)
    assert len(find_lines(x, y)) == len(truth)


@pytest.mark.parametrize(
    "roi, align",
    [(None, "center"), ((0, 200, 1280, 520), "center"), ((120, 150, 1000, 500), "top-left")],
    ids=["full_frame_padded", "roi_below_sky", "roi_top_left"],
)
@pytest.mark.parametrize("road", ["straight", "heading_and_curve"])
def test_letterboxed_mask_gives_the_same_geometry(roi, align, road):
    """Mask made at a 320x512 network input from a 1280x720 frame (scale, padding, ROI offset)."""
    kw = ROADS[road]
    camera = CAMERA.scaled_to(1280, 720)
    lb = letterbox_geometry((720, 1280), (320, 512), roi, align)
    assert lb.scale != 1.0 and (lb.pad_y > 0 or align == "top-left")
    if roi is not None:
        assert lb.roi_xywh == roi
    seg = seg_map(render_road(camera, lane_lines(**kw), letterbox=lb))
    assert seg.class_ids.shape == (320, 512)
    lanes, ego = LaneEstimator(camera, True, LANE).update(seg, lb, 0.0)
    assert ego is not None
    assert ego.offset_m == pytest.approx(kw["offset_m"], abs=0.05)
    assert ego.width_m == pytest.approx(3.5, abs=0.1)
    assert ego.heading_error_rad == pytest.approx(kw.get("heading_rad", 0.0), abs=0.01)
    assert ego.curvature_1pm == pytest.approx(kw.get("curvature_1pm", 0.0), abs=3e-4)
    # Drawing points are in frame pixels: the ego lines reach into the lower half of the 1280x720 frame.
    pts = ego_sides(lanes)["ego_left"].points_image
    assert pts[:, 1].max() > 500 and np.all((pts[:, 0] > -200) & (pts[:, 0] < 1480))


# --------------------------------------------------------------------------------------------------------
# Missing lines: nothing, one line, holding and dropping.


@pytest.mark.parametrize("fill", [0, 1], ids=["background", "drivable_only"])
def test_no_lane_pixels_gives_no_lanes(fill):
    seg = seg_map(np.full((H, W), fill, np.uint8))
    x, y = lane_points_ground(seg, IDENTITY, CAMERA, LANE, False)
    assert x.shape == y.shape == (0,)
    assert find_lines(x, y) == []
    est = estimator()
    for i in range(3):
        assert est.update(seg, IDENTITY, i / FPS) == ([], None)


@pytest.mark.parametrize("kept", ["left", "right"])
def test_one_line_uses_the_width_the_filter_learned(kept):
    """A 3.2 m lane (not the 3.5 m default): once both lines were seen, one line is enough."""
    truth = lane_lines(0.3, width_m=3.2)
    one = [truth[0]] if kept == "left" else [truth[1]]
    est = estimator()
    for i in range(10):
        _, ego = est.update(seg_map(render_road(CAMERA, truth)), IDENTITY, i / FPS)
    assert ego.width_m == pytest.approx(3.2, abs=0.05)
    for i in range(10, 20):
        lanes, ego = est.update(seg_map(render_road(CAMERA, one)), IDENTITY, i / FPS)
        assert ego is not None
        assert (ego.left_seen, ego.right_seen) == (kept == "left", kept == "right")
        assert ego.width_m == pytest.approx(3.2, abs=0.05)
        assert ego.offset_m == pytest.approx(0.3, abs=0.05)  # with the 3.5 m default it would be 0.45
        sides = ego_sides(lanes)
        assert sides["ego_left"].coeffs[0] == pytest.approx(truth[0][0], abs=0.1)
        assert sides["ego_right"].coeffs[0] == pytest.approx(truth[1][0], abs=0.1)


def test_one_line_from_the_start_assumes_a_default_width():
    seg = seg_map(render_road(CAMERA, [lane_lines(0.3)[0]]))
    _, ego = estimator().update(seg, IDENTITY, 0.0)
    assert ego is not None and ego.left_seen and not ego.right_seen
    assert ego.width_m == pytest.approx(3.5)
    assert ego.offset_m == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("c0", [5.0, -5.0, 1.2, -2.3])
def test_a_lone_line_further_than_a_lane_width_is_not_an_ego_line(c0):
    """First frame (no learned width): one line 5 m away would put the camera outside the lane it bounds
    (a next lane's line, the ego line unseen), so no ego lane; one within a lane width makes one."""
    lanes, ego = estimator().update(seg_map(render_road(CAMERA, [(c0, 0.0, 0.0)])), IDENTITY, 0.0)
    if abs(c0) > 3.8:
        assert ego is None
        assert [ln.side for ln in lanes] == ["other"]
        assert lanes[0].coeffs[0] == pytest.approx(c0, abs=0.1)
    else:
        assert ego is not None
        assert ego.offset_m == pytest.approx(-(c0 - math.copysign(1.75, c0)), abs=0.05)
        assert (ego.left_seen, ego.right_seen) == (c0 > 0, c0 < 0)


@pytest.mark.parametrize("hold_s", [0.5, 1.0])
def test_filter_holds_the_lane_for_hold_s_then_drops_it(hold_s):
    est = estimator(hold_s=hold_s)
    road = seg_map(render_road(CAMERA, lane_lines(0.3)))
    empty = seg_map(np.ones((H, W), np.uint8))
    t_last = 9 / FPS
    for i in range(10):
        est.update(road, IDENTITY, i / FPS)
    held_until = t_last + hold_s
    t = t_last
    n_held = 0
    while t < held_until + 0.5:
        t += 1 / FPS
        lanes, ego = est.update(empty, IDENTITY, t)
        if t - t_last <= hold_s - 1e-6:
            assert ego is not None, f"dropped at {t - t_last:.2f} s < hold_s"
            assert not ego.left_seen and not ego.right_seen
            assert ego.offset_m == pytest.approx(0.3, abs=0.05)
            assert [ln.side for ln in lanes] == ["ego_left", "ego_right"] and all(ln.smoothed for ln in lanes)
            n_held += 1
        elif t - t_last > hold_s + 1e-6:
            assert ego is None and lanes == [], f"still held at {t - t_last:.2f} s > hold_s"
    assert n_held >= round(hold_s * FPS) - 1
    # Seen again: a fresh lane at once.
    _, ego = est.update(road, IDENTITY, t + 1 / FPS)
    assert ego is not None and ego.offset_m == pytest.approx(0.3, abs=0.05)


def test_a_contradicting_single_line_ends_the_held_lane_after_hold_s():
    """Held lane centred (lines at +-1.75 m); then only one line, at +0.9 m, is seen for 2 s. It is 0.85 m
    off the held left line, so it is not used at first (the held lane stays, not reported as seen); but
    after hold_s without a usable line the held lane ends and the line seen starts the new one."""
    hold_s = 0.6
    est = estimator(hold_s=hold_s)
    for i in range(10):
        est.update(seg_map(render_road(CAMERA, lane_lines(0.0))), IDENTITY, i / FPS)
    t_switch = 10 / FPS
    one = seg_map(render_road(CAMERA, [(0.9, 0.0, 0.0)]))
    for i in range(10, 10 + int(2 * FPS)):
        t = i / FPS
        _, ego = est.update(one, IDENTITY, t)
        assert ego is not None
        if t - t_switch < hold_s - 1e-6:
            assert ego.offset_m == pytest.approx(0.0, abs=0.05), f"{t - t_switch:.2f} s"
            assert not ego.left_seen
    assert ego.left_seen and not ego.right_seen
    assert ego.offset_m == pytest.approx(1.75 - 0.9, abs=0.05)
    assert ego.width_m == pytest.approx(3.5, abs=0.1)


# --------------------------------------------------------------------------------------------------------
# Over time: a misread frame, lane changes.


def test_corrupted_frame_barely_moves_the_filtered_offset():
    est = estimator()
    prev = None
    for i in range(40):
        t = i / FPS
        offset = 0.3 * math.sin(2 * math.pi * t / 2.0)  # a smooth weave, 0.3 m either side, 2 s period
        lines = lane_lines(offset)
        if i == 25:
            lines = [(c0 + 1.0, c1, c2) for c0, c1, c2 in lines]  # the mask shifted 1 m for one frame
        _, ego = est.update(seg_map(render_road(CAMERA, lines)), IDENTITY, t)
        assert ego is not None
        if prev is not None:
            assert abs(ego.offset_m - prev) < 0.3, f"frame {i}: offset jumped {ego.offset_m - prev:+.2f} m"
        if i >= 3 and i != 25:
            assert ego.offset_m == pytest.approx(offset, abs=0.08), f"frame {i}"
        prev = ego.offset_m


WORLD_LINES_M = tuple(-1.75 + 3.5 * k for k in range(-2, 4))  # a five-lane road, ego lane centred at 0


def world_road(position_m: float) -> np.ndarray:
    """Mask with the vehicle ``position_m`` left of the middle of lane 0 of a road of 3.5 m lanes."""
    return render_road(CAMERA, [(y - position_m, 0.0, 0.0) for y in WORLD_LINES_M])


def offset_in_lane(position_m: float) -> float:
    return position_m - 3.5 * round(position_m / 3.5)


@pytest.mark.parametrize("direction", [1.0, -1.0], ids=["to_left", "to_right"])
def test_lane_change_restarts_on_the_new_lane(direction):
    """Offset +1.6 → across the line → -1.6 in the next lane, then to its centre."""
    est = estimator()
    path = list(np.linspace(0.0, 3.5, 36)) + [3.5] * 10
    departures = []
    for i, p in enumerate(path):
        _, ego = est.update(seg_map(world_road(direction * p)), IDENTITY, i / FPS)
        assert ego is not None
        departures.append(ego.departure)
        truth = offset_in_lane(direction * p)
        if abs(abs(truth) - 1.75) > 0.3:  # off the line itself
            assert ego.offset_m == pytest.approx(truth, abs=0.15), f"frame {i}, position {p:.2f}"
    toward, away = ("left", "right") if direction > 0 else ("right", "left")
    assert est.filter.lane_changes == 1
    assert toward in departures[:18]  # warned while drifting toward the line
    assert departures[-1] == "none"  # and not stuck on once in the new lane's centre
    first_away = departures.index(away) if away in departures else len(departures)
    assert all(d == toward for d in departures[departures.index(toward) : min(first_away, 18)])


def test_driving_on_the_line_follows_the_new_lane():
    """The camera stops 0.1 m past a line (straddling it): the filter takes the new lane within a few
    frames, as a lane change, and does not stay on the old lane or warn for the wrong side."""
    est = estimator()
    path = list(np.linspace(0.0, 1.85, 20)) + [1.85] * 30
    crossed = next(i for i, p in enumerate(path) if p > 1.75)
    for i, p in enumerate(path):
        _, ego = est.update(seg_map(world_road(p)), IDENTITY, i / FPS)
        assert ego is not None
        if i >= crossed + 3:
            assert ego.offset_m == pytest.approx(offset_in_lane(p), abs=0.1), f"frame {i}"
            assert ego.departure == "right"  # the right wheel is over the line just crossed
    assert est.filter.lane_changes == 1


# --------------------------------------------------------------------------------------------------------
# Lane departure warning: hysteresis, both sides of each threshold.


def run_filter(lane_filter: LaneFilter, offset: float, t0: float, frames: int = 50, width: float = 3.5):
    m = EgoMeasurement(offset, 0.0, 0.0, width, True, True, 1.0)
    ego = None
    for k in range(frames):
        ego = lane_filter.update(m, t0 + k / FPS)
    return ego, t0 + frames / FPS


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("trigger_m, hysteresis_m", [(0.1, 0.25), (-0.15, 0.1)])
def test_departure_warning_hysteresis(side, trigger_m, hysteresis_m):
    width, vehicle = 3.5, 1.8
    lf = LaneFilter(vehicle_width_m=vehicle, ldw_trigger_m=trigger_m, ldw_hysteresis_m=hysteresis_m)
    sign = 1.0 if side == "left" else -1.0
    # Offset toward ``side`` at which the wheel is trigger_m from the line, and where the warning clears.
    on_at = width / 2 - vehicle / 2 - trigger_m
    off_at = on_at - hysteresis_m
    eps = 0.02
    steps = [
        (0.0, "none"),
        (on_at - eps, "none"),  # margin just above the trigger
        (on_at + eps, side),  # just below: warn
        (off_at + eps, side),  # back inside the hysteresis band: still warning
        ((on_at + off_at) / 2, side),
        (off_at - eps, "none"),  # margin above trigger + hysteresis: cleared
        (on_at - eps, "none"),  # into the band again from outside: no new warning
        (on_at + eps, side),
        (0.0, "none"),
    ]
    t = 0.0
    for offset, expected in steps:
        ego, t = run_filter(lf, sign * offset, t)
        assert ego.offset_m == pytest.approx(sign * offset, abs=2e-3)
        assert ego.departure == expected, f"offset {sign * offset:+.3f} m"


def test_departure_is_cleared_when_the_lane_is_dropped():
    lf = LaneFilter(hold_s=0.5)
    ego, t = run_filter(lf, 0.9, 0.0)
    assert ego.departure == "left"
    assert lf.update(None, t + 0.6) is None
    ego, _ = run_filter(lf, 0.0, t + 0.7, frames=1)
    assert ego.departure == "none"


def _fit(c0: float, span: tuple[float, float], windows: int, residual: float = 0.02):
    from perception.fusion.lane_lines import LineFit

    return LineFit((c0, 0.0, 0.0), span, coverage=1.0, residual_m=residual, windows=windows)


def test_a_weak_line_does_not_set_the_lane_width():
    """A short ragged 'line' half a metre off (a paint blob) beside a good line: the good line is measured
    alone with the held width, instead of the pair narrowing the lane; two good lines still measure it."""
    from perception.fusion.ego_lane import MIN_PAIR_CONFIDENCE, measure_ego_lane

    good_right = _fit(-1.8, (5.0, 40.0), windows=14)
    blob_left = _fit(1.2, (6.0, 11.0), windows=3, residual=0.1)
    assert good_right.confidence >= MIN_PAIR_CONFIDENCE > blob_left.confidence
    m = measure_ego_lane({"ego_left": blob_left, "ego_right": good_right}, width_prior_m=3.6)
    assert m.width_m is None and not m.left_seen and m.right_seen
    assert m.offset_m == pytest.approx(1.8 - 1.8, abs=1e-9)  # right line + half the held 3.6 m
    good_left = _fit(1.8, (5.0, 40.0), windows=14)
    m = measure_ego_lane({"ego_left": good_left, "ego_right": good_right}, width_prior_m=3.0)
    assert m.width_m == pytest.approx(3.6) and m.left_seen and m.right_seen


def _sloped_fit(c0: float, slope: float, confident: bool = True):
    from perception.fusion.lane_lines import LineFit

    span, windows, residual = ((5.0, 40.0), 14, 0.02) if confident else ((6.0, 11.0), 3, 0.1)
    return LineFit((c0, slope, 0.0), span, coverage=1.0, residual_m=residual, windows=windows)


def test_one_ego_line_measures_the_width_across_the_next_lane():
    """The ego-right line hidden (a van ahead, worn paint) but the next lane's right line seen: two equal
    lanes span the gap, so the width is half of it instead of the held or default width."""
    from perception.fusion.ego_lane import measure_ego_lane

    left, next_right = _sloped_fit(1.3, 0.02), _sloped_fit(-4.9, 0.02)
    m = measure_ego_lane({"ego_left": left}, width_prior_m=3.5, fits=[left, next_right])
    cos = math.cos(math.atan(0.02))
    assert m.width_m == pytest.approx(6.2 * cos / 2)
    assert m.offset_m == pytest.approx(-(1.3 - 6.2 * cos / 4))  # centre 1.55 m right of the left line
    assert m.left_seen and not m.right_seen
    # mirrored: the right line seen, the line beyond the unseen left one
    right, next_left = _sloped_fit(-1.7, 0.0), _sloped_fit(4.3, 0.0)
    assert measure_ego_lane({"ego_right": right}, None, [next_left, right]).width_m == pytest.approx(3.0)
    # a weak ego-left line beside the good right one is still dropped, and the width measured across
    weak_left = _sloped_fit(1.0, 0.0, confident=False)
    m = measure_ego_lane({"ego_left": weak_left, "ego_right": right}, 3.5, [next_left, weak_left, right])
    assert m.width_m == pytest.approx(3.0) and not m.left_seen


@pytest.mark.parametrize(
    "across, why",
    [
        (_sloped_fit(-9.5, 0.02), "two lane widths would be 5.4 m each: a kerb or a line two lanes over"),
        (_sloped_fit(-4.9, 0.10), "not parallel to the ego line"),
        (_sloped_fit(-4.9, 0.02, confident=False), "too weak to measure with"),
        (_sloped_fit(-1.0, 0.02), "the camera would lie outside the lane (1.15 m wide)"),
        (_sloped_fit(2.9, 0.02), "on the same side as the seen line"),
    ],
)
def test_no_width_across_the_next_lane_without_a_fitting_line(across, why):
    from perception.fusion.ego_lane import measure_ego_lane

    left = _sloped_fit(1.3, 0.02)
    m = measure_ego_lane({"ego_left": left}, width_prior_m=3.5, fits=[left, across])
    assert m.width_m is None, why
    assert m.offset_m == pytest.approx(-(1.3 - 1.75))  # the held 3.5 m


def test_a_pair_whose_width_contradicts_the_held_lane_is_measured_from_its_stronger_line():
    """A misread ego line (a paint blob half a lane in) makes a pair 1 m too narrow for one frame: the frame
    is measured from the confident line and the held width, and the offset stays put; the same narrow pair
    kept for longer than WIDTH_CHANGE_S is a real change of width and is let in."""
    from perception.fusion.ego_lane import measure_ego_lane

    lf = LaneFilter()
    right = _sloped_fit(-1.75, 0.0)
    good_pair = {"ego_left": _sloped_fit(1.75, 0.0), "ego_right": right}
    t = 0.0
    for _ in range(30):
        ego = lf.update(measure_ego_lane(good_pair, lf.state[3] if lf.state is not None else None), t)
        t += 1 / FPS
    assert ego.offset_m == pytest.approx(0.0, abs=1e-3) and ego.width_m == pytest.approx(3.5, abs=1e-3)
    blob = LineFit((0.75, 0.0, 0.0), (5.0, 25.0), coverage=1.0, residual_m=0.05, windows=8)  # confidence 0.56
    misread = {"ego_left": blob, "ego_right": right}  # centre 0.5 m off, width 2.5 m
    m = measure_ego_lane(misread, float(lf.state[3]))
    assert m.width_m == pytest.approx(2.5) and m.one_line is not None and not m.one_line.left_seen
    ego = lf.update(m, t)
    assert ego.offset_m == pytest.approx(0.0, abs=0.01) and ego.width_m == pytest.approx(3.5, abs=0.01)
    assert not ego.left_seen and ego.right_seen
    widths = []
    for _ in range(int(2 * LaneFilter.WIDTH_CHANGE_S * FPS)):
        t += 1 / FPS
        widths.append(lf.update(measure_ego_lane(misread, float(lf.state[3])), t).width_m)
    assert widths[0] == pytest.approx(3.5, abs=0.01) and widths[-1] == pytest.approx(2.5, abs=0.15)


def test_a_line_leaving_the_road_heading_takes_no_side():
    """Seen on the real clip: a short diagonal fragment 15-24 m ahead, whose fit extrapolates to 1.0 m left of
    the car, took the ego-left name from the dashed line 1.5 m left, and the lane filter followed it. A line
    more than MAX_HEADING_SPREAD off the most confident line's heading is named by nobody; within it, it is."""
    from perception.fusion.lane_lines import MAX_HEADING_SPREAD, LineFit, assign_sides

    right, left = _sloped_fit(-2.0, 0.0), _sloped_fit(1.5, 0.0)
    left = LineFit(left.coeffs, left.x_range_m, coverage=0.4, residual_m=0.05, windows=8)  # dashed, weaker
    assert left.confidence < right.confidence
    diagonal = LineFit((1.0, 0.45, 0.0), (15.6, 23.9), coverage=1.0, residual_m=0.1, windows=4)
    sides = assign_sides([diagonal, left, right])
    assert sides["ego_left"] is left and sides["ego_right"] is right
    slanted = LineFit((1.0, MAX_HEADING_SPREAD - 0.01, 0.0), (15.6, 23.9), coverage=1.0, residual_m=0.1, windows=4)
    assert assign_sides([slanted, left, right])["ego_left"] is slanted  # nearer and near enough parallel
