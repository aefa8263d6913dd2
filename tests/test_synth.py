"""The synthetic world: determinism, exact labels checked against the camera geometry, clips, dataset files."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from perception.data.synth.effects import EffectDraw
from perception.data.synth.generate import (
    FrameMaker,
    SynthOptions,
    sample_camera,
    synth_clip,
    synth_frames,
    write_synth_dataset,
)
from perception.data.synth.world import Agent, Marking, sample_world

SMALL = SynthOptions(size=(320, 180))
NO_EFFECTS = EffectDraw(
    k1=0.0,
    k2=0.0,
    hood=0.0,
    hood_color=(0, 0, 0),
    motion_blur=0,
    motion_angle=0.0,
    defocus=0.0,
    noise_sigma=0.0,
    jpeg_quality=0,
    vignette=0.0,
    white_balance=(1.0, 1.0, 1.0),
    gamma=1.0,
)


def calm_world(seed: int = 3, agents=(), straight: bool = True, **layout_kw):
    """A day-time world with fresh solid/dashed paint, no clutter, and the given agents."""
    rng = np.random.default_rng(seed)
    world = sample_world(rng, night_p=0.0, weather_p=0.0)
    lay = world.layout
    marks = tuple(replace(m, style="solid" if m.style == "none" else m.style, wear=0.0) for m in lay.markings)
    lay = replace(lay, markings=marks, crossing_s=None, **layout_kw)
    center = world.centerline
    if straight:
        from perception.data.synth.world import Centerline

        center = Centerline.from_curvature(np.zeros(len(center.s)))
    env = replace(world.env, time="day", fog=0.0, rain=0.0, sun_elevation=80.0)
    ego = replace(world.ego, d=lay.lane_center(world.ego.lane), heading=0.0)
    return replace(world, layout=lay, centerline=center, props=(), agents=tuple(agents), env=env, ego=ego)


def camera(seed: int = 0, **mount):
    cam = sample_camera(np.random.default_rng(seed), SMALL)
    return replace(cam, mounting=replace(cam.mounting, roll_deg=0.0, yaw_deg=0.0, **mount))


def test_frames_are_deterministic_and_independent_of_the_range():
    a = list(synth_frames(2, seed=11, opts=SMALL))
    b = list(synth_frames(1, seed=11, opts=SMALL, start=1))
    assert np.array_equal(a[1].image, b[0].image)
    assert np.array_equal(a[1].seg, b[0].seg)
    assert np.array_equal(a[1].boxes, b[0].boxes)
    assert a[1].name == b[0].name
    assert not np.array_equal(a[0].image, a[1].image)


def test_labels_are_well_formed():
    for s in synth_frames(4, seed=2, opts=SMALL):
        h, w = s.seg.shape
        assert set(np.unique(s.seg)) <= {0, 1, 2, 255}
        assert (s.seg == 1).any()  # a road is always in view
        assert s.lane_labelled
        assert s.boxes.dtype == np.float32 and len(s.boxes) == len(s.labels) == len(s.ignore)
        assert (s.boxes[:, 0] >= 0).all() and (s.boxes[:, 2] <= w).all() and (s.boxes[:, 3] <= h).all()
        assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()
        assert len(s.meta["objects"]) == len(s.boxes)
        assert {"lateral_offset_m", "lane_width_m", "curvature_1pm"} <= set(s.meta["ego"])


def _paint_hits(sample, lanes, tol: int = 1) -> float:
    """Fraction of lane polyline points, densified to 10 cm and projected with the sample's own camera
    (distortion included), that land within ``tol`` px of a lane-labelled pixel in the lower 40 % rows."""
    import cv2

    from perception.camera_model import camera_from_dict

    cam = camera_from_dict(sample.meta["camera"])
    lane = cv2.dilate((sample.seg == 2).astype(np.uint8), np.ones((2 * tol + 1, 2 * tol + 1), np.uint8))
    h, w = sample.seg.shape
    hits = total = 0
    for ln in lanes:
        pts = np.array(ln["points_vehicle_m"])
        x = np.arange(pts[0, 0], pts[-1, 0], 0.1)
        dense = np.column_stack([x, np.interp(x, pts[:, 0], pts[:, 1]), np.zeros_like(x)])
        uv, depth = cam.project(dense, distort=True)
        # The stored image points are this projection, kept where it falls inside the image.
        proj, pdepth = cam.project(pts, distort=True)
        keep = (pdepth > 0) & (proj[:, 0] >= 0) & (proj[:, 0] < w) & (proj[:, 1] >= 0) & (proj[:, 1] < h)
        assert np.allclose(np.round(proj[keep], 2), np.array(ln["points_image"]).reshape(-1, 2), atol=0.1)
        inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w - 0.5) & (uv[:, 1] > 0.6 * h) & (uv[:, 1] < h - 0.5)
        for u, v in uv[inside]:
            total += 1
            hits += lane[int(round(v)), int(round(u))]
    assert total > 20
    return hits / total


def test_lane_polylines_project_onto_the_painted_pixels():
    world = calm_world()
    solid = [m for m in world.layout.markings if m.style in ("solid", "double")]
    assert solid
    s = FrameMaker(camera(), NO_EFFECTS).make(world, "t", np.random.default_rng(0))
    lanes = [ln for ln in s.meta["lanes"] if ln["style"] == "solid"]
    assert _paint_hits(s, lanes) > 0.95
    sides = {ln["side"] for ln in s.meta["lanes"]}
    assert {"ego_left", "ego_right"} <= sides
    assert s.meta["ego"]["lateral_offset_m"] == pytest.approx(0.0, abs=1e-6)


def test_paint_stays_on_the_lane_polylines_far_along_a_turning_road():
    # Regression: the road's heading in the vehicle frame had its ego-heading term with the wrong sign,
    # so once the road had turned (world heading far from 0) paint was drawn at the wrong lateral offsets.
    from perception.data.synth.world import Centerline

    world = calm_world()
    k = np.full(len(world.centerline.s), 1 / 150.0)  # a steady left turn: 0.5 rad after 75 m
    world = replace(world, centerline=Centerline.from_curvature(k), ego=replace(world.ego, s=80.0))
    s = FrameMaker(camera(), NO_EFFECTS).make(world, "t", np.random.default_rng(0))
    lanes = [ln for ln in s.meta["lanes"] if ln["style"] == "solid"]
    assert _paint_hits(s, lanes) > 0.9


def test_lane_polylines_follow_lens_distortion():
    world = calm_world(seed=5)
    draw = replace(NO_EFFECTS, k1=-0.15, k2=0.0)
    s = FrameMaker(camera(1), draw).make(world, "t", np.random.default_rng(0))
    assert s.meta["camera"]["dist_coeffs"][0] < 0
    from perception.camera_model import camera_from_dict

    assert camera_from_dict(s.meta["camera"]).dist_coeffs == tuple(s.meta["camera"]["dist_coeffs"])  # reads back
    lanes = [ln for ln in s.meta["lanes"] if ln["style"] == "solid"]
    assert _paint_hits(s, lanes) > 0.95
    assert (s.seg != 255).mean() > 0.95  # the distorted frame is fully rendered, not padded with ignore


def car(track_id: int, s: float, d: float, **kw) -> Agent:
    return Agent(
        track_id=track_id,
        cls="car",
        s=s,
        d=d,
        length=4.5,
        width=1.8,
        height=1.5,
        color=(0.2, 0.2, 0.8),
        shape="sedan",
        **kw,
    )


def test_box_matches_the_projected_car_and_its_distance():
    base = calm_world()
    lane_d = base.layout.lane_center(base.ego.lane)
    world = replace(base, agents=(car(1, base.ego.s + 20, lane_d),))
    cam = camera(2)
    s = FrameMaker(cam, NO_EFFECTS).make(world, "t", np.random.default_rng(0))
    assert list(s.labels) == [0] and not s.ignore[0]
    # Rear bumper corners on the ground, 20 m - half a car ahead: the box bottom sits at their image row.
    rear = np.array([[20 - 2.25, 0.9, 0.0], [20 - 2.25, -0.9, 0.0]])
    (u0, v0), (u1, _) = cam.project(rear)[0]
    x1, y1, x2, y2 = s.boxes[0]
    assert abs(y2 - v0) < 2.5
    assert x1 - 2 < min(u0, u1) and x2 + 2 > max(u0, u1)  # at least as wide as the rear at ground level
    obj = s.meta["objects"][0]
    assert obj["distance_m"] == pytest.approx(20.0, abs=0.05)
    assert obj["visibility"] > 0.99


def test_hidden_car_is_flagged_and_its_box_holds_only_the_visible_part():
    base = calm_world(seed=4)
    d = base.layout.lane_center(base.ego.lane)
    near = car(1, base.ego.s + 12, d)
    far = replace(car(2, base.ego.s + 25, d + 0.3), height=1.45)
    s = FrameMaker(camera(3), NO_EFFECTS).make(replace(base, agents=(near, far)), "t", np.random.default_rng(0))
    by_id = {o["track_id"]: o for o in s.meta["objects"]}
    assert by_id[1]["visibility"] > 0.99 and not by_id[1]["ignore"]
    if 2 in by_id:  # a sliver may peek out; it must be flagged, not presented as a whole car
        assert by_id[2]["visibility"] < 0.3 and by_id[2]["ignore"]
    # Pixels of the far car's box that are not its own are the near car's: the box is the visible part only.


def test_clip_keeps_ids_and_moves_smoothly():
    frames = list(synth_clip(0, 4, seed=9, fps=10.0, opts=SMALL))
    assert [f.meta["frame_index"] for f in frames] == [0, 1, 2, 3]
    ego_s = [f.meta["ego"]["s_m"] for f in frames]
    speed = frames[0].meta["ego"]["speed_mps"]
    assert np.allclose(np.diff(ego_s), speed / 10.0, atol=1e-3)
    for a, b in zip(frames, frames[1:], strict=False):
        pa = {o["track_id"]: np.array(o["position_m"]) for o in a.meta["objects"]}
        pb = {o["track_id"]: np.array(o["position_m"]) for o in b.meta["objects"]}
        common = set(pa) & set(pb)
        assert common
        for tid in common:  # nothing on a road jumps more than 60 m/s * 0.1 s relative to the ego car
            assert np.linalg.norm(pa[tid] - pb[tid]) < 6.0


def test_dataset_on_disk_reads_back_and_does_not_depend_on_workers(tmp_path):
    from perception.data.folder import FolderDataset

    r1 = write_synth_dataset(tmp_path / "a", 3, seed=1, val_fraction=0.34, clips=1, clip_frames=2, opts=SMALL)
    r2 = write_synth_dataset(
        tmp_path / "b", 3, seed=1, val_fraction=0.34, clips=1, clip_frames=2, opts=SMALL, workers=2
    )
    assert r1["counts"] == r2["counts"]
    assert r1["counts"]["train"]["images"] == 2 and r1["counts"]["val"]["images"] == 1
    assert (tmp_path / "a" / "clips" / "clip_000.mp4").stat().st_size > 0
    for split in ("train", "val", "clips"):
        a, b = FolderDataset(tmp_path / "a", split), FolderDataset(tmp_path / "b", split)
        assert a.names == b.names
        for i in range(len(a)):
            sa, sb = a[i], b[i]
            assert np.array_equal(sa.seg, sb.seg) and np.array_equal(sa.boxes, sb.boxes)
            assert sa.lane_labelled and sa.meta["camera"] == sb.meta["camera"]
    again = next(synth_frames(1, seed=1, opts=SMALL))
    first = FolderDataset(tmp_path / "a", "train")[0]
    assert np.array_equal(first.seg, again.seg)
    assert np.allclose(first.boxes, again.boxes)


def test_cli_writes_dataset_and_montage_and_refuses_a_full_folder(tmp_path, capsys):
    from perception.cli import main

    out = tmp_path / "syn"
    assert main(["synth", "--n", "3", "--out", str(out), "--size", "320x180", "--workers", "1", "-q"]) == 0
    assert (out / "montage.png").is_file() and (out / "annotations" / "train.json").is_file()
    assert "frames/s" in capsys.readouterr().out
    png = tmp_path / "m.png"
    assert main(["data", "montage", f"synthetic:{out}", "--n", "2", "--cols", "2", "--out", str(png), "-q"]) == 0
    import cv2

    assert cv2.imread(str(png)).shape[1] == 2 * 320
    assert main(["synth", "--n", "1", "--out", str(out), "-q"]) == 1
    assert "not empty" in capsys.readouterr().err


def test_marking_styles_render_as_labelled_paint():
    world = calm_world(seed=6)
    marks = tuple(replace(m, style="dashed", dash=3.0, period=6.0) for m in world.layout.markings)
    world = replace(world, layout=replace(world.layout, markings=marks))
    dashed = FrameMaker(camera(4), NO_EFFECTS).make(world, "t", np.random.default_rng(0))
    none = replace(world, layout=replace(world.layout, markings=tuple(replace(m, style="none") for m in marks)))
    bare = FrameMaker(camera(4), NO_EFFECTS).make(none, "t", np.random.default_rng(0))
    assert (dashed.seg == 2).sum() > 50
    assert (bare.seg == 2).sum() == 0
    assert Marking(d=0.0, style="none", color="white").visible is False


def test_textures_tile_without_seams():
    """Ground and sky textures wrap around: a seam would draw a line across the road or the sky."""
    from perception.data.synth.raster import texture

    for kind in ("fine", "coarse", "clouds", "skyline"):
        t = texture(kind, 1).astype(np.float64)
        step = np.abs(np.diff(t, axis=1)).max()
        assert np.abs(t[:, 0] - t[:, -1]).max() <= step * 1.01
        assert np.abs(t[0] - t[-1]).max() <= np.abs(np.diff(t, axis=0)).max() * 1.01
