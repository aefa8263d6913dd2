"""Lane-paint auto-labeller: hand-made frames with exact expectations, metrics against hand-computed
counts, the row-window means against a slow loop, a synthetic-world floor and a CamVid sanity check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SHARED_DATA

from perception.data.autolabel import (
    _RowWindows,
    autolabel_lane_paint,
    estimate_horizon,
    evaluate_autolabel,
    paint_counts,
    paint_overlay,
    summarize_counts,
)
from perception.data.sample import Sample

H, W = 120, 160
ROAD_TOP = 60  # road rows 60..119, full width
HORIZON = 20.0  # passed explicitly: expected paint width 0.1 * (y - 20) = 4..10 px on the road
ASPHALT = (90, 90, 90)


def road_scene() -> tuple[np.ndarray, np.ndarray]:
    """Sky above, flat grey asphalt below; (image uint8 [H, W, 3] BGR, road bool [H, W])."""
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (200, 170, 120)
    img[ROAD_TOP:] = ASPHALT
    road = np.zeros((H, W), bool)
    road[ROAD_TOP:] = True
    return img, road


def stripe(x0: int, x1: int, rows: slice = slice(ROAD_TOP, H)) -> np.ndarray:
    """bool [H, W] True on columns x0..x1-1 of the given rows."""
    m = np.zeros((H, W), bool)
    m[rows, x0:x1] = True
    return m


def label(img, road, **kw) -> np.ndarray:
    out = autolabel_lane_paint(img, road, horizon_y=HORIZON, **kw)
    assert out.dtype == np.uint8 and out.shape == (H, W)
    return out.astype(bool)


# -- the labeller on hand-made frames ------------------------------------------------------------------


def test_white_stripe_is_found_exactly():
    img, road = road_scene()
    paint = stripe(70, 73)
    img[paint] = (220, 220, 220)
    np.testing.assert_array_equal(label(img, road), paint)


def test_yellow_stripes_bright_and_dim_are_found_red_is_not():
    img, road = road_scene()
    bright, dim, red = stripe(30, 33), stripe(80, 83), stripe(130, 133)
    img[bright] = (40, 190, 220)  # yellow paint, clearly brighter than the asphalt
    img[dim] = (40, 105, 112)  # yellow, only 10 grey levels brighter: found by the yellowness ridge
    img[red] = (40, 40, 220)  # red (a tail light's colour), as bright as the dim yellow: not paint
    np.testing.assert_array_equal(label(img, road), bright | dim)


def test_shadow_edge_is_not_paint_and_paint_in_shadow_is_found():
    img, road = road_scene()
    img[ROAD_TOP:, 100:] = (45, 45, 45)  # shadow over the right part of the road: a long vertical edge
    sunlit, shaded = stripe(40, 43), stripe(130, 133)
    img[sunlit] = (220, 220, 220)
    img[shaded] = (110, 110, 110)  # the same paint in the shadow, still twice the shaded asphalt
    np.testing.assert_array_equal(label(img, road), sunlit | shaded)


def test_bright_car_blob_and_thin_streak_are_not_paint():
    img, road = road_scene()
    img[90:110, 20:60] = (235, 235, 235)  # a white car body inside a (wrong) road mask
    img[100:H, 120] = (200, 200, 200)  # a one-pixel rain streak where paint would be ~9 px wide
    paint = stripe(80, 83)
    img[paint] = (220, 220, 220)
    np.testing.assert_array_equal(label(img, road), paint)


def test_nothing_outside_the_road_mask():
    img, road = road_scene()
    img[:, 70:73] = (230, 230, 230)  # a bright stripe through sky and road
    road[:, 100:] = False  # and the road mask stops at column 100
    img[:, 120:123] = (230, 230, 230)  # a stripe off the road
    np.testing.assert_array_equal(label(img, road), stripe(70, 73))


def test_paint_at_the_road_edge_needs_more_contrast_and_edge_factor_zero_drops_it():
    img, road = road_scene()
    road[:, 103:] = False  # the road ends right after the stripe: its right side window is off the road
    paint = stripe(100, 103)
    img[paint] = (220, 220, 220)
    np.testing.assert_array_equal(label(img, road), paint)
    assert not label(img, road, edge_factor=0).any()
    img[paint] = (112, 112, 112)  # 22 above the asphalt: enough two-sided (18), not one-sided (27)
    assert not label(img, road).any()


def test_horizon_estimated_from_a_trapezoid_road():
    h, w = 120, 200
    road = np.zeros((h, w), bool)
    for y in range(30, h):
        half = 0.8 * (y - 20)  # width 1.6 * (y - 20): zero at row 20
        road[y, int(round(100 - half)) : int(round(100 + half)) + 1] = True
    assert abs(estimate_horizon(road) - 20.0) < 1.0
    road[2, 5] = True  # a stray labelled pixel far above the road does not move it
    assert abs(estimate_horizon(road) - 20.0) < 1.0
    # The labeller with the estimated horizon finds a stripe down the middle of that road.
    img = np.full((h, w, 3), 90, np.uint8)
    paint = np.zeros((h, w), bool)
    paint[30:, 99:102] = True
    img[paint] = 220
    np.testing.assert_array_equal(autolabel_lane_paint(img, road).astype(bool), paint)


def test_horizon_fallbacks():
    assert estimate_horizon(np.zeros((50, 60), bool)) == 50.0  # no road: the bottom edge
    rect = np.zeros((50, 60), bool)
    rect[30:] = True  # road across the whole width: no row to fit, so the top road row
    assert estimate_horizon(rect) == 30.0


def test_input_checks_and_empty_road():
    img, road = road_scene()
    with pytest.raises(ValueError, match="uint8"):
        autolabel_lane_paint(img.astype(np.float32), road)
    with pytest.raises(ValueError, match="road_mask"):
        autolabel_lane_paint(img, road[:-1])
    assert not autolabel_lane_paint(img, np.zeros((H, W), bool)).any()


def test_overlay_colours_and_leaves_inputs_alone():
    img, road = road_scene()
    before = img.copy()
    paint = stripe(70, 73)
    out = paint_overlay(img, road, paint)
    np.testing.assert_array_equal(img, before)
    assert tuple(out[100, 71]) == (0, 0, 255)
    assert tuple(out[100, 10]) == (67, 131, 67)  # 0.75 * 90 + 0.25 * (0, 255, 0), truncated
    assert tuple(out[10, 10]) == (200, 170, 120)  # off the road: untouched


def test_row_windows_match_a_slow_loop():
    rng = np.random.default_rng(0)
    c, h, w = 3, 5, 12
    chans = rng.uniform(0, 255, (c, h, w)).astype(np.float32)
    valid = rng.random((h, w)) < 0.7
    lo = rng.integers(-4, w, (h, w))
    hi = lo + rng.integers(0, 6, (h, w))
    means, counts = _RowWindows(chans, valid).mean(lo, hi)
    for y in range(h):
        for x in range(w):
            a, b = max(lo[y, x], 0), min(max(hi[y, x], 0), w)
            sel = valid[y, a:b]
            assert counts[y, x] == sel.sum()
            ref = chans[:, y, a:b][:, sel].mean(1) if sel.any() else np.zeros(c)
            np.testing.assert_allclose(means[:, y, x], ref, rtol=1e-4, atol=1e-3)


# -- metrics -------------------------------------------------------------------------------------------


def test_paint_counts_exact_and_tolerant():
    seg = np.ones((10, 12), np.uint8)
    seg[:, 4] = 2  # true paint: column 4, 10 px
    seg[0, 0] = 255  # not labelled
    pred = np.zeros((10, 12), np.uint8)
    pred[:, 5] = 1  # one pixel beside the paint: 10 px
    pred[:5, 4] = 1  # on the paint: 5 px
    pred[9, 11] = 1  # 7 px away
    pred[0, 0] = 1  # on an ignored pixel: left out
    c = paint_counts(pred, seg, tolerance_px=2.0)
    assert c == {
        "frames": 1,
        "tp": 5,
        "fp": 11,
        "fn": 5,
        "pred_px": 16,
        "true_px": 10,
        "pred_near_true": 15,
        "true_near_pred": 10,
    }
    m = summarize_counts(c)
    assert m["precision"] == pytest.approx(5 / 16)
    assert m["recall"] == pytest.approx(5 / 10)
    assert m["iou"] == pytest.approx(5 / 21)
    assert m["precision_tol"] == pytest.approx(15 / 16)
    assert m["recall_tol"] == 1.0


def test_tolerance_is_euclidean_and_inclusive():
    seg = np.ones((12, 12), np.uint8)
    seg[5, 5] = 2
    at_two, beyond = np.zeros((12, 12), np.uint8), np.zeros((12, 12), np.uint8)
    at_two[5, 7] = 1  # distance 2: counts
    beyond[6, 7] = 1  # distance sqrt(5): does not
    assert paint_counts(at_two, seg, 2.0)["pred_near_true"] == 1
    assert paint_counts(beyond, seg, 2.0)["pred_near_true"] == 0
    assert paint_counts(beyond, seg, 2.0)["true_near_pred"] == 0


def test_empty_ratios_are_nan():
    seg = np.ones((4, 4), np.uint8)
    m = summarize_counts(paint_counts(np.zeros((4, 4), np.uint8), seg))
    assert math.isnan(m["precision"]) and math.isnan(m["recall"]) and m["pred_px"] == 0


def _sample(name: str, paint_cols: tuple[int, int], true_cols: tuple[int, int] | None, env: dict) -> Sample:
    img, road = road_scene()
    img[stripe(*paint_cols)] = (220, 220, 220)
    seg = np.zeros((H, W), np.uint8)
    seg[road] = 1
    if true_cols is not None:
        seg[stripe(*true_cols)] = 2
    return Sample(image=img, name=name, seg=seg, lane_labelled=True, meta={"environment": env})


def test_evaluate_pools_counts_over_frames_and_groups_by_condition():
    day = {"time": "day", "fog": 0.0, "rain": 0.0}
    night_fog = {"time": "night", "fog": 0.02, "rain": 0.0}
    samples = [
        _sample("a", (70, 73), (70, 73), day),  # found exactly: 180 px right
        _sample("b", (70, 73), (100, 104), night_fog),  # 180 px found where the truth has none; 240 missed
    ]
    r = evaluate_autolabel(samples, params={"horizon_y": HORIZON})
    o = r["overall"]
    assert (o["frames"], o["pred_px"], o["true_px"]) == (2, 360, 420)
    assert o["precision"] == pytest.approx(180 / 360)
    assert o["recall"] == pytest.approx(180 / 420)  # pooled; the mean of per-frame recalls would be 0.5
    assert o["iou"] == pytest.approx(180 / 600)
    assert o["precision_tol"] == pytest.approx(0.5) and o["recall_tol"] == pytest.approx(180 / 420)
    g = r["by_condition"]
    assert set(g) == {"time=day", "time=night", "weather=clear", "weather=fog"}
    assert g["time=day"]["precision"] == 1.0 and g["time=day"]["recall"] == 1.0
    assert g["weather=fog"]["precision"] == 0.0 and g["weather=fog"]["recall"] == 0.0
    assert r["params"] == {"horizon_y": HORIZON} and r["ms_per_frame"] > 0


def test_evaluate_refuses_samples_without_lane_labels():
    img, road = road_scene()
    s = Sample(image=img, name="camvid/x.png", seg=road.astype(np.uint8), lane_labelled=False)
    with pytest.raises(ValueError, match="camvid/x.png"):
        evaluate_autolabel([s])


# -- real and synthetic frames -------------------------------------------------------------------------


def test_synthetic_world_floor():
    """Four synthetic frames: a regression floor far below the measured figures (docs/autolabel.md)."""
    from perception.data.synth.generate import SynthOptions, synth_frames

    samples = list(synth_frames(4, seed=3, opts=SynthOptions(size=(480, 360))))
    o = evaluate_autolabel(samples)["overall"]
    assert o["true_px"] > 1000
    assert o["precision_tol"] > 0.85
    assert o["recall_tol"] > 0.5


def test_camvid_frame_paint_is_a_small_part_of_the_road():
    frame = SHARED_DATA / "camvid" / "val" / "0016E5_08143.png"
    if not frame.is_file():
        pytest.skip(f"CamVid not found at {frame.parent} (set PERCEPTION_SHARED_DATA)")
    import cv2

    img = cv2.imread(str(frame))
    road = cv2.imread(str(SHARED_DATA / "camvid" / "valannot" / frame.name), cv2.IMREAD_GRAYSCALE) == 3
    paint = autolabel_lane_paint(img, road).astype(bool)
    assert not (paint & ~road).any()
    assert 0.005 < paint.sum() / road.sum() < 0.08  # dashed centre lines and the right kerb's yellow lines
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    assert gray[paint].mean() > np.median(gray[road]) + 30  # what it found is much brighter than the road
