"""Assignment solvers against brute force and scipy; the ByteTrack tracker on synthetic sequences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from perception.frames import Detections, Track
from perception.fusion.association import linear_sum_assignment, max_weight_matching, min_cost_matching
from perception.fusion.motion_model import BoxKalman
from perception.fusion.tracking import ByteTracker

# --------------------------------------------------------------------------------------------------------
# Assignment: brute force over every permutation (of the padded square matrix for partial matchings).


def all_matchings(ok: np.ndarray):
    """Every matching that uses allowed pairs: each padded permutation, its disallowed pairs dropped."""
    n, m = ok.shape
    for perm in itertools.permutations(range(max(n, m)), n):
        yield [(r, c) for r, c in enumerate(perm) if c < m and ok[r, c]]


def brute_lsa(cost: np.ndarray) -> float | None:
    """Least total cost of an assignment of min(N, M) pairs avoiding inf entries; None when none exists."""
    n, m = cost.shape
    best = None
    if n <= m:
        candidates = (list(zip(range(n), p, strict=True)) for p in itertools.permutations(range(m), n))
    else:
        candidates = (list(zip(p, range(m), strict=True)) for p in itertools.permutations(range(n), m))
    for pairs in candidates:
        total = sum(cost[r, c] for r, c in pairs)
        if math.isfinite(total) and (best is None or total < best):
            best = total
    return best


def _random_matrix(rng: np.random.Generator, i: int) -> tuple[np.ndarray, np.ndarray]:
    """A random cost matrix (0..6 rows and columns) and an allowed-pair mask: ties and empty gates included."""
    n, m = (int(v) for v in rng.integers(0, 6, 2))
    if i % 3 == 0:
        cost = rng.integers(0, 3, (n, m)).astype(float)  # many ties
    else:
        cost = rng.random((n, m))
    ok = rng.random((n, m)) < (0.0 if i % 17 == 0 else rng.uniform(0.2, 1.0))
    return cost, ok


def _check_pairs(rows: np.ndarray, cols: np.ndarray, ok: np.ndarray) -> None:
    assert rows.shape == cols.shape
    assert len(set(rows.tolist())) == rows.size and len(set(cols.tolist())) == cols.size
    assert np.all(np.diff(rows) > 0)
    assert ok[rows, cols].all()


def test_assignment_solvers_match_brute_force_on_200_random_matrices():
    rng = np.random.default_rng(0)
    for i in range(200):
        cost, ok = _random_matrix(rng, i)
        # linear_sum_assignment: forbidden = inf
        gated = np.where(ok, cost, np.inf)
        best = brute_lsa(gated)
        if best is None and min(cost.shape) > 0:
            with pytest.raises(ValueError, match="infeasible"):
                linear_sum_assignment(gated)
        else:
            rows, cols = linear_sum_assignment(gated)
            assert rows.size == min(cost.shape)
            _check_pairs(rows, cols, np.isfinite(gated))
            assert gated[rows, cols].sum() == pytest.approx(best if best is not None else 0.0, abs=1e-9)
        # min_cost_matching: most pairs, then least cost
        rows, cols = min_cost_matching(cost, ok)
        _check_pairs(rows, cols, ok)
        want = min((-len(p), sum(cost[r, c] for r, c in p)) for p in all_matchings(ok))
        assert rows.size == -want[0], (cost, ok)
        assert cost[rows, cols].sum() == pytest.approx(want[1], abs=1e-9)
        # max_weight_matching: largest summed weight (weights > 0)
        weight = cost + 0.05
        rows, cols = max_weight_matching(weight, ok)
        _check_pairs(rows, cols, ok)
        want = min(-sum(weight[r, c] for r, c in p) for p in all_matchings(ok))
        assert weight[rows, cols].sum() == pytest.approx(-want, abs=1e-9)


def test_linear_sum_assignment_matches_scipy():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(1)
    for i in range(150):
        n, m = (int(v) for v in rng.integers(1, 25, 2))
        cost = rng.normal(0, 10, (n, m)) if i % 2 else rng.integers(-3, 4, (n, m)).astype(float)
        if i % 5 == 0:
            cost[rng.random((n, m)) < 0.3] = np.inf
        try:
            want = scipy_optimize.linear_sum_assignment(cost)
        except ValueError:
            with pytest.raises(ValueError):
                linear_sum_assignment(cost)
            continue
        rows, cols = linear_sum_assignment(cost)
        assert cost[rows, cols].sum() == pytest.approx(cost[want].sum(), rel=1e-12, abs=1e-9)
        if i % 2 and not np.isinf(cost).any():  # continuous costs: the optimum is unique
            np.testing.assert_array_equal(rows, want[0])
            np.testing.assert_array_equal(cols, want[1])


def test_min_cost_matching_matches_scipy_with_expensive_edges():
    """py-motmetrics' rule: replace disallowed pairs by a prohibitive cost, solve, drop them."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(2)
    for _ in range(100):
        n, m = (int(v) for v in rng.integers(1, 15, 2))
        cost = rng.random((n, m))
        ok = rng.random((n, m)) < 0.3
        big = 2 * min(n, m) * 2.0 + 1
        r, c = scipy_optimize.linear_sum_assignment(np.where(ok, cost, big))
        keep = ok[r, c]
        rows, cols = min_cost_matching(cost, ok)
        assert rows.size == keep.sum()
        assert cost[rows, cols].sum() == pytest.approx(cost[r[keep], c[keep]].sum(), abs=1e-9)


