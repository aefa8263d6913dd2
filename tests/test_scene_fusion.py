"""SceneFuser on synthetic FrameResults: distances through the ground plane and their fallbacks, range
filtering, closing speed and TTC, forward collision warning, lane assignment; and the scene metrics of
perception/eval/scene.py (hand-computed values, then one oracle clip end to end)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from road_scene import (
    DET_CLASSES,
    SEG_CLASSES,
    identity_letterbox,
    lane_lines,
    make_camera,
    project_box,
    render_road,
)

from perception.errors import ConfigError
from perception.eval.scene import _greedy_pairs, _truth_ttc, evaluate_scene
from perception.frames import Detections, FrameResult, Letterbox, SceneObject, SegMap, Track
from perception.fusion.scene import SceneFuser, WarningSettings, ground_distance
from perception.postprocess.nms import box_iou  # what scene eval matches boxes with

H, W = 360, 640
FPS = 25.0
CAMERA = make_camera(W, H)
IDENTITY = identity_letterbox(H, W)
CAR, PEDESTRIAN, CYCLIST, SIGN = range(4)
ROAD_MASK = render_road(CAMERA, lane_lines(0.0, n_left=1, n_right=1))  # lanes at +-1.75, +-5.25 m


def result(
    index: int,
    boxes: list[np.ndarray],
    labels: list[int],
    mask: np.ndarray | None = ROAD_MASK,
    frame_size: tuple[int, int] = (H, W),
    letterbox: Letterbox | None = None,
) -> FrameResult:
    """A FrameResult at 25 fps with boxes in frame pixels (scores 0.9) and a lane mask in input pixels."""
    n = len(boxes)
    dets = Detections(
        np.array(boxes, np.float32).reshape(n, 4), np.full(n, 0.9, np.float32), np.array(labels, np.int32)
    )
    return FrameResult(
        frame_index=index,
        timestamp_s=index / FPS,
        frame_size=frame_size,
        detections=dets,
        det_class_names=DET_CLASSES,
        seg=None if mask is None else SegMap(mask, SEG_CLASSES),
        letterbox=letterbox or identity_letterbox(*frame_size),
    )


def fuser(camera=CAMERA, **kwargs) -> SceneFuser:
    return SceneFuser(DET_CLASSES, SEG_CLASSES, camera, undistorted_frame=True, **kwargs)


def box_at_ground(u: float, v: float, w: float = 40.0, h: float = 30.0) -> np.ndarray:
    """A box (pixel edges at integers) whose bottom centre is camera pixel (u, v) (pixel centres at integers)."""
    return np.array([u - w / 2, v - h, u + w / 2, v], np.float32) + np.float32(0.5)


# --------------------------------------------------------------------------------------------------------
# Ground-plane distance and its fallbacks.


@pytest.mark.parametrize("lateral_m", [0.0, 2.5, -4.0])
@pytest.mark.parametrize("distance_m", [10.0, 30.0, 50.0])
def test_ground_distance_of_a_projected_ground_point(distance_m, lateral_m):
    uv, _ = CAMERA.project(np.array([[distance_m, lateral_m, 0.0]]))
    got = ground_distance(box_at_ground(*uv[0]), CAMERA, undistort_points=False)
    assert got is not None
    dist, sigma, (x, y), noise = got
    assert 0 < noise <= sigma, "the per-frame noise is the box-bottom part of the sigma, without the pitch bias"
    assert dist == pytest.approx(math.hypot(distance_m, lateral_m), rel=0.01)
    assert x == pytest.approx(distance_m, rel=0.01) and y == pytest.approx(lateral_m, abs=0.01 * distance_m)
    assert 0 < sigma < 0.3 * dist


def test_box_edges_and_camera_pixel_centres_are_half_a_pixel_apart():
    """An object touching the ground at camera row v (pixel centres at integers) has a box with y2 = v + 0.5
    (pixel edges at integers): that box must give the true distance, and half a pixel matters (~2 % at 30 m
    with this camera), so the conventions cannot be mixed up unnoticed."""
    uv, _ = CAMERA.project(np.array([[30.0, 0.0, 0.0]]))
    u, v = uv[0]
    box = np.array([u - 20, v - 30, u + 20, v], np.float32)
    assert ground_distance(box + 0.5, CAMERA, False)[0] == pytest.approx(30.0, rel=0.002)
    assert ground_distance(box, CAMERA, False)[0] > 30.0 * 1.01


def test_ground_distance_sigma_grows_with_distance():
    sigmas = []
    for d in (5.0, 10.0, 20.0, 30.0, 50.0):
        uv, _ = CAMERA.project(np.array([[d, 0.0, 0.0]]))
        sigmas.append(ground_distance(box_at_ground(*uv[0]), CAMERA, False)[1])
    assert all(b > a for a, b in zip(sigmas[:-1], sigmas[1:], strict=True))
    assert sigmas[-1] / sigmas[1] > 10  # ~ distance^2: a pixel spans 25x more ground at 50 m than at 10 m


@pytest.mark.parametrize("rows_above", [0.5, 5.0, 100.0])
def test_ground_distance_is_none_above_the_horizon(rows_above):
    v = CAMERA.horizon_y() - rows_above
    assert ground_distance(box_at_ground(320.0, v), CAMERA, False) is None
    assert ground_distance(box_at_ground(320.0, CAMERA.horizon_y() + 3.0), CAMERA, False) is not None


@pytest.mark.parametrize(
    "case, box, label, height_m",
    [
        ("car_above_horizon", [300, 100, 340, 150], CAR, 1.5),  # bottom row 150 < horizon 162
        ("car_cut_by_bottom", [250, 250, 390, 360], CAR, 1.5),  # ground contact below the image
        ("sign_below_horizon", [400, 180, 420, 200], SIGN, 0.7),  # bottom on the road, but signs stand on poles
        ("sign_above_horizon", [400, 60, 420, 80], SIGN, 0.7),
        ("sign_cut_by_bottom", [400, 300, 440, 360], SIGN, 0.7),
    ],
)
def test_size_distance_fallback(case, box, label, height_m):
    scene = fuser().update(result(0, [np.array(box, np.float32)], [label]))
    (obj,) = scene.objects
    assert obj.distance_source == "size"
    assert obj.distance_m == pytest.approx(500.0 * height_m / (box[3] - box[1]), rel=1e-6)
    assert obj.distance_sigma_m == pytest.approx(0.2 * obj.distance_m, rel=1e-6)
    assert obj.position_m is None and not obj.in_path
    assert obj.lane == ("off_road" if label == SIGN else "unknown")


def test_a_box_on_the_road_is_placed_by_the_ground_plane():
    scene = fuser().update(result(0, [project_box(CAMERA, 20.0, 0.0)], [CAR]))
    (obj,) = scene.objects
    assert obj.distance_source == "ground"
    assert obj.distance_m == pytest.approx(20.0, rel=0.01)
    assert obj.position_m == pytest.approx((20.0, 0.0), abs=0.2)


# --------------------------------------------------------------------------------------------------------
# A car approaching in the ego lane: tracking, range filter, closing speed, TTC, forward collision warning.


def approach_then_pull_away(t: float) -> tuple[float, float]:
    """(distance m, closing speed m/s) of the lead car: 10 m/s closing from 40 m to 15 m (2.5 s), then the
    gap closes ever slower (6 m/s^2) until the car pulls away (nearest 6.7 m at 4.17 s)."""
    if t <= 2.5:
        return 40.0 - 10.0 * t, 10.0
    tau = t - 2.5
    return 15.0 - 10.0 * tau + 3.0 * tau * tau, 10.0 - 6.0 * tau


def run_lead_car(warnings: WarningSettings | None = None, frames: int = 115):
    f = fuser(warnings=warnings or WarningSettings())
    out = []
    for i in range(frames):
        d, v = approach_then_pull_away(i / FPS)
        scene = f.update(result(i, [project_box(CAMERA, d, 0.0)], [CAR]))
        out.append((d, v, scene))
    return out


@pytest.fixture(scope="module")
def lead_car_run():
    return run_lead_car()


def test_approaching_car_distance_closing_speed_and_ttc(lead_car_run):
    settled = int(1.2 * FPS)  # the range filter starts at rest and 5-7 m noisy at 40 m (see report)
    ids = set()
    for i, (d, v, scene) in enumerate(lead_car_run):
        (obj,) = scene.objects
        ids.add(obj.track.track_id)
        assert obj.distance_source == "ground"
        assert obj.lane == "ego" and obj.in_path
        assert obj.distance_sigma_m > 0
        if i < 3:
            assert obj.closing_speed_mps is None and obj.ttc_s is None  # too few updates for a rate
        if settled <= i and i / FPS <= 2.5:
            assert obj.distance_m == pytest.approx(d, rel=0.03), f"frame {i}"
            assert obj.closing_speed_mps == pytest.approx(v, rel=0.15), f"frame {i}"
            assert obj.ttc_s == pytest.approx(d / v, rel=0.15), f"frame {i}"
        if i >= settled:  # also while the closing speed changes at 6 m/s^2 (the filter expects 3 m/s^2)
            assert obj.distance_m == pytest.approx(d, rel=0.05), f"frame {i}"
        if obj.ttc_s is not None:
            assert obj.ttc_s == pytest.approx(obj.distance_m / obj.closing_speed_mps)
    assert ids == {1}  # one stable track id
    # Pulling away at the end: the rate turned, so no TTC.
    d, v, scene = lead_car_run[-1]
    assert v < -2.0 and scene.objects[0].ttc_s is None and scene.objects[0].closing_speed_mps < 0


def ttc_in_path(scene) -> float:
    return min((o.ttc_s for o in scene.objects if o.in_path and o.ttc_s is not None), default=math.inf)


def test_forward_collision_warning_raised_after_two_frames_and_cleared_with_hysteresis(lead_car_run):
    ws = WarningSettings()
    on = ["forward_collision" in s.warnings for _, _, s in lead_car_run]
    ttc = [ttc_in_path(s) for _, _, s in lead_car_run]
    first = on.index(True)
    # Raised on the second consecutive frame below fcw_ttc_s, not on the first.
    assert ttc[first] < ws.fcw_ttc_s and ttc[first - 1] < ws.fcw_ttc_s and ttc[first - 2] >= ws.fcw_ttc_s
    assert not any(on[:first])
    d, v, _ = lead_car_run[first]
    assert 2.0 <= d / v <= 2.6  # the true TTC when it is raised
    cleared = first + on[first:].index(False)
    assert not any(on[cleared:])  # cleared for good once the car pulls away
    assert ttc[cleared] > ws.fcw_ttc_s + ws.fcw_hysteresis_s
    # In between it was held also where the TTC was back above fcw_ttc_s (the hysteresis band).
    assert all(t <= ws.fcw_ttc_s + ws.fcw_hysteresis_s for t in ttc[first:cleared])
    assert any(t > ws.fcw_ttc_s for t in ttc[first:cleared])
    # Without hysteresis the same run clears earlier, at the first frame back above fcw_ttc_s.
    no_hyst = run_lead_car(WarningSettings(fcw_hysteresis_s=0.0), frames=cleared + 1)
    on0 = ["forward_collision" in s.warnings for _, _, s in no_hyst]
    cleared0 = first + on0[first:].index(False)
    assert cleared0 < cleared
    assert ttc[cleared0] > ws.fcw_ttc_s and ttc[cleared0 - 1] < ws.fcw_ttc_s


def obj(ttc: float | None, in_path: bool = True) -> SceneObject:
    track = Track(1, np.array([0, 0, 10, 10], np.float32), 0.9, CAR)
    return SceneObject(track=track, distance_m=10.0, ttc_s=ttc, in_path=in_path, lane="ego" if in_path else "left")


@pytest.mark.parametrize("fcw_frames", [1, 2, 3])
def test_forward_collision_state_machine(fcw_frames):
    """Thresholds 2.5 s on, 2.5 + 0.5 s off; values on both sides of each."""
    f = fuser(warnings=WarningSettings(fcw_ttc_s=2.5, fcw_hysteresis_s=0.5, fcw_frames=fcw_frames))
    steps = [[obj(2.51)], [obj(None)], [obj(1.0, in_path=False)]]  # not below, no TTC, not in path
    for objects in steps:
        assert not f._forward_collision(objects)
    for k in range(fcw_frames):
        assert f._forward_collision([obj(2.49), obj(9.0)]) == (k == fcw_frames - 1)
    for ttc in (2.6, 2.99, 3.0):  # inside the band: held
        assert f._forward_collision([obj(ttc)])
    assert not f._forward_collision([obj(3.01)])
    assert not f._forward_collision([obj(2.6)])  # back into the band from outside: not raised again
    if fcw_frames > 1:
        # Frames below the threshold must be consecutive.
        assert not f._forward_collision([obj(2.0)])
        assert not f._forward_collision([obj(2.7)])
        assert not f._forward_collision([obj(2.0)])


def test_fast_car_in_the_next_lane_raises_no_collision_warning():
    f = fuser()
    for i in range(40):
        d = 30.0 - 12.0 * i / FPS  # to 11 m
        scene = f.update(result(i, [project_box(CAMERA, d, 3.5)], [CAR]))
        (o,) = scene.objects
        assert o.lane == "left" and not o.in_path
        assert "forward_collision" not in scene.warnings
    assert o.ttc_s is not None and o.ttc_s < 1.5  # it is closing fast, just not in the path


# --------------------------------------------------------------------------------------------------------
# Lane assignment.


@pytest.mark.parametrize(
    "lateral_m, lane, in_path",
    [
        (0.0, "ego", True),
        (0.8, "ego", True),
        (-0.8, "ego", True),
        (3.5, "left", False),
        (-3.5, "right", False),
        (7.0, "left", False),  # two lanes over
        (-7.0, "right", False),
        (12.0, "off_road", False),  # beyond the drivable area (9 m)
    ],
)
def test_lane_assignment(lateral_m, lane, in_path):
    scene = fuser().update(result(0, [project_box(CAMERA, 20.0, lateral_m)], [CAR]))
    assert scene.ego_lane is not None
    (o,) = scene.objects
    assert (o.lane, o.in_path) == (lane, in_path)
    assert o.position_m[1] == pytest.approx(lateral_m, abs=0.05 * 20)


def test_lane_assignment_follows_a_curved_lane():
    """On a left curve (R = 200 m) a car 40 m ahead in the ego lane is 4 m to the left of the camera's
    straight-ahead: still ego; one straight ahead is then in the right lane."""
    k = 1 / 200
    mask = render_road(CAMERA, lane_lines(0.0, n_left=1, n_right=1, curvature_1pm=k))
    y_lane = 0.5 * k * 40.0**2
    scene = fuser().update(
        result(0, [project_box(CAMERA, 40.0, y_lane), project_box(CAMERA, 40.0, 0.0)], [CAR, CAR], mask)
    )
    lanes = sorted(scene.objects, key=lambda o: -o.position_m[1])
    assert [(o.lane, o.in_path) for o in lanes] == [("ego", True), ("right", False)]


# --------------------------------------------------------------------------------------------------------
# No camera, other resolutions.


def test_without_a_camera_tracks_still_come_through():
    f = fuser(camera=None)
    for i in range(5):
        scene = f.update(result(i, [project_box(CAMERA, 20.0 - i, 0.0), project_box(CAMERA, 30.0, 3.5)], [CAR, CAR]))
        assert scene.camera is None and scene.ego_lane is None and scene.warnings == ()
        # the lines are still found, named and typed, in the image only
        assert [ln.side for ln in scene.lanes][:2] == ["ego_left", "ego_right"]
        assert all(not ln.in_metres and len(ln.points_image) > 5 for ln in scene.lanes)
        assert sorted(o.track.track_id for o in scene.objects) == [1, 2]
        for o in scene.objects:
            assert o.distance_m is None and o.distance_sigma_m is None and o.ttc_s is None
            assert o.distance_source == "none" and o.lane == "unknown" and not o.in_path


def test_frames_of_another_aspect_ratio_are_refused():
    f = fuser()
    f.check_frame_size((720, 1280))  # the same camera, scaled: fine
    with pytest.raises(ConfigError, match="aspect ratio"):
        f.check_frame_size((480, 640))
    with pytest.raises(ConfigError):
        fuser().update(result(0, [], [], mask=None, frame_size=(480, 640)))


def test_frames_at_twice_the_calibration_size_give_the_same_scene():
    """Camera calibrated at 640x360, frames 1280x720 with a letterboxed 320x512 mask: same metres."""
    from perception.preprocess import letterbox_geometry

    big = CAMERA.scaled_to(1280, 720)
    lb = letterbox_geometry((720, 1280), (320, 512))
    mask = render_road(big, lane_lines(0.3, n_left=1, n_right=1), letterbox=lb)
    boxes = [project_box(big, 25.0, 0.0), project_box(big, 25.0, -3.5)]
    scene = fuser().update(result(0, boxes, [CAR, CAR], mask, frame_size=(720, 1280), letterbox=lb))
    assert scene.camera == "test_cam"
    assert scene.ego_lane.offset_m == pytest.approx(0.3, abs=0.05)
    near, right = sorted(scene.objects, key=lambda o: -o.position_m[1])
    assert near.distance_m == pytest.approx(25.0, rel=0.01) and (near.lane, near.in_path) == ("ego", True)
    assert right.distance_m == pytest.approx(math.hypot(25.0, 3.5), rel=0.01) and right.lane == "right"


# --------------------------------------------------------------------------------------------------------
# eval/scene.py


def iou_reference(a, b) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if inter > 0 else 0.0
    return out


def test_box_iou_hand_computed():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1], [4, 4, 4, 6]], np.float32)  # the last has zero width
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [1, 0, 3, 1], [4, 4, 4, 6]], np.float32)
    expected = np.array(
        [
            [1 / 7, 1.0, 1 / 5, 0.0],  # 1 of 4+4-1; identical; 1 of 4+2-1
            [0.0, 1 / 4, 0.0, 0.0],  # touching at a corner / an edge: no area in common
            [0.0, 0.0, 0.0, 0.0],  # zero-area boxes overlap nothing, not even themselves (no NaN)
        ]
    )
    got = box_iou(a, b)
    assert got.dtype == np.float64 and got.shape == (3, 4)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)
    assert box_iou(a, np.zeros((0, 4))).shape == (3, 0)


@pytest.mark.parametrize("seed", range(5))
def test_box_iou_against_a_loop(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, (2, 7, 2))
    wh = rng.uniform(0, 20, (2, 7, 2))
    a, b = (np.concatenate([xy[k], xy[k] + wh[k]], 1) for k in range(2))
    b[:2] = a[:2]  # some identical pairs
    np.testing.assert_allclose(box_iou(a, b), iou_reference(a, b), atol=1e-12)


def test_greedy_pairs():
    score = np.array([[0.9, 0.8], [0.85, 0.1]])
    # Greedy takes (0, 0) first; (1, 1) is below the threshold, so row 1 stays unpaired (a one-to-one
    # optimum would pair (0, 1) and (1, 0)).
    assert _greedy_pairs(score, 0.5) == [(0, 0)]
    assert _greedy_pairs(score, 0.05) == [(0, 0), (1, 1)]
    assert _greedy_pairs(score, 0.9) == [(0, 0)]  # a score exactly at the threshold counts
    assert _greedy_pairs(score, 0.91) == []
    assert _greedy_pairs(np.zeros((0, 3)), 0.5) == []
    gap = np.array([[0.3, np.inf, 0.1], [0.2, 0.4, np.inf]])  # smaller is better (metres apart)
    assert _greedy_pairs(gap, 0.4, larger_is_better=False) == [(0, 2), (1, 0)]
    assert _greedy_pairs(gap, 0.15, larger_is_better=False) == [(0, 2)]
    assert _greedy_pairs(gap, 0.1, larger_is_better=False) == [(0, 2)]  # exactly at the threshold


def test_truth_ttc():
    closing = [(0.1 * k, 20.0 - 1.0 * k) for k in range(6)]  # 10 m/s closing, now 15 m away
    # Closing speed over the last 0.3 s (t 0.2 -> 0.5): 3 m / 0.3 s; TTC 15 / 10.
    assert _truth_ttc(closing) == pytest.approx(1.5)
    accelerating = [(0.0, 20.0), (0.1, 19.9), (0.2, 19.0), (0.3, 18.0), (0.4, 17.0)]
    assert _truth_ttc(accelerating) == pytest.approx(17.0 / ((19.9 - 17.0) / 0.3))
    short = [(0.0, 10.0), (0.1, 9.0)]  # under 0.3 s of history: the whole of it
    assert _truth_ttc(short) == pytest.approx(9.0 / 10.0)
    assert _truth_ttc([(0.0, 10.0)]) is None
    assert _truth_ttc([(0.0, 10.0), (0.4, 11.0)]) is None  # receding
    assert _truth_ttc([(0.0, 10.0), (0.4, 9.9)]) is None  # 0.25 m/s: not closing
    assert _truth_ttc([(0.4, 10.0), (0.4, 9.0)]) is None  # no time passed


def test_oracle_scene_eval_on_a_synthetic_clip(tmp_path):
    from perception.data.registry import build_dataset
    from perception.data.synth.generate import SynthOptions, write_synth_dataset

    t0 = time.perf_counter()
    write_synth_dataset(tmp_path, n=0, clips=1, clip_frames=12, opts=SynthOptions(size=(320, 180)))
    ds = build_dataset("synthetic", tmp_path, split="clips")
    assert len(ds) == 12
    metrics = evaluate_scene(ds, lambda cam: SceneFuser(DET_CLASSES, SEG_CLASSES, cam))
    summary = metrics.summary()
    elapsed = time.perf_counter() - t0
    assert elapsed < 8.0, f"oracle eval took {elapsed:.1f} s"
    assert set(summary) == {
        "clips",
        "frames",
        "ego_lane",
        "lane_lines",
        "distance",
        "ttc",
        "tracking",
        "tracking_within_60m",
        "auto_camera",
    }
    assert (summary["clips"], summary["frames"]) == (1, 12)
    assert set(summary["ego_lane"]) >= {"frames_with_truth", "found_fraction", "median_offset_err_m"}
    assert set(summary["distance"]["by_range"]) == {"0-20m", "20-40m", "40-60m", "60m+"}
    assert set(summary["lane_lines"]) == {"tp", "fp", "fn", "precision", "recall", "f1"}
    assert 0.0 <= summary["lane_lines"]["f1"] <= 1.0
    tracking = summary["tracking"]
    assert tracking["num_frames"] == 12
    # Oracle boxes: tracking is (near) perfect once tracks are confirmed.
    assert tracking["idsw"] == 0 and tracking["mota"] > 0.8
    # The near count scores exactly the objects within 60 m (the rest become ignore regions).
    from perception.eval.scene import NEAR_TRACKING_M, _truth_near_distance

    objs = [o for i in range(len(ds)) for o in ds[i].meta["objects"] if not o["ignore"]]
    far = sum(_truth_near_distance(o) > NEAR_TRACKING_M for o in objs)
    near = summary["tracking_within_60m"]
    assert far > 0 and tracking["num_gt"] == len(objs) and near["num_gt"] == len(objs) - far
    assert near["num_frames"] == 12 and near["idsw"] <= tracking["idsw"]
    ego = summary["ego_lane"]
    if ego["frames_with_truth"]:
        assert ego["found_fraction"] > 0.5
        assert ego["median_offset_err_m"] < 0.15


def test_scene_eval_cli_reports_each_set_and_pools_them(tmp_path, capsys):
    """Two clip sets in one run: each reported, then pooled. Pooled counts are the sums of the sets', and
    the pooled medians are those of all errors together."""
    import json

    from perception.cli import main
    from perception.data.synth.generate import SynthOptions, write_synth_dataset

    for seed in (1, 2):
        write_synth_dataset(
            tmp_path / f"s{seed}", n=0, clips=1, clip_frames=10, seed=seed, opts=SynthOptions(size=(320, 180))
        )
    out = tmp_path / "scene.json"
    rc = main(
        [
            "scene-eval",
            "--data",
            f"synthetic:{tmp_path / 's1'}",
            "--data",
            f"synthetic:{tmp_path / 's2'}",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "oracle on synthetic:" in printed and "oracle, 2 sets pooled: 2 clips, 20 frames" in printed
    report = json.loads(out.read_text())["oracle"]
    sets = list(report["per_set"].values())
    assert len(sets) == 2 and report["frames"] == 20 and report["clips"] == 2
    for key in ("num_gt", "tp", "fp", "fn", "idsw"):
        assert report["tracking"][key] == sum(s["tracking"][key] for s in sets), key
        assert report["tracking_within_60m"][key] == sum(s["tracking_within_60m"][key] for s in sets), key
    for key in ("tp", "fp", "fn"):
        assert report["lane_lines"][key] == sum(s["lane_lines"][key] for s in sets)
    n = [s["distance"]["by_range"]["0-20m"]["n"] for s in sets]
    assert report["distance"]["by_range"]["0-20m"]["n"] == sum(n)
    assert report["ego_lane"]["frames_with_truth"] == sum(s["ego_lane"]["frames_with_truth"] for s in sets)


def test_scene_metrics_merge_pools_errors():
    from perception.eval.scene import SceneMetrics

    a, b = SceneMetrics(), SceneMetrics()
    a.offset_err, b.offset_err = [0.1, -0.3], [0.2]
    a.dist_rel_err[0].append(0.01)
    b.dist_rel_err[0].append(0.03)
    b.dist_rel_err[3].append(0.5)
    a.lane_tp, b.lane_tp, a.frames, b.frames, a.clips, b.clips = 2, 3, 5, 7, 1, 1
    m = a.merge(b)
    s = m.summary()
    assert s["ego_lane"]["median_offset_err_m"] == pytest.approx(0.2)
    assert s["distance"]["median_rel_err_upto_40m"] == pytest.approx(0.02)
    assert s["distance"]["by_range"]["60m+"]["n"] == 1
    assert (m.lane_tp, m.frames, m.clips) == (5, 12, 2)
    assert a.offset_err == [0.1, -0.3] and dict(a.dist_rel_err) == {0: [0.01]}  # inputs unchanged


def test_scene_eval_auto_hfov_tells_the_self_calibration_the_true_field_of_view(tmp_path, capsys):
    """--camera auto-hfov: the clip's own lens is given, as `perception run --hfov` gives it, so the field of
    view is exact once calibrated and only pitch, yaw and height are estimated."""
    import json

    from perception.cli import main
    from perception.data.synth.generate import SynthOptions, write_synth_dataset

    write_synth_dataset(tmp_path / "s", n=0, clips=1, clip_frames=120, seed=2, opts=SynthOptions(size=(480, 270)))
    out = tmp_path / "scene.json"
    argv = ["scene-eval", "--data", f"synthetic:{tmp_path / 's'}", "--camera", "auto-hfov", "--json", str(out)]
    assert main(argv) == 0
    auto = json.loads(out.read_text())["oracle"]["auto_camera"]
    assert auto["calibrated_fraction"] > 0, capsys.readouterr().out
    assert auto["median_hfov_err_deg"] == pytest.approx(0.0, abs=1e-6)
