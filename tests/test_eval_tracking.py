"""CLEAR-MOT and identity metrics: hand-computed cases, exact merging, py-motmetrics on random sequences."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from perception.eval.tracking import (
    DetectionNoise,
    MotAccumulator,
    MotResult,
    evaluate_tracker_on_clips,
    noisy_detections,
    track_clip,
)
from perception.fusion.tracking import ByteTracker

A = [0, 0, 10, 10]
B = [20, 0, 30, 10]
C = [100, 100, 110, 110]
NONE = np.zeros((0, 4))


def test_hand_computed_switch_fp_fn_fragmentation():
    acc = MotAccumulator()
    acc.update([1, 2], [A, B], [10, 20], [A, B])  # 2 TP
    acc.update([1, 2], [A, B], [10], [A])  # GT 2 missed: FN
    acc.update([1, 2], [A, B], [10, 21], [A, B])  # GT 2 back with another id: IDSW and a fragmentation
    acc.update([1], [A], [10, 30], [[0, 0, 10, 6], C])  # IoU 0.6 match; track 30 on nothing: FP
    r = acc.result()
    assert (r.num_frames, r.num_gt, r.num_hyp, r.tp, r.fp, r.fn, r.idsw, r.frag) == (4, 7, 7, 6, 1, 1, 1, 1)
    assert r.mota == pytest.approx(1 - 3 / 7, abs=1e-15)
    assert r.motp == pytest.approx(5.6 / 6, abs=1e-15)
    # identity: GT 1 <-> 10 for 4 frames, GT 2 <-> 20 or 21 for 1 frame: IDTP 5 of 7 on both sides
    assert (r.idtp, r.idfp, r.idfn) == (5, 2, 2)
    assert r.idf1 == pytest.approx(5 / 7, abs=1e-15) and r.idp == r.idr == pytest.approx(5 / 7, abs=1e-15)
    assert r.idsw_per_100 == pytest.approx(100 / 6)
    d = r.to_dict()
    assert d["mota"] == r.mota and d["idsw"] == 1 and d["num_sequences"] == 1
    assert isinstance(r, MotResult)
    with pytest.raises(AttributeError):
        r.tp = 0  # frozen


def test_identity_matching_maximises_overlapping_frames_not_pairs():
    acc = MotAccumulator()
    for _ in range(5):
        acc.update([1], [A], [10], [A])
    acc.update([1, 2], [A, B], [20, 10], [A, B])  # one frame each of (1, 20) and (2, 10)
    r = acc.result()
    # (1, 10) for 5 frames beats (1, 20) + (2, 10) for 1 frame each
    assert (r.idtp, r.idfp, r.idfn) == (5, 2, 2) and r.idf1 == pytest.approx(10 / 14)


def test_fragmentation_counts_interruptions_not_absence():
    acc = MotAccumulator()
    acc.update([1], [A], [5], [A])
    acc.update([], NONE, [], NONE)  # GT absent: no interruption
    acc.update([1], [A], [5], [A])
    acc.update([1], [A], [], NONE)  # missed
    acc.update([1], [A], [], NONE)  # missed (same gap)
    acc.update([1], [A], [5], [A])  # tracked again: one fragmentation
    acc.update([1], [A], [], NONE)  # missed at the end: not a fragmentation (never tracked again)
    r = acc.result()
    assert (r.frag, r.idsw, r.tp, r.fn) == (1, 0, 3, 3)


def test_previous_correspondence_is_kept_while_valid():
    g2 = [1, 0, 11, 10]  # IoU(A, g2) = 9 / 11
    acc = MotAccumulator()
    acc.update([1], [A], [7], [A])
    # Hungarian alone would pair GT 1 with track 8 (both at A) and GT 2 with 7: a switch. The kept
    # correspondence (1, 7) is still valid, so no switch.
    acc.update([1, 2], [A, g2], [7, 8], [g2, A])
    r = acc.result()
    assert (r.tp, r.idsw) == (3, 0)
    assert r.motp == pytest.approx((1 + 2 * 9 / 11) / 3)


def test_carry_over_previous_frame_vs_last_match():
    """After a missed frame TrackEval (previous_frame) re-solves, py-motmetrics (last_match) keeps the old pair."""
    g2 = [1, 0, 11, 10]
    frames = [([1], [A], [7], [A]), ([1], [A], [], NONE), ([1, 2], [A, g2], [7, 8], [g2, A])]
    results = {}
    for mode in ("previous_frame", "last_match"):
        acc = MotAccumulator(carry_over=mode)
        for f in frames:
            acc.update(*f)
        results[mode] = acc.result()
    assert results["previous_frame"].idsw == 1 and results["last_match"].idsw == 0
    with pytest.raises(ValueError):
        MotAccumulator(carry_over="nearest")


def test_ignore_regions():
    acc = MotAccumulator()
    # GT 2 is ignored: the track on it is neither TP nor FP, and the missed ignored GT 3 is no FN
    acc.update([1, 2, 3], [A, B, C], [10, 20, 30], [A, B, [200, 200, 210, 210]], gt_ignore=[False, True, True])
    r = acc.result()
    assert (r.num_gt, r.tp, r.fp, r.fn, r.num_ignored_hyp, r.num_hyp) == (1, 1, 1, 0, 1, 2)
    assert r.mota == 0.0
    assert (r.idtp, r.idfp, r.idfn) == (1, 1, 0)
    # an ignored box does not take a track that matches a counted box better
    acc = MotAccumulator()
    acc.update([1, 2], [A, [0, 0, 10, 9]], [10], [A], gt_ignore=[False, True])
    r = acc.result()
    assert (r.tp, r.fp, r.fn, r.num_ignored_hyp) == (1, 0, 0, 0)


def test_iou_exactly_at_threshold_matches():
    acc = MotAccumulator()
    acc.update([1], [[0, 0, 10, 10]], [1], [[0, 0, 10, 5]])  # IoU exactly 0.5
    acc.update([1], [[0, 0, 10, 10]], [1], [[0, 0, 10, 4.9]])  # IoU 0.49
    r = acc.result()
    assert (r.tp, r.fn, r.fp) == (1, 1, 1)


def test_empty_and_invalid_input():
    acc = MotAccumulator()
    r = acc.result()
    assert r.num_frames == 0 and math.isnan(r.mota) and math.isnan(r.idf1) and math.isnan(r.motp)
    acc.update([], NONE, [], NONE)
    acc.update([], [], [3], [A])
    r = acc.result()
    assert (r.num_frames, r.fp, r.num_gt) == (2, 1, 0) and math.isnan(r.mota) and r.idf1 == 0.0
    with pytest.raises(ValueError, match="duplicate"):
        acc.update([1, 1], [A, B], [], NONE)
    with pytest.raises(ValueError):
        acc.update([1], [A, B], [], NONE)
    with pytest.raises(ValueError):
        acc.update([1], [[0, 0, np.nan, 1]], [], NONE)
    with pytest.raises(ValueError):
        MotAccumulator(0.5).merge(MotAccumulator(0.7))


def random_sequence(rng: np.random.Generator, n_frames: int = 30, id_offset: int = 0):
    """Frames (gt_ids, gt_boxes, hyp_ids, hyp_boxes) of a random scene with a noisy, switching tracker."""
    n_obj = int(rng.integers(3, 8))
    pos = rng.uniform(0, 200, (n_obj, 2))
    size = rng.uniform(10, 40, (n_obj, 2))
    vel = rng.normal(0, 3, (n_obj, 2))
    start = rng.integers(0, n_frames // 2, n_obj)
    end = rng.integers(n_frames // 2, n_frames + 1, n_obj)
    hyp_of = {g: 1000 + g for g in range(n_obj)}
    next_hyp = 2000
    frames = []
    for t in range(n_frames):
        gi, gb, hi, hb = [], [], [], []
        for g in range(n_obj):
            if not start[g] <= t < end[g]:
                continue
            xy = pos[g] + vel[g] * t
            box = np.r_[xy, xy + size[g]]
            gi.append(g + id_offset)
            gb.append(box)
            if rng.random() < 0.05:  # the tracker switches identity
                hyp_of[g] = next_hyp
                next_hyp += 1
            if rng.random() < 0.85:
                hi.append(hyp_of[g] + id_offset)
                hb.append(box + rng.normal(0, 0.12, 4) * np.tile(size[g], 2))
        for _ in range(int(rng.poisson(0.4))):
            xy = rng.uniform(0, 200, 2)
            hi.append(next_hyp + id_offset)
            next_hyp += 1
            hb.append(np.r_[xy, xy + rng.uniform(10, 40, 2)])
        if len(hi) >= 2 and rng.random() < 0.05:  # two hypothesis ids swap
            hi[0], hi[1] = hi[1], hi[0]
        hb = [np.r_[np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])] for b in hb]
        frames.append((gi, np.array(gb).reshape(-1, 4), hi, np.array(hb).reshape(-1, 4)))
    return frames


def _same(a: MotResult, b: MotResult) -> None:
    da, db = a.to_dict(), b.to_dict()
    for k in da:
        if isinstance(da[k], int):
            assert da[k] == db[k], k
        else:
            assert da[k] == pytest.approx(db[k], rel=1e-12, abs=1e-12, nan_ok=True), k


def test_merge_equals_one_accumulator_over_the_concatenated_sequence():
    rng = np.random.default_rng(5)
    seq1, seq2 = random_sequence(rng), random_sequence(rng, id_offset=100_000)
    acc1, acc2, whole = MotAccumulator(), MotAccumulator(), MotAccumulator()
    for f in seq1:
        acc1.update(*f)
        whole.update(*f)
    for f in seq2:
        acc2.update(*f)
        whole.update(*f)
    merged = acc1.merge(acc2)
    r = merged.result()
    # disjoint ids: the one long sequence's identity matching splits into the two sequences' matchings
    _same(r, dataclasses.replace(whole.result(), num_sequences=2))
    assert r.num_sequences == 2
    assert r.tp == acc1.result().tp + acc2.result().tp and r.idtp == acc1.result().idtp + acc2.result().idtp
    # the inputs are unchanged, and new_sequence() on one accumulator gives the same as merging
    _same(acc1.merge(acc2).result(), r)
    seq2_same_ids = random_sequence(np.random.default_rng(6))
    a, b, c = MotAccumulator(), MotAccumulator(), MotAccumulator()
    for f in seq1:
        a.update(*f)
        c.update(*f)
    c.new_sequence()
    for f in seq2_same_ids:
        b.update(*f)
        c.update(*f)
    _same(a.merge(b).result(), c.result())


def iou_distance(gt: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """1 - IoU, NaN above 0.5: what ``motmetrics.distances.iou_matrix(max_iou=0.5)`` computes (that function
    calls ``np.asfarray``, gone in numpy 2), written out pair by pair in plain Python floats."""
    out = np.full((len(gt), len(hyp)), np.nan)
    for i, (ax1, ay1, ax2, ay2) in enumerate(gt.tolist()):
        for j, (bx1, by1, bx2, by2) in enumerate(hyp.tolist()):
            inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
            union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
            d = 1.0 - inter / union
            if d <= 0.5:
                out[i, j] = d
    return out


def test_matches_py_motmetrics_on_random_sequences():
    mm = pytest.importorskip("motmetrics")
    rng = np.random.default_rng(11)
    mh = mm.metrics.create()
    for _ in range(20):
        frames = random_sequence(rng)
        ours = MotAccumulator(carry_over="last_match")
        ref = mm.MOTAccumulator(auto_id=True)
        for gi, gb, hi, hb in frames:
            ours.update(gi, gb, hi, hb)
            ref.update(gi, hi, iou_distance(gb, hb))
        want = mh.compute(
            ref,
            metrics=["mota", "motp", "idf1", "idp", "idr", "num_switches", "num_false_positives", "num_misses"]
            + ["num_fragmentations", "num_objects"],
            name="seq",
        ).iloc[0]
        r = ours.result()
        assert r.idsw == want["num_switches"] and r.fp == want["num_false_positives"] and r.fn == want["num_misses"]
        assert r.num_gt == want["num_objects"] and r.frag == want["num_fragmentations"]
        assert r.mota == pytest.approx(want["mota"], abs=1e-12)
        assert r.idf1 == pytest.approx(want["idf1"], abs=1e-12)
        assert r.idp == pytest.approx(want["idp"], abs=1e-12) and r.idr == pytest.approx(want["idr"], abs=1e-12)
        assert 1 - r.motp == pytest.approx(want["motp"], abs=1e-9)


def test_noisy_detections_and_track_clip_on_a_tiny_scene():
    rng = np.random.default_rng(0)
    boxes = np.array([[10, 10, 50, 90], [100, 100, 100, 120]], np.float32)
    dets = noisy_detections(boxes, np.array([0, 1]), (200, 300), rng, DetectionNoise(drop_p=0.0))
    assert len(dets) >= 2 and (dets.boxes_xyxy[:, 2:] >= dets.boxes_xyxy[:, :2]).all()
    assert dets.boxes_xyxy.max() <= 300 and dets.scores.min() >= 0.3 and dets.scores.max() < 0.95

    def clip(n=20):
        for t in range(n):
            b = np.array([[10 + 3 * t, 10, 50 + 3 * t, 90], [200 - 2 * t, 50, 240 - 2 * t, 80]], np.float32)
            yield SimpleNamespace(
                boxes=b,
                labels=np.array([0, 1]),
                ignore=np.array([False, False]),
                meta={"objects": [{"track_id": 7}, {"track_id": 9}], "timestamp_s": t / 10},
                image=np.zeros((200, 300, 3), np.uint8),
            )

    noise = DetectionNoise(drop_p=0.0, score_range=(0.7, 0.95), false_positives_per_frame=0.0)
    r = track_clip(clip(), ByteTracker(), np.random.default_rng(1), noise).result()
    assert (r.tp, r.fp, r.fn, r.idsw) == (40, 0, 0, 0) and r.idf1 == 1.0
    total, per_clip = evaluate_tracker_on_clips([clip(), clip()], ByteTracker, noise)
    assert len(per_clip) == 2 and total.num_sequences == 2 and total.tp == 80