def test_assignment_edge_cases():
    for shape in [(0, 0), (0, 3), (3, 0)]:
        for fn in (linear_sum_assignment, min_cost_matching, max_weight_matching):
            rows, cols = fn(np.zeros(shape))
            assert rows.size == 0 and cols.size == 0
    rows, cols = linear_sum_assignment([[5.0]])
    assert rows.tolist() == [0] and cols.tolist() == [0]
    assert min_cost_matching(np.ones((2, 2)), np.zeros((2, 2), bool))[0].size == 0
    assert max_weight_matching(np.full((2, 2), np.nan))[0].size == 0
    # a strong pair is not traded for two weak ones (ByteTrack's gated rule), unlike min_cost_matching
    w = np.array([[0.9, 0.3], [0.25, 0.0]])
    ok = w > 0
    assert list(zip(*max_weight_matching(w, ok), strict=True)) == [(0, 0)]
    assert list(zip(*min_cost_matching(1 - w, ok), strict=True)) == [(0, 1), (1, 0)]
    with pytest.raises(ValueError):
        linear_sum_assignment([[np.nan]])
    with pytest.raises(ValueError):
        linear_sum_assignment(np.zeros(3))


# --------------------------------------------------------------------------------------------------------
# Synthetic scenes: boxes moving at constant velocity in frame pixels.


class Obj:
    """A box (centre, size in px) moving at (vx, vy) px/s, visible where ``visible(t)``, scored ``score(t)``."""

    def __init__(self, gid, cx, cy, w, h, vx=0.0, vy=0.0, label=0, visible=None, score=None):
        self.gid, self.cx, self.cy, self.w, self.h, self.vx, self.vy, self.label = gid, cx, cy, w, h, vx, vy, label
        self.visible = visible or (lambda t: True)
        self.score = score or (lambda t: 0.9)

    def box(self, t: float) -> list[float]:
        x, y = self.cx + self.vx * t, self.cy + self.vy * t
        return [x - self.w / 2, y - self.h / 2, x + self.w / 2, y + self.h / 2]


def frame_dets(objs, t: float, extra=()) -> tuple[Detections, list]:
    rows = [(o.box(t), o.score(t), o.label, o.gid) for o in objs if o.visible(t)] + list(extra)
    if not rows:
        return Detections.empty(), []
    boxes, scores, labels, gids = zip(*rows, strict=True)
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(labels)), list(gids)


def run(objs, times, tracker=None, extra=None):
    """Feed the scene to a tracker; per frame {gt id: Track} (by best IoU of the tracks to each detection)."""
    tracker = tracker or ByteTracker()
    per_frame = []
    for k, t in enumerate(times):
        dets, gids = frame_dets(objs, float(t), (extra or {}).get(k, ()))
        tracks = tracker.update(dets, float(t))
        for tr in tracks:
            assert isinstance(tr, Track)
        per_frame.append(_assign(tracks, dets, gids))
    return per_frame


