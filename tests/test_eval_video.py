"""Temporal stability: hand-made sequences with known mask overlap, jitter and dropouts."""

from __future__ import annotations

import numpy as np
import pytest

from perception.eval.video import TemporalStability

CLASSES = ("background", "drivable", "lane")


def seg_with_road(top: int) -> np.ndarray:
    m = np.zeros((10, 10), np.uint8)
    m[top:, :] = 1
    return m


def test_still_scene_is_perfectly_stable():
    ts = TemporalStability(CLASSES)
    box = np.array([[10, 10, 30, 40]], np.float32)
    for _ in range(5):
        ts.add(seg_with_road(5), box, [0])
    out = ts.compute()
    assert out["video.mask_iou.drivable"] == 1.0
    assert np.isnan(out["video.mask_iou.lane"])  # never predicted: no evidence either way
    assert out["video.box_jitter"] == 0.0 and out["video.box_triples"] == 3
    assert out["video.box_dropouts"] == 0.0


def test_mask_iou_sums_over_pairs():
    ts = TemporalStability(CLASSES)
    for top in (5, 6, 5):  # 50 and 40 road pixels: each pair 40 / 50
        ts.add(seg_with_road(top), np.zeros((0, 4)), [])
    assert ts.compute()["video.mask_iou.drivable"] == pytest.approx(80 / 100)


def test_constant_motion_is_not_jitter_but_shaking_is():
    ts = TemporalStability(CLASSES)
    for t in range(6):  # moving right 3 px a frame: second difference 0
        ts.add(None, np.array([[10 + 3 * t, 10, 30 + 3 * t, 25]], np.float32), [0])
    assert ts.compute()["video.box_jitter"] == pytest.approx(0.0)
    ts = TemporalStability(CLASSES)
    for t in range(3):  # x shifts +2, -2, +2: second difference on x1, x2 = 8, on y = 0 -> mean 4 px
        d = 2 if t % 2 == 0 else -2
        ts.add(None, np.array([[10 + d, 10, 30 + d, 25]], np.float32), [0])
    assert ts.compute()["video.box_jitter"] == pytest.approx(4 / np.hypot(20, 15))


def test_dropout_counts_an_object_missing_for_one_frame_and_clips_reset():
    ts = TemporalStability(CLASSES)
    box = np.array([[10, 10, 30, 40]], np.float32)
    ts.add(None, box, [0])
    ts.add(None, np.zeros((0, 4)), [])
    ts.add(None, box, [0])
    assert ts.compute()["video.box_dropouts"] == 1.0
    ts.start_clip()
    ts.add(None, box, [0])
    ts.add(None, box, [0])  # only two frames of the new clip: no triple yet
    assert ts.compute()["video.box_triples"] == 0


def test_other_class_does_not_link_and_size_change_is_an_error():
    ts = TemporalStability(CLASSES)
    box = np.array([[10, 10, 30, 40]], np.float32)
    for label in (0, 1, 0):
        ts.add(None, box, [label])
    assert ts.compute()["video.box_triples"] == 0
    ts.add(seg_with_road(5), box, [0])
    with pytest.raises(ValueError, match="frame size changed"):
        ts.add(np.zeros((4, 4), np.uint8), box, [0])
