"""Lanes in image space and the online self-calibration (camera: auto), on roads rendered through a known
camera (tests/road_scene.py), so every estimate has an exact truth."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from road_scene import DRIVABLE, LANE, SEG_CLASSES, identity_letterbox, lane_lines, make_camera, render_road, seg_map

from perception.camera_model import Mounting
from perception.frames import Detections, FrameResult, SegMap
from perception.fusion.dash_period import dash_period_on_ground
from perception.fusion.image_lanes import (
    RoadExtent,
    find_image_lines,
    find_road_edges,
    image_lanes,
    name_image_lines,
)
from perception.fusion.scene import SceneFuser
from perception.fusion.self_calibration import AutoCameraSettings, SelfCalibration
from perception.sinks import SCHEMA_PATH, scene_json, scene_to_json

H, W = 360, 640
FPS = 10.0
LB = identity_letterbox(H, W)
ROAD = np.array([DRIVABLE, LANE], np.uint8)


def camera(pitch=1.5, yaw=-1.0, height=1.35, focal=420.0):
    cam = make_camera(W, H)
    k = ((focal, 0.0, (W - 1) / 2), (0.0, focal, (H - 1) / 2), (0.0, 0.0, 1.0))
    return dataclasses.replace(
        cam, camera_matrix=k, mounting=Mounting(height_m=height, pitch_deg=pitch, yaw_deg=yaw, roll_deg=0.0)
    )


def truth_x(cam, coeffs, rows):
    """x (frame px) of the ground line y(x) = c0 + c1 x + c2 x^2 at image ``rows``."""
    x = np.linspace(3.0, 200.0, 4000)
    y = coeffs[0] + coeffs[1] * x + coeffs[2] * x * x
    uv, _ = cam.project(np.column_stack([x, y, np.zeros_like(x)]))
    order = np.argsort(uv[:, 1])
    return np.interp(rows, uv[order, 1], uv[order, 0])


def drive(
    cam,
    seconds,
    offset=lambda t: 0.25 * math.sin(t),
    dashed=(True, False),
    phase_speed=20.0,
    lines=None,
    x_range_m=(4.0, 60.0),
):
    """Frames (seg, t) of driving along a straight two-line road at ``phase_speed`` m/s, its paint seen
    over ``x_range_m`` ahead."""
    for k in range(int(seconds * FPS)):
        t = k / FPS
        road_lines = lines if lines is not None else lane_lines(offset(t), width_m=3.6)
        phase = (phase_speed * t) % 12.0
        mask = render_road(cam, road_lines, dashed=list(dashed), dash_phase_m=phase, x_range_m=x_range_m)
        yield seg_map(mask), t


# --------------------------------------------------------------------------------------------------------
# Lanes in image space, without any camera.


def test_image_lines_follow_the_painted_lines_and_are_named_by_side():
    cam = camera()
    truth = lane_lines(0.3, width_m=3.6, n_left=1, n_right=1)  # left to right: next_left .. next_right
    mask = render_road(cam, truth, dashed=[False, True, False, True], x_range_m=(4.0, 60.0))
    lines = find_image_lines(seg_map(mask), LB, LANE)
    sides = name_image_lines(lines, (H, W))
    assert sides == ["next_left", "ego_left", "ego_right", "next_right"]
    for line, coeffs in zip(lines, truth, strict=True):
        top, bottom = line.y_range
        rows = np.linspace(top + 0.2 * (bottom - top), bottom, 6)
        assert np.abs(line.x_at(rows) - truth_x(cam, coeffs, rows)).max() < 2.0, "within 2 px of the paint"
    # the outer right line leaves the frame at its side: too few rows to be sure of its pattern
    assert [ln.style for ln in lines][:3] == ["solid", "dashed", "solid"] and lines[3].style in ("dashed", "unknown")


def test_image_lanes_carry_rows_every_10_px_and_no_metres():
    lines = find_image_lines(seg_map(render_road(camera(), lane_lines(0.0, width_m=3.6))), LB, LANE)
    lanes = image_lanes(lines, name_image_lines(lines, (H, W)), (H, W))
    assert [ln.side for ln in lanes] == ["ego_left", "ego_right"]
    for ln in lanes:
        assert ln.coeffs is None and ln.x_range_m is None and not ln.in_metres
        rows = ln.points_image[:, 1]
        assert np.all(rows % 10 == 0) and np.all(np.diff(rows) == 10) and rows[-1] >= H - 10
        with pytest.raises(ValueError, match="image only"):
            ln.y_at(10.0)


def test_no_paint_no_lines_and_crossing_paint_is_not_a_line():
    empty = np.full((H, W), DRIVABLE, np.uint8)
    assert find_image_lines(seg_map(empty), LB, LANE) == []
    stop_line = empty.copy()
    stop_line[300:306, 100:540] = LANE  # a stop line across the lane: horizontal, not a lane line
    assert find_image_lines(seg_map(stop_line), LB, LANE) == []


def test_road_edges_without_paint_meet_at_the_vanishing_point():
    cam = camera()
    mask = render_road(cam, [], drivable_m=4.0)
    edges = find_road_edges(seg_map(mask), LB, ROAD)
    assert len(edges) == 2
    (lm, lk), (rm, rk) = (e.straight_part() for e in edges)
    y = (rk - lk) / (lm - rm)
    vp_true, _ = cam.project(np.array([[1e5, 0.0, 0.0]]))
    assert abs(lm * y + lk - vp_true[0, 0]) < 3 and abs(y - vp_true[0, 1]) < 3


# --------------------------------------------------------------------------------------------------------
# The self-calibration.


def test_dash_period_read_on_the_ground_is_the_painted_one():
    cam = camera(pitch=0.0, yaw=0.0)  # level: ground distances scale exactly with the focal length
    lines = find_image_lines(seg_map(render_road(cam, lane_lines(0.0, 3.6), dashed=[True, True])), LB, LANE)
    periods = [dash_period_on_ground(ln, ln.painted_rows, cam) for ln in lines]
    assert all(p == pytest.approx(12.0, rel=0.04) for p in periods), periods
    # the same paint read with a camera of a 20 % longer focal length: 20 % longer on the road
    longer = dataclasses.replace(cam, camera_matrix=((504.0, 0, (W - 1) / 2), (0, 504.0, (H - 1) / 2), (0, 0, 1)))
    assert dash_period_on_ground(lines[0], lines[0].painted_rows, longer) == pytest.approx(14.4, rel=0.06)


@pytest.mark.parametrize(
    "pitch, yaw, height, focal",
    [(1.5, -1.0, 1.35, 420.0), (-2.0, 2.5, 1.7, 330.0), (3.0, 0.5, 1.2, 560.0)],
)
def test_self_calibration_recovers_the_camera_from_driving(pitch, yaw, height, focal):
    cam = camera(pitch, yaw, height, focal)
    cal = SelfCalibration()
    states = []
    for seg, t in drive(cam, 10.0):
        lines = find_image_lines(seg, LB, LANE)
        cal.update(lines, name_image_lines(lines, (H, W)), (H, W), t, find_road_edges(seg, LB, ROAD))
        states.append(cal.state)
    assert states[0].state == "calibrating" and states[0].pitch_deg is None
    end = states[-1]
    assert end.state == "calibrated" and cal.camera is not None
    assert end.focal_source == "dashes" and end.height_source == "lane width"
    assert end.pitch_deg == pytest.approx(pitch, abs=0.15) and end.yaw_deg == pytest.approx(yaw, abs=0.15)
    assert end.height_m == pytest.approx(height, rel=0.04)
    true_hfov = math.degrees(2 * math.atan(W / 2 / focal))
    assert end.hfov_deg == pytest.approx(true_hfov, abs=1.5)
    assert 0 < states[30].confidence < end.confidence <= 1
    # calibrating takes min_seconds and min_frames of usable frames
    first = next(i for i, s in enumerate(states) if s.state == "calibrated")
    assert first / FPS >= AutoCameraSettings().min_seconds


@pytest.mark.parametrize("focal", [330.0, 560.0])
def test_the_focal_length_comes_from_dashes_seen_only_near(focal):
    """A wide lens or a coarse mask shows only the paint within 14 m, less than one 12 m period: the dashes
    stitched over frames of driving still give the focal length."""
    cam = camera(pitch=1.0, yaw=0.5, height=1.4, focal=focal)
    cal = SelfCalibration()
    for seg, t in drive(cam, 10.0, phase_speed=14.0, x_range_m=(4.0, 14.0)):
        lines = find_image_lines(seg, LB, LANE)
        cal.update(
            lines, name_image_lines(lines, (H, W)), (H, W), t, find_road_edges(seg, LB, ROAD), RoadExtent(seg, LB, ROAD)
        )
    end = cal.state  # (few frames show enough of the left line for a vanishing point: it may still calibrate)
    assert end.focal_source == "dashes"
    # the dashed left line is read though it looks solid whenever one whole dash fills its view; the solid
    # right line is not read at all
    assert set(cal._strips) == {"ego_left"}
    assert end.hfov_deg == pytest.approx(math.degrees(2 * math.atan(W / 2 / focal)), abs=1.0)


def test_each_frames_dashes_are_read_once_when_unusable_frames_come_between(monkeypatch):
    """Frames without lines (occlusions, rain) between usable ones must not make the focal estimate count
    the same dashes again at the next recomputation (only a new reading camera has the window read again)."""
    import perception.fusion.self_calibration as sc
    from perception.fusion.dash_period import RoadPaint

    read = []

    def counting(line, rows, cam, **kwargs):
        read.append((id(line), cam.K[0, 0], cam.mounting.height_m))  # the window keeps its lines alive
        return RoadPaint(6.0, np.arange(60) % 48 < 12)

    monkeypatch.setattr(sc, "dash_paint_on_ground", counting)
    cal = SelfCalibration()
    usable = 0
    for k, (seg, t) in enumerate(drive(camera(), 8.0)):
        lines = find_image_lines(seg, LB, LANE) if k % 4 == 0 else []  # three frames in four see nothing
        cal.update(lines, name_image_lines(lines, (H, W)), (H, W), t)
        usable += bool(lines)
    assert usable >= 15 and len(read) == len(set(read)) > 0
    last_camera = read[-1][1:]
    with_last = sum(r[1:] == last_camera for r in read)
    assert cal._dashes.frames + sum(strip.frames for strip in cal._strips.values()) == with_last


def test_a_focal_length_from_metadata_wins_over_the_dashes():
    from perception.camera_metadata import FocalHint

    cam = camera(focal=420.0)
    hint = FocalHint(
        hfov_deg=math.degrees(2 * math.atan(W / 2 / 420.0)), source="exif:Test", raw_value=0.0, image_size_wh=(W, H)
    )
    cal = SelfCalibration(focal_hint=hint)
    for seg, t in drive(cam, 8.0):
        lines = find_image_lines(seg, LB, LANE)
        cal.update(lines, name_image_lines(lines, (H, W)), (H, W), t)
    assert cal.state.focal_source == "metadata:exif:Test"
    assert cal.camera.K[0, 0] == pytest.approx(420.0, rel=1e-6)


def test_a_field_of_view_the_user_gives_wins_over_metadata_and_dashes():
    from perception.camera_metadata import FocalHint

    cam = camera(focal=420.0)
    hint = FocalHint(hfov_deg=90.0, source="exif:Test", raw_value=0.0, image_size_wh=(W, H))
    given = math.degrees(2 * math.atan(W / 2 / 400.0))
    cal = SelfCalibration(AutoCameraSettings(known_hfov_deg=given), focal_hint=hint)
    for seg, t in drive(cam, 8.0):
        lines = find_image_lines(seg, LB, LANE)
        cal.update(lines, name_image_lines(lines, (H, W)), (H, W), t)
    assert cal.state.focal_source == "given" and cal.state.hfov_deg == pytest.approx(given)
    assert cal.camera.K[0, 0] == pytest.approx(400.0, rel=1e-6)


def test_the_preset_tells_camera_auto_its_priors(tmp_path):
    from perception.config import load_config
    from perception.pipeline import build_fusion_camera

    preset = tmp_path / "p.yaml"
    preset.write_text("fusion:\n  auto_camera:\n    hfov_deg: 120\n    lane_width_m: 3.25\n    dash_period_m: 9\n")
    cfg = load_config(preset)
    cal = build_fusion_camera("auto", str(preset), None, cfg.fusion.auto_camera)
    s = cal.settings
    assert (s.known_hfov_deg, s.lane_width_m, s.dash_period_m, s.height_m) == (
        120,
        3.25,
        9,
        AutoCameraSettings().height_m,
    )
    assert build_fusion_camera("auto").settings == AutoCameraSettings()


def test_no_usable_lines_keeps_calibrating_and_a_curve_is_not_used():
    cam = camera()
    cal = SelfCalibration()
    curve = lane_lines(0.0, width_m=3.6, curvature_1pm=1 / 150)
    for seg, t in drive(cam, 8.0, lines=curve, dashed=(True, False)):
        lines = find_image_lines(seg, LB, LANE)
        cal.update(lines, name_image_lines(lines, (H, W)), (H, W), t)
    assert cal.state.state == "calibrating" and cal.camera is None


def test_fusion_with_camera_auto_gives_metres_once_calibrated():
    cam = camera(pitch=2.0, yaw=0.8, height=1.45, focal=450.0)
    fuser = SceneFuser(("car",), SEG_CLASSES, SelfCalibration())
    none = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    offsets = []
    for k, (seg, t) in enumerate(drive(cam, 10.0)):
        result = FrameResult(k, t, (H, W), none, ("car",), SegMap(seg.class_ids, SEG_CLASSES), LB)
        scene = fuser.update(result)
        record = scene_json(scene, ("car",))
        if scene.camera.state == "calibrating":
            assert scene.ego_lane is None and all(ln["coeffs_m"] is None for ln in record["lanes"])
            assert {ln["side"] for ln in record["lanes"]} == {"ego_left", "ego_right"}
        else:
            assert record["camera"]["source"] == "auto" and record["camera"]["state"] == "calibrated"
            offsets.append(scene.ego_lane.offset_m - 0.25 * math.sin(t))
            assert all(ln["coeffs_m"] is not None and ln["points_px"] for ln in record["lanes"])
    assert len(offsets) > 20 and np.median(np.abs(offsets)) < 0.05
    jsonschema = pytest.importorskip("jsonschema")
    record = scene_to_json(dataclasses.replace(result, scene=scene))
    jsonschema.validate(record, json.loads(SCHEMA_PATH.read_text()))
    assert record["scene"]["camera"]["height_source"] == "lane width"


def test_calibrate_auto_refuses_a_video_it_cannot_calibrate_from(fused_model, video, tmp_path, capsys):
    from perception.cli import main

    out = tmp_path / "cam.yaml"
    code = main(["calibrate", "--auto", str(video), "--model", str(fused_model), "--out", str(out)])
    assert code != 0 and not out.exists()
    assert "did not calibrate" in capsys.readouterr().err


def test_the_lane_width_ignores_frames_that_measured_across_two_lanes():
    """Frames whose dashed ego line was in a gap (or behind a car) named the line beyond it and measured two
    lanes; on a busy road they can be most frames. The height comes from the narrow cluster."""
    from perception.fusion.self_calibration import _ego_lane_width

    rng = np.random.default_rng(0)
    one = rng.normal(1.0, 0.03, 20)
    assert _ego_lane_width(list(one)) == pytest.approx(1.0, abs=0.02)
    two = rng.normal(2.0, 0.05, 30)  # three frames in five
    assert _ego_lane_width(list(np.concatenate([one, two]))) == pytest.approx(1.0, abs=0.02)
    assert float(np.median(np.concatenate([one, two]))) > 1.9  # what a plain median gives