def _assign(tracks: list[Track], dets: Detections, gids: list) -> dict:
    out = {}
    for tr in tracks:
        if not len(dets) or tr.frames_since_update:
            continue
        b = dets.boxes_xyxy
        ix = np.clip(np.minimum(b[:, 2], tr.box_xyxy[2]) - np.maximum(b[:, 0], tr.box_xyxy[0]), 0, None)
        iy = np.clip(np.minimum(b[:, 3], tr.box_xyxy[3]) - np.maximum(b[:, 1], tr.box_xyxy[1]), 0, None)
        inter = ix * iy
        union = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) + np.prod(tr.box_xyxy[2:] - tr.box_xyxy[:2]) - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-9), 0)
        j = int(np.argmax(iou))
        if iou[j] > 0.3 and gids[j] is not None:
            out[gids[j]] = tr
    return out


def ids_of(per_frame, gid) -> list[int]:
    return [f[gid].track_id for f in per_frame if gid in f]


def test_constant_velocity_boxes_keep_ids_and_velocity_is_estimated():
    objs = [
        Obj("a", 100, 100, 40, 80, vx=60),
        Obj("b", 500, 200, 60, 40, vx=-80, vy=12),
        Obj("c", 300, 300, 24, 24, vy=-30, label=1),
    ]
    times = np.arange(30) / 10.0
    per_frame = run(objs, times)
    for o in objs:
        ids = ids_of(per_frame, o.gid)
        assert len(ids) == 30 and len(set(ids)) == 1, (o.gid, ids)
    assert sorted(per_frame[0][o.gid].track_id for o in objs) == [1, 2, 3]  # first frame: confirmed at once
    # velocity after 10 frames (1 s at 10 fps) within 10 % of the truth, in px/s
    tracker = ByteTracker()
    for t in times[:10]:
        tracks = tracker.update(frame_dets(objs, float(t))[0], float(t))
    for o in objs:
        tr = next(tr for tr in tracks if abs((tr.box_xyxy[0] + tr.box_xyxy[2]) / 2 - o.box(0.9)[0] - o.w / 2) < 5)
        speed = math.hypot(o.vx, o.vy)
        err = math.hypot(tr.velocity_pxps[0] - o.vx, tr.velocity_pxps[1] - o.vy)
        assert err <= 0.1 * speed + 1e-6, (o.gid, tr.velocity_pxps, (o.vx, o.vy))


def test_crossing_paths_keep_ids():
    a = Obj("a", 100, 200, 50, 100, vx=150)
    b = Obj("b", 500, 210, 40, 90, vx=-150)
    per_frame = run([a, b], np.arange(35) / 10.0)  # they pass each other at t = 1.33 s
    ida, idb = ids_of(per_frame, "a"), ids_of(per_frame, "b")
    assert len(set(ida)) == 1 and len(set(idb)) == 1 and ida[0] != idb[0], (ida, idb)
    assert len(ida) >= 33 and len(idb) >= 33


def test_occluded_for_0_4_s_keeps_id():
    occluded = Obj("a", 100, 200, 50, 100, vx=80, visible=lambda t: not (1.0 <= t < 1.4 - 1e-9))
    other = Obj("b", 500, 100, 40, 40)
    times = np.arange(30) / 10.0
    per_frame = run([occluded, other], times)
    ids = ids_of(per_frame, "a")
    assert all("a" not in per_frame[k] for k in range(10, 14))
    assert len(ids) == 26 and len(set(ids)) == 1, ids
    # coasting tracks are reported with report_lost, predicted box moving on, score 0
    tracker = ByteTracker(report_lost=True)
    for t in times[:13]:
        tracks = tracker.update(frame_dets([occluded, other], float(t))[0], float(t))
    coasting = [tr for tr in tracks if tr.frames_since_update]
    assert len(coasting) == 1 and coasting[0].frames_since_update == 3 and coasting[0].score == 0.0
    assert (coasting[0].box_xyxy[0] + coasting[0].box_xyxy[2]) / 2 == pytest.approx(100 + 80 * 1.2, abs=4)


