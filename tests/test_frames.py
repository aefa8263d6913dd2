"""Typed stage values: shape/dtype checks, read-only arrays, Letterbox geometry (round trips, masks, ROI)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.frames import Detections, Frame, FrameResult, Letterbox, SegMap

# --------------------------------------------------------------------------------------------------------
# Helpers


def make_letterbox(frame_hw, input_hw, roi=None) -> Letterbox:
    """Centre letterbox computed here by hand (independent of perception.preprocess)."""
    fh, fw = frame_hw
    ih, iw = input_hw
    x, y, w, h = roi if roi is not None else (0, 0, fw, fh)
    scale = min(ih / h, iw / w)
    nw, nh = min(iw, round(w * scale)), min(ih, round(h * scale))
    return Letterbox(frame_hw, input_hw, (x, y, w, h), scale, (iw - nw) // 2, (ih - nh) // 2)


# 960x540 frame → 384x640 input: scale 2/3, content 640x360 at pad_y = 12.
LB_960 = Letterbox((540, 960), (384, 640), (0, 0, 960, 540), 2 / 3, 0, 12)


def dets(n: int, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(1, 50, (n, 2))
    return Detections(np.concatenate([xy, xy + wh], 1), rng.random(n), rng.integers(0, 5, n))


# --------------------------------------------------------------------------------------------------------
# Frame


def test_frame_accepts_uint8_bgr_and_reports_size():
    f = Frame(3, 0.1, np.zeros((4, 5, 3), np.uint8), "cam")
    assert f.size_hw == (4, 5)
    assert f.index == 3 and f.source == "cam"


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 5, 3), np.float32),  # wrong dtype
        np.zeros((4, 5, 3), np.uint16),
        np.zeros((4, 5), np.uint8),  # grey, wrong ndim
        np.zeros((4, 5, 4), np.uint8),  # BGRA
        np.zeros((1, 4, 5, 3), np.uint8),  # batched
        np.zeros((0, 5, 3), np.uint8),  # empty
        np.zeros((4, 0, 3), np.uint8),
        [[[0, 0, 0]]],  # not an ndarray
    ],
    ids=["float32", "uint16", "2d", "4ch", "4d", "zero-h", "zero-w", "list"],
)
def test_frame_rejects_bad_images(image):
    with pytest.raises(ValueError, match="Frame.image"):
        Frame(0, 0.0, image)


def test_frame_image_read_only_but_callers_array_untouched():
    image = np.zeros((4, 5, 3), np.uint8)
    f = Frame(0, 0.0, image)
    assert not f.image.flags.writeable
    assert image.flags.writeable  # the caller's array is not made read-only; a view is flagged
    assert np.shares_memory(f.image, image)
    with pytest.raises(ValueError):
        f.image[0, 0, 0] = 1
    image[0, 0, 0] = 7  # the caller can still write its own array
    assert f.image[0, 0, 0] == 7


def test_frame_accepts_read_only_image():
    image = np.zeros((4, 5, 3), np.uint8)
    image.flags.writeable = False
    assert Frame(0, 0.0, image).image is image


# --------------------------------------------------------------------------------------------------------
# Detections


def test_detections_converts_dtypes_and_shapes():
    d = Detections([[0, 1, 2, 3]], [0.5], [2])
    assert d.boxes_xyxy.dtype == np.float32 and d.boxes_xyxy.shape == (1, 4)
    assert d.scores.dtype == np.float32 and d.scores.shape == (1,)
    assert d.labels.dtype == np.int32 and d.labels.shape == (1,)
    assert len(d) == 1


def test_detections_integral_float_labels_accepted():
    d = Detections(np.zeros((2, 4)), [0.1, 0.2], np.array([1.0, 3.0]))
    assert d.labels.dtype == np.int32
    np.testing.assert_array_equal(d.labels, [1, 3])


def test_detections_non_integer_labels_rejected():
    with pytest.raises(ValueError, match="integer class ids"):
        Detections(np.zeros((2, 4)), [0.1, 0.2], np.array([1.0, 2.5]))


@pytest.mark.parametrize(
    "boxes",
    [np.zeros((2, 5)), np.zeros((2, 4, 1)), np.zeros(8)],
    ids=["5-columns", "3d", "flat"],
)
def test_detections_rejects_bad_box_shape(boxes):
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        Detections(boxes, np.zeros(2), np.zeros(2, np.int32))


@pytest.mark.parametrize(
    "n_scores, n_labels",
    [(2, 3), (3, 2), (4, 3), (0, 3)],
)
def test_detections_rejects_mismatched_n(n_scores, n_labels):
    with pytest.raises(ValueError, match="N=3"):
        Detections(np.zeros((3, 4)), np.zeros(n_scores), np.zeros(n_labels, np.int32))


@pytest.mark.parametrize("box", [[5, 0, 4, 1], [0, 5, 1, 4]], ids=["x2<x1", "y2<y1"])
def test_detections_rejects_inverted_boxes(box):
    with pytest.raises(ValueError, match="x1 <= x2"):
        Detections(np.array([[0, 0, 1, 1], box], np.float32), [0.5, 0.5], [0, 0])


def test_detections_degenerate_box_allowed():
    d = Detections([[3, 3, 3, 3]], [0.5], [0])
    assert len(d) == 1


@pytest.mark.parametrize(
    "boxes",
    [np.zeros(0), np.zeros((0, 4)), [], np.zeros((0,), np.float64)],
    ids=["flat", "0x4", "list", "float64"],
)
def test_detections_empty_reshapes_to_0x4(boxes):
    d = Detections(boxes, [], [])
    assert d.boxes_xyxy.shape == (0, 4) and d.boxes_xyxy.dtype == np.float32
    assert d.scores.shape == (0,) and d.labels.shape == (0,) and d.labels.dtype == np.int32
    assert len(d) == 0


def test_detections_empty_classmethod():
    d = Detections.empty()
    assert len(d) == 0 and d.boxes_xyxy.shape == (0, 4)


def test_detections_arrays_read_only_callers_arrays_untouched():
    boxes = np.array([[0, 0, 1, 1], [1, 1, 2, 2]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    labels = np.array([1, 2], np.int32)
    d = Detections(boxes, scores, labels)
    for held, mine in ((d.boxes_xyxy, boxes), (d.scores, scores), (d.labels, labels)):
        assert not held.flags.writeable
        assert mine.flags.writeable
    # Same dtype: a read-only view, not a copy (labels may be copied by the int32 conversion).
    assert np.shares_memory(d.boxes_xyxy, boxes) and np.shares_memory(d.scores, scores)
    with pytest.raises(ValueError):
        d.scores[0] = 0.0


def test_detections_is_frozen():
    d = dets(2)
    with pytest.raises(AttributeError):
        d.scores = np.zeros(2)  # type: ignore[misc]


def test_select_with_bool_mask_and_index_array():
    d = dets(5, seed=3)
    mask = np.array([True, False, True, False, True])
    s = d.select(mask)
    assert len(s) == 3
    np.testing.assert_array_equal(s.boxes_xyxy, d.boxes_xyxy[mask])
    np.testing.assert_array_equal(s.scores, d.scores[mask])
    np.testing.assert_array_equal(s.labels, d.labels[mask])

    idx = np.array([4, 0])
    s = d.select(idx)
    np.testing.assert_array_equal(s.boxes_xyxy, d.boxes_xyxy[[4, 0]])
    np.testing.assert_array_equal(s.scores, d.scores[[4, 0]])
    np.testing.assert_array_equal(s.labels, d.labels[[4, 0]])

    assert len(d.select(np.zeros(5, bool))) == 0
    assert d.select(np.zeros(5, bool)).boxes_xyxy.shape == (0, 4)
    assert len(d.select(np.array([], np.int64))) == 0
    assert len(d) == 5  # the original is unchanged


def test_select_single_index_array_keeps_dims():
    d = dets(3)
    s = d.select(np.array([1]))
    assert s.boxes_xyxy.shape == (1, 4)


# --------------------------------------------------------------------------------------------------------
# SegMap


def test_segmap_checks():
    with pytest.raises(ValueError, match="uint8"):
        SegMap(np.zeros((4, 4), np.int32), ("a",))
    with pytest.raises(ValueError, match="uint8"):
        SegMap(np.zeros((4, 4, 1), np.uint8), ("a",))
    with pytest.raises(ValueError, match="empty"):
        SegMap(np.zeros((4, 4), np.uint8), ())
    ids = np.zeros((4, 4), np.uint8)
    s = SegMap(ids, ["a", "b"])  # type: ignore[arg-type]
    assert s.class_names == ("a", "b")
    assert not s.class_ids.flags.writeable and ids.flags.writeable


def test_area_fractions_without_letterbox():
    ids = np.zeros((10, 10), np.uint8)
    ids[:3] = 1  # 30 px
    ids[9, :5] = 2  # 5 px
    fr = SegMap(ids, ("bg", "road", "lane", "unused")).area_fractions()
    assert fr == pytest.approx({"bg": 0.65, "road": 0.30, "lane": 0.05, "unused": 0.0})
    assert sum(fr.values()) == pytest.approx(1.0)


def test_area_fractions_with_letterbox_excludes_padding():
    ids = np.zeros((384, 640), np.uint8)
    ids[:12] = 2  # top padding: must not count
    ids[-12:] = 2  # bottom padding
    ids[12 : 12 + 90] = 1  # a quarter of the 360 content rows
    fr = SegMap(ids, ("bg", "road", "lane")).area_fractions(LB_960)
    assert fr == pytest.approx({"bg": 0.75, "road": 0.25, "lane": 0.0})


def test_area_fractions_letterbox_size_mismatch_raises():
    with pytest.raises(ValueError, match="input_size"):
        SegMap(np.zeros((10, 10), np.uint8), ("bg",)).area_fractions(LB_960)


def test_area_fractions_class_id_out_of_range_raises():
    ids = np.zeros((4, 4), np.uint8)
    ids[0, 0] = 3
    with pytest.raises(ValueError, match="class id 3"):
        SegMap(ids, ("a", "b")).area_fractions()


def test_area_fractions_out_of_range_only_in_padding_is_ignored():
    ids = np.zeros((384, 640), np.uint8)
    ids[:12] = 9
    assert SegMap(ids, ("bg",)).area_fractions(LB_960) == {"bg": 1.0}


# --------------------------------------------------------------------------------------------------------
# FrameResult


def test_scene_result_checks_labels_and_copies_timings():
    timings = {"pre": 1.0}
    r = FrameResult(0, 0.0, (540, 960), dets(3), ("a", "b", "c", "d", "e"), None, LB_960, timings)
    timings["post"] = 2.0
    assert r.timings_ms == {"pre": 1.0}
    with pytest.raises(ValueError, match="label 4"):
        FrameResult(0, 0.0, (540, 960), Detections([[0, 0, 1, 1]], [1], [4]), ("a", "b"), None, LB_960)
    r = FrameResult(0, 0.0, (540, 960), Detections.empty(), (), None, LB_960)
    assert len(r.detections) == 0


def test_negative_labels_rejected():
    with pytest.raises(ValueError):
        FrameResult(0, 0.0, (540, 960), Detections([[0, 0, 1, 1]], [1], [-1]), ("a", "b"), None, LB_960)


# --------------------------------------------------------------------------------------------------------
# Letterbox


@pytest.mark.parametrize(
    "roi",
    [(0, 0, 0, 10), (0, 0, 10, 0), (-1, 0, 10, 10), (0, -1, 10, 10), (951, 0, 10, 10), (0, 531, 10, 10)],
)
def test_letterbox_invalid_roi_raises(roi):
    with pytest.raises(ValueError, match="roi_xywh"):
        Letterbox((540, 960), (384, 640), roi, 1.0, 0, 0)


def test_letterbox_bad_scale_raises():
    with pytest.raises(ValueError, match="scale"):
        Letterbox((540, 960), (384, 640), (0, 0, 960, 540), 0.0, 0, 0)


def test_letterbox_hand_computed_box():
    assert LB_960.content_hw == (360, 640)
    box = np.array([[150, 90, 300, 180]], np.float32)  # frame pixels
    np.testing.assert_allclose(LB_960.boxes_to_input(box), [[100, 72, 200, 132]], atol=1e-4)
    np.testing.assert_allclose(LB_960.boxes_to_frame([[100, 72, 200, 132]]), box, atol=1e-3)


def test_boxes_to_frame_does_not_modify_input_and_returns_float32():
    boxes = np.array([[100.0, 72.0, 200.0, 132.0]], np.float32)
    before = boxes.copy()
    out = LB_960.boxes_to_frame(boxes)
    assert out.dtype == np.float32 and out.shape == (1, 4)
    np.testing.assert_array_equal(boxes, before)
    assert not np.shares_memory(out, boxes)
    back = LB_960.boxes_to_input(out)
    np.testing.assert_array_equal(out, LB_960.boxes_to_frame(boxes))  # boxes_to_input didn't write into out
    assert back.dtype == np.float32
    assert LB_960.boxes_to_frame(np.zeros((0, 4))).shape == (0, 4)


def test_boxes_to_frame_clips_to_roi():
    roi = (100, 50, 400, 300)
    lb = make_letterbox((540, 960), (384, 640), roi)
    # A box reaching into the padding / outside the content on all sides.
    out = lb.boxes_to_frame(np.array([[-50, -50, 1000, 1000], [0, 0, 10, 10]], np.float32))
    x, y, w, h = roi
    np.testing.assert_allclose(out[0], [x, y, x + w, y + h])
    assert np.all(out[:, 0::2] >= x) and np.all(out[:, 0::2] <= x + w)
    assert np.all(out[:, 1::2] >= y) and np.all(out[:, 1::2] <= y + h)


frame_dims = st.integers(16, 2000)
input_dims = st.integers(1, 40).map(lambda k: 32 * k)


@st.composite
def geometries(draw):
    fh, fw = draw(frame_dims), draw(frame_dims)
    ih, iw = draw(input_dims), draw(input_dims)
    roi = None
    if draw(st.booleans()):
        w = draw(st.integers(1, fw))
        h = draw(st.integers(1, fh))
        roi = (draw(st.integers(0, fw - w)), draw(st.integers(0, fh - h)), w, h)
    return (fh, fw), (ih, iw), roi, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None)
@given(geometries())
def test_letterbox_round_trip(geom):
    frame_hw, input_hw, roi, seed = geom
    lb = make_letterbox(frame_hw, input_hw, roi)
    x, y, w, h = lb.roi_xywh
    rng = np.random.default_rng(seed)
    # Boxes inside the ROI (frame pixels) → input → frame: the same boxes.
    p = rng.uniform([x, y], [x + w, y + h], (20, 2, 2))
    boxes = np.concatenate([p.min(1), p.max(1)], 1).astype(np.float32)
    inp = lb.boxes_to_input(boxes)
    # float32 arithmetic: allow a few ulps of the largest coordinate on either side of the scale.
    frame_tol = 1e-4 + 4e-7 * (max(frame_hw) + max(input_hw) / lb.scale)
    input_tol = 1e-4 + 4e-7 * (max(frame_hw) * lb.scale + max(input_hw))
    np.testing.assert_allclose(lb.boxes_to_frame(inp), boxes, atol=frame_tol, rtol=0)
    # In the input they lie inside the content area.
    ch, cw = lb.content_hw
    slack = 1.0  # content size is rounded to whole pixels
    assert np.all(inp[:, 0::2] >= lb.pad_x - 1e-3) and np.all(inp[:, 0::2] <= lb.pad_x + cw + slack)
    assert np.all(inp[:, 1::2] >= lb.pad_y - 1e-3) and np.all(inp[:, 1::2] <= lb.pad_y + ch + slack)
    # The other way: boxes inside the content area (input pixels) → frame → input.
    q = rng.uniform([lb.pad_x, lb.pad_y], [lb.pad_x + w * lb.scale, lb.pad_y + h * lb.scale], (20, 2, 2))
    in_boxes = np.concatenate([q.min(1), q.max(1)], 1).astype(np.float32)
    frame_boxes = lb.boxes_to_frame(in_boxes)
    np.testing.assert_allclose(lb.boxes_to_input(frame_boxes), in_boxes, atol=input_tol, rtol=0)
    # The ROI corners map to the content corners.
    corners = lb.boxes_to_input(np.array([[x, y, x + w, y + h]], np.float32))[0]
    np.testing.assert_allclose(corners[:2], [lb.pad_x, lb.pad_y], atol=input_tol)
    np.testing.assert_allclose(corners[2:], [lb.pad_x + cw, lb.pad_y + ch], atol=0.5 + 1e-3)


def test_letterbox_scale_fits_input():
    lb = make_letterbox((1080, 1440), (384, 640))
    assert lb.scale == pytest.approx(384 / 1080)
    assert lb.pad_y == 0 and lb.pad_x == (640 - 512) // 2
    assert lb.content_hw == (384, 512)


def test_crop_content():
    lb = make_letterbox((1080, 1440), (384, 640))  # pads x by 64 on each side
    img = np.zeros((384, 640, 3), np.uint8)
    img[:, 64:576] = 200
    crop = lb.crop_content(img)
    assert crop.shape == (384, 512, 3)
    assert np.all(crop == 200)
    assert np.shares_memory(crop, img)  # a view
    assert LB_960.crop_content(np.zeros((384, 640), np.uint8)).shape == (360, 640)
    with pytest.raises(ValueError, match="input_size"):
        lb.crop_content(np.zeros((640, 384, 3), np.uint8))


def test_input_to_roi_shape_and_exact_ids():
    roi = (100, 50, 400, 300)
    lb = make_letterbox((540, 960), (384, 640), roi)
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (384, 640)).astype(np.uint8)
    mask[: lb.pad_y] = 9
    out = lb.input_to_roi(mask)
    assert out.shape == (300, 400) and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 1, 2, 3}  # nearest neighbour: no new ids, no padding
    colour = np.dstack([mask] * 3)
    assert lb.input_to_roi(colour).shape == (300, 400, 3)


def bbox_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box x1, y1, x2, y2 (pixel-edge coordinates) of the True pixels."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_mask_to_frame_hand_made_rectangle():
    mask = np.zeros((384, 640), np.uint8)
    mask[:12] = 5  # padding: must not leak into the frame
    mask[-12:] = 5
    mask[72:132, 100:200] = 3  # input rows 72..132 → frame rows 90..180; cols 100..200 → 150..300
    out = LB_960.mask_to_frame(mask)
    assert out.shape == (540, 960) and out.dtype == np.uint8
    assert not np.any(out == 5)
    x1, y1, x2, y2 = bbox_of(out == 3)
    np.testing.assert_allclose([x1, y1, x2, y2], [150, 90, 300, 180], atol=1)
    assert np.all(out[92:178, 152:298] == 3)
    assert (out == 3).sum() == pytest.approx(150 * 90, rel=0.03)


def test_mask_to_frame_with_roi_fills_outside():
    roi = (200, 100, 480, 270)  # half of 960x540, scale 384/270 * ... computed by make_letterbox
    lb = make_letterbox((540, 960), (384, 640), roi)
    mask = np.ones((384, 640), np.uint8)
    # A rectangle given in frame pixels inside the ROI, drawn where boxes_to_input puts it.
    box = np.array([[300, 150, 400, 250]], np.float32)
    bx1, by1, bx2, by2 = np.round(lb.boxes_to_input(box)[0]).astype(int)
    mask[by1:by2, bx1:bx2] = 2
    out = lb.mask_to_frame(mask, fill=255)
    x, y, w, h = roi
    assert np.all(out[:y] == 255) and np.all(out[y + h :] == 255)
    assert np.all(out[:, :x] == 255) and np.all(out[:, x + w :] == 255)
    assert np.all(np.isin(out[y : y + h, x : x + w], (1, 2)))
    np.testing.assert_allclose(bbox_of(out == 2), box[0], atol=1)


def test_mask_upsampling_is_centred_on_pixels():
    """Each frame pixel takes the class of the input pixel under its centre, like the bilinear image
    resize; plain INTER_NEAREST would round down and shift the mask up to one input pixel left/up."""
    lb = Letterbox((600, 1000), (384, 640), (0, 0, 1000, 600), 0.64, 0, 0)
    ids = np.tile((np.arange(640) % 3).astype(np.uint8), (384, 1))
    out = lb.input_to_roi(ids)
    x = np.arange(1000)
    src = (x + 0.5) * 0.64
    expected = (np.floor(src) % 3).astype(np.uint8)
    tie = np.abs(src - np.round(src)) < 1e-9  # the centre falls exactly on an input pixel edge: either
    np.testing.assert_array_equal(out[0][~tie], expected[~tie])
    assert tie.mean() < 0.4