def test_lost_longer_than_max_lost_s_gets_a_new_id():
    obj = Obj("a", 100, 200, 50, 100, visible=lambda t: not (1.0 <= t < 2.5))
    ids = ids_of(run([obj], np.arange(40) / 10.0, ByteTracker(max_lost_s=1.0)), "a")
    assert ids[0] == 1 and ids[-1] == 2 and len(set(ids)) == 2
    ids = ids_of(run([obj], np.arange(40) / 10.0, ByteTracker(max_lost_s=2.0)), "a")
    assert set(ids) == {1}


def test_low_score_detections_keep_a_track_alive():
    """The ByteTrack point: a detection whose score drops to 0.3 (occlusion, blur) still extends its track."""
    obj = Obj("a", 100, 200, 50, 100, vx=100, score=lambda t: 0.3 if 1.0 <= t < 1.6 else 0.9)
    times = np.arange(30) / 10.0
    per_frame = run([obj], times)
    ids = ids_of(per_frame, "a")
    assert len(ids) == 30 and set(ids) == {1}
    assert per_frame[12]["a"].score == pytest.approx(0.3)
    # without the second association (low_score = high_score) the track is not extended in those frames
    per_frame = run([obj], times, ByteTracker(low_score=0.5))
    assert all("a" not in per_frame[k] for k in range(10, 16))


def test_low_score_detection_does_not_start_tracks_or_revive_lost_ones():
    obj = Obj("a", 100, 200, 50, 100, score=lambda t: 0.3)
    assert all(not f for f in run([obj], np.arange(10) / 10.0))


def test_single_frame_false_positives_do_not_become_tracks():
    obj = Obj("a", 100, 200, 50, 100, vx=50)
    # a confident false positive in frames 3, 6, 9 at different places (not in the first frame)
    extra = {k: [([300 + 20 * k, 50, 340 + 20 * k, 90], 0.95, 0, None)] for k in (3, 6, 9)}
    tracker = ByteTracker()
    per_frame = run([obj], np.arange(12) / 10.0, tracker, extra)
    assert ids_of(per_frame, "a") == [1] * 12
    tracker2 = ByteTracker()
    for k, t in enumerate(np.arange(12) / 10.0):
        tracks = tracker2.update(frame_dets([obj], float(t), extra.get(k, ()))[0], float(t))
        assert [tr.track_id for tr in tracks] == [1]
    # a false positive seen twice in a row is confirmed (min_hits=2); with min_hits=3 it is not
    extra2 = {k: [([300, 50, 340, 90], 0.95, 0, "fp")] for k in (3, 4)}
    assert "fp" in run([obj], np.arange(6) / 10.0, ByteTracker(), extra2)[4]
    assert "fp" not in run([obj], np.arange(6) / 10.0, ByteTracker(min_hits=3), extra2)[4]


def test_class_aware_matching():
    car = Obj("car", 100, 200, 50, 100, label=0)
    ped = Obj("ped", 100, 200, 50, 100, label=1, visible=lambda t: t >= 0.35)
    car.visible = lambda t: t < 0.35  # 4 frames of car, then 6 of pedestrian at the same place
    times = np.arange(10) / 10.0
    per_frame = run([car, ped], times, ByteTracker(class_aware=True))
    assert set(ids_of(per_frame, "car")) == {1}
    ped_ids = ids_of(per_frame, "ped")
    assert set(ped_ids) == {2} and per_frame[-1]["ped"].label == 1
    # class-agnostic: the same track continues (label follows the accumulated scores)
    per_frame = run([car, ped], times, ByteTracker(class_aware=False))
    assert set(ids_of(per_frame, "car")) | set(ids_of(per_frame, "ped")) == {1}
    assert per_frame[-1]["ped"].label == 1


def test_same_ids_at_10_fps_25_fps_and_irregular_timestamps():
    """Fast boxes (40 px per frame at 10 fps): only a time-aware filter keeps them at every frame rate."""
    objs = [
        Obj("a", 80, 100, 60, 60, vx=400),
        Obj("b", 600, 180, 60, 60, vx=-350, vy=20),
        Obj("c", 300, 300, 40, 80, vx=120, vy=-60, label=2),
    ]
    rng = np.random.default_rng(3)
    irregular = np.cumsum(np.r_[0.0, rng.uniform(0.03, 0.12, 20)])
    irregular[10:] += 0.25  # a stall: a live camera dropped frames
    results = []
    for times in (np.arange(16) / 10.0, np.arange(40) / 25.0, irregular[irregular <= 1.55]):
        per_frame = run(objs, times)
        mapping = {}
        for o in objs:
            ids = ids_of(per_frame, o.gid)
            assert len(ids) == len(times) and len(set(ids)) == 1, (o.gid, ids)
            mapping[o.gid] = ids[0]
        results.append(mapping)
    assert results[0] == results[1] == results[2]


def test_small_fast_box_keeps_its_id():
    """A distant pedestrian 4 px wide moving 3 px per frame, in whole pixels, its visible extent halved for two
    frames: the plain IoU of consecutive boxes is about 0.15, below every gate; the padded-IoU stage keeps it."""

    def ids(tracker: ByteTracker) -> list[int]:
        out = []
        for k in range(20):
            t = k / 10.0
            x = 100 + 30 * t
            box = np.round([x, 50, x + 4, 60])
            if k in (8, 9):
                box[2] -= 2  # its right half hidden
            dets = Detections(np.array([box], np.float32), np.array([0.9], np.float32), np.array([1]))
            out += [tr.track_id for tr in tracker.update(dets, t)]
        return out

    assert ids(ByteTracker()) == [1] * 20
    assert len(ids(ByteTracker(pad_px=0.0))) < 5  # lost after the first frames, never confirmed again


def _van_boxed_two_ways(k: int) -> list[list[float]]:
    """A van 100 x 124 px drifting right, which the detector boxes whole, by its lower body (IoU 0.48 with the
    whole box, so NMS keeps both) or both: both in frames 0-4, then one or the other, alternating."""
    x = 384 + 2 * k
    whole, lower = [x, 98, x + 100, 222], [x + 14, 149, x + 96, 221]
    if k < 5:
        return [whole, lower]
    return [whole] if k % 2 else [lower]


def test_one_object_boxed_two_ways_keeps_one_id():
    def ids(tracker: ByteTracker) -> list[list[int]]:
        out = []
        for k in range(20):
            boxes = np.array(_van_boxed_two_ways(k), np.float32)
            dets = Detections(boxes, np.full(len(boxes), 0.8, np.float32), np.zeros(len(boxes), int))
            out.append([tr.track_id for tr in tracker.update(dets, k / 10.0)])
        return out

    merged = ids(ByteTracker())
    assert merged[:5] == [[1, 2]] * 5  # two boxes, two tracks while both come in
    assert all(frame == [1] for frame in merged[5:]), merged  # then one track, under the older id
    # without the merge the two tracks take turns on the van: a new id every frame
    alternating = ids(ByteTracker(merge_duplicates=False))
    assert {tuple(f) for f in alternating[5:]} == {(1,), (2,)}


def test_distinct_objects_are_not_merged_as_duplicates():
    """Overlapping objects that are not one: two small distant cars in neighbouring lanes (one hidden behind
    the other for 0.3 s), two pedestrians at the same distance walking past each other (one hidden), and a
    car seen inside a nearer one's box, moving with it (hidden for 0.3 s): ground lines 70 px apart."""
    far_a = Obj("far_a", 300, 150, 12, 10)
    far_b = Obj("far_b", 302, 150, 8, 8, visible=lambda t: not (1.0 <= t < 1.3))
    ped_a = Obj("ped_a", 200, 300, 40, 100, vx=60, label=1)  # level with ped_b at t = 2 s
    ped_b = Obj("ped_b", 440, 302, 40, 100, vx=-60, label=1, visible=lambda t: not (1.8 <= t < 2.3))
    near = Obj("near", 280, 225, 160, 150, vx=30, label=2)
    behind = Obj("behind", 290, 210, 60, 40, vx=30, label=2, visible=lambda t: not (1.0 <= t < 1.3))
    per_frame = run([far_a, far_b, ped_a, ped_b, near, behind], np.arange(40) / 10.0)
    gids = ("far_a", "far_b", "ped_a", "ped_b", "near", "behind")
    for gid in gids:
        assert len(set(ids_of(per_frame, gid))) == 1, (gid, ids_of(per_frame, gid))
    assert len({ids_of(per_frame, gid)[0] for gid in gids}) == len(gids)


def test_nan_rows_are_dropped():
    objs = [Obj("a", 100, 200, 50, 100, vx=50), Obj("b", 400, 200, 50, 100)]
    times = np.arange(10) / 10.0
    clean = ByteTracker()
    dirty = ByteTracker()
    for t in times:
        dets, _ = frame_dets(objs, float(t))
        boxes = np.concatenate([dets.boxes_xyxy, [[np.nan, 1, 2, 3], [1, 1, 2, 2], [0, 0, np.inf, 5]]])
        scores = np.concatenate([dets.scores, [0.9, np.nan, 0.9]])
        noisy = Detections(boxes.astype(np.float32), scores.astype(np.float32), np.zeros(len(scores), np.int32))
        want, got = clean.update(dets, float(t)), dirty.update(noisy, float(t))
        assert [tr.track_id for tr in got] == [tr.track_id for tr in want]
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a.box_xyxy, b.box_xyxy)
    assert dirty.dropped_rows == 3 * len(times)


def test_empty_frames_and_zero_size_boxes():
    tracker = ByteTracker()
    assert tracker.update(Detections.empty(), 0.0) == []
    obj = Obj("a", 100, 200, 50, 100, vx=50, visible=lambda t: not (0.5 <= t < 0.8))
    per_frame = run([obj], np.arange(15) / 10.0)
    assert set(ids_of(per_frame, "a")) == {1} and all(not per_frame[k] for k in (5, 6, 7))
    # zero-width and zero-height boxes: no error, valid tracks out
    tracker = ByteTracker(min_hits=1)
    for t in np.arange(5) / 10.0:
        dets = Detections(
            np.array([[10, 10, 10, 30], [50, 50, 80, 50], [5, 5, 5, 5]], np.float32), [0.9] * 3, [0, 0, 0]
        )
        tracks = tracker.update(dets, float(t))
        for tr in tracks:
            assert np.isfinite(tr.box_xyxy).all() and np.isfinite(tr.velocity_pxps).all()


def test_timestamps_going_backwards_or_repeating_do_not_raise():
    objs = [Obj("a", 100, 200, 50, 100, vx=50)]
    tracker = ByteTracker()
    stamps = [0.0, 0.1, 0.2, 0.2, 0.15, 0.3, 0.4, float("nan"), 0.5]  # repeat, jitter back, NaN
    ids = []
    for t in stamps:
        dets, _ = frame_dets(objs, t if math.isfinite(t) else 0.45)
        ids += [tr.track_id for tr in tracker.update(dets, t)]
    assert set(ids) == {1}
    # a jump back beyond max_backward_s starts a new segment: tracks dropped, ids never reused
    tracks = tracker.update(frame_dets(objs, 0.0)[0], 0.0)
    assert [tr.track_id for tr in tracks] == [2]
    tracker.reset()
    tracks = tracker.update(frame_dets(objs, 0.0)[0], 0.0)
    assert [tr.track_id for tr in tracks] == [3]


def test_kalman_prediction_is_time_aware():
    kf = BoxKalman(np.array([0.0, 0.0, 10.0, 20.0]))
    kf.mean[4:6] = [100.0, -50.0]
    kf.predict(0.25)
    np.testing.assert_allclose(kf.box_xyxy(), [25.0, -12.5, 35.0, 7.5])
    cov1 = kf.cov.copy()
    kf2 = BoxKalman(np.array([0.0, 0.0, 10.0, 20.0]))
    for _ in range(5):
        kf2.predict(0.05)
    assert np.all(np.diag(kf2.cov) > 0)
    # five steps of 0.05 s add the same process noise as one of 0.25 s (to first order, for the positions)
    assert np.diag(kf2.cov)[:2] == pytest.approx(np.diag(cov1)[:2], rel=0.05)


def test_constructor_checks():
    with pytest.raises(ValueError):
        ByteTracker(high_score=0.7, new_track_score=0.6)
    with pytest.raises(ValueError):
        ByteTracker(match_iou=0.0)
    with pytest.raises(ValueError):
        ByteTracker(min_hits=0)
    with pytest.raises(ValueError):
        ByteTracker(pad_px=-1.0)
