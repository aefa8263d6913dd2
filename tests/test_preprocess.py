"""Preprocessing: letterbox geometry, network input pixels, ROI, undistortion against OpenCV's two-step reference."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

from perception.camera_model import CameraModel
from perception.errors import ConfigError
from perception.frames import Frame, Letterbox
from perception.preprocess import Preprocessor, letterbox_geometry

INPUT_HW = (384, 640)
DIST = (-0.3, 0.1, 0.001, -0.001, 0.0)

# --------------------------------------------------------------------------------------------------------
# Helpers


def camera(width: int = 960, height: int = 540, dist=DIST) -> CameraModel:
    """fx = fy = 600 at 960x540 (scaled to the requested size), principal point at the centre."""
    s = width / 960
    k = ((600.0 * s, 0.0, width / 2), (0.0, 600.0 * s, height / 2), (0.0, 0.0, 1.0))
    return CameraModel(image_size=(width, height), camera_matrix=k, dist_coeffs=tuple(dist), name="test")


def smooth_frame(h: int = 540, w: int = 960, seed: int = 0) -> np.ndarray:
    """uint8 [h, w, 3] BGR: low-frequency gradients plus big blurred shapes (interpolation-friendly)."""
    return _smooth_frame(h, w, seed).copy()


@functools.cache
def _smooth_frame(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.arange(h, dtype=np.float64)[:, None], np.arange(w, dtype=np.float64)[None, :]
    chans = []
    for _ in range(3):
        px, py, ph = rng.uniform(120, 260), rng.uniform(100, 220), rng.uniform(0, 2 * np.pi)
        chans.append(127 + 55 * np.sin(2 * np.pi * xx / px + ph) + 45 * np.cos(2 * np.pi * yy / py - ph))
    img = np.clip(np.dstack(chans), 0, 255).astype(np.uint8)
    for _ in range(4):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(img, centre, int(rng.integers(40, 120)), colour, -1, cv2.LINE_AA)
    cv2.rectangle(img, (w // 5, h // 4), (w // 5 + w // 6, h // 4 + h // 5), (250, 250, 250), -1)
    return cv2.GaussianBlur(img, (0, 0), 2.0)


def plain_letterbox(image: np.ndarray, lb: Letterbox, pad: int = 114) -> np.ndarray:
    """Reference letterbox: crop the ROI, cv2.resize INTER_LINEAR to the content size, pad."""
    x, y, w, h = lb.roi_xywh
    ch, cw = lb.content_hw
    out = np.full((*lb.input_size, 3), pad, np.uint8)
    out[lb.pad_y : lb.pad_y + ch, lb.pad_x : lb.pad_x + cw] = cv2.resize(
        image[y : y + h, x : x + w], (cw, ch), interpolation=cv2.INTER_LINEAR
    )
    return out


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def bright_box(image: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 (pixel-edge coordinates) of the pixels brighter than mid-grey, float32 [1, 4]."""
    ys, xs = np.nonzero(image.max(axis=2) > 127)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)


# --------------------------------------------------------------------------------------------------------
# letterbox_geometry


def test_geometry_wide_frame_pads_y():
    lb = letterbox_geometry((540, 960), INPUT_HW)
    assert lb.scale == pytest.approx(2 / 3)
    assert lb.content_hw == (360, 640)
    assert (lb.pad_x, lb.pad_y) == (0, 12)
    assert lb.frame_size == (540, 960) and lb.input_size == INPUT_HW and lb.roi_xywh == (0, 0, 960, 540)


def test_geometry_tall_frame_pads_x():
    lb = letterbox_geometry((640, 480), INPUT_HW)  # portrait: H 640, W 480
    assert lb.scale == pytest.approx(0.6)
    assert lb.content_hw == (384, 288)
    assert (lb.pad_x, lb.pad_y) == (176, 0)


def test_geometry_top_left_pads_zero():
    lb = letterbox_geometry((540, 960), INPUT_HW, align="top-left")
    assert lb.scale == pytest.approx(2 / 3) and lb.content_hw == (360, 640)
    assert (lb.pad_x, lb.pad_y) == (0, 0)
    lb = letterbox_geometry((640, 480), INPUT_HW, align="top-left")
    assert (lb.pad_x, lb.pad_y) == (0, 0) and lb.content_hw == (384, 288)


def test_geometry_roi():
    lb = letterbox_geometry((540, 960), INPUT_HW, (0, 270, 960, 270))
    assert lb.scale == pytest.approx(2 / 3)
    assert lb.content_hw == (180, 640)
    assert (lb.pad_x, lb.pad_y) == (0, 102)
    assert lb.roi_xywh == (0, 270, 960, 270)


def test_geometry_odd_padding_and_exact_fit():
    lb = letterbox_geometry((70, 100), (64, 64))  # scale 0.64: content 64 x 44.8 → 45 rows, 19 rows of padding
    assert lb.content_hw == (45, 64) and (lb.pad_x, lb.pad_y) == (0, 9)
    lb = letterbox_geometry((384, 640), INPUT_HW)
    assert lb.scale == 1.0 and lb.content_hw == INPUT_HW and (lb.pad_x, lb.pad_y) == (0, 0)
    lb = letterbox_geometry((1080, 1920), INPUT_HW)  # upscale-free 16:9 → 640x360
    assert lb.content_hw == (360, 640) and lb.pad_y == 12


def test_geometry_unknown_align_raises():
    with pytest.raises(ValueError, match="center"):
        letterbox_geometry((540, 960), INPUT_HW, align="centre")


def test_preprocessor_unknown_align_raises():
    with pytest.raises(ValueError, match="center"):
        Preprocessor(INPUT_HW, align="middle")


# --------------------------------------------------------------------------------------------------------
# Preprocessor: plain letterbox


def test_output_dtype_shape_and_padding():
    frame = smooth_frame()
    out, lb = Preprocessor(INPUT_HW)(frame)
    assert out.dtype == np.uint8 and out.shape == (384, 640, 3)
    assert lb == letterbox_geometry((540, 960), INPUT_HW)
    assert np.all(out[:12] == 114) and np.all(out[372:] == 114)
    out, _ = Preprocessor(INPUT_HW, pad_value=0)(frame)
    assert np.all(out[:12] == 0) and np.all(out[372:] == 0)


def test_padding_band_tall_frame():
    out, lb = Preprocessor(INPUT_HW)(smooth_frame(640, 480))
    assert (lb.pad_x, lb.content_hw) == (176, (384, 288))
    assert np.all(out[:, :176] == 114) and np.all(out[:, 176 + 288 :] == 114)


def test_content_equals_cv2_resize():
    frame = smooth_frame(seed=1)
    out, lb = Preprocessor(INPUT_HW)(frame)
    expected = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(lb.crop_content(out), expected)
    np.testing.assert_array_equal(out, plain_letterbox(frame, lb))


def test_frame_object_and_array_give_same_result():
    image = smooth_frame(seed=2)
    pre = Preprocessor(INPUT_HW)
    a, lb_a = pre(image)
    b, lb_b = pre(Frame(0, 0.0, image))
    np.testing.assert_array_equal(a, b)
    assert lb_a == lb_b


def test_rgb_swaps_channels():
    frame = smooth_frame(seed=3)
    bgr, _ = Preprocessor(INPUT_HW, color="BGR")(frame)
    rgb, _ = Preprocessor(INPUT_HW, color="RGB")(frame)
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])
    assert not np.array_equal(rgb, bgr)


def test_bad_color_raises():
    with pytest.raises(ValueError, match="RGB"):
        Preprocessor(INPUT_HW, color="GRAY")


def test_roi_region_fills_content():
    frame = np.full((540, 960, 3), (0, 0, 255), np.uint8)
    roi = (50, 100, 640, 300)
    frame[100:400, 50:690] = (10, 200, 30)
    out, lb = Preprocessor(INPUT_HW, roi_xywh=roi)(frame)
    assert lb.roi_xywh == roi
    ch, cw = lb.content_hw
    assert (ch, cw) == (300, 640) and lb.pad_y == 42
    content = lb.crop_content(out)
    assert np.all(content == (10, 200, 30))
    mask = np.ones((384, 640), bool)
    mask[lb.pad_y : lb.pad_y + ch, lb.pad_x : lb.pad_x + cw] = False
    assert np.all(out[mask] == 114)


@pytest.mark.parametrize("roi", [(0, 0, 961, 540), (0, 300, 960, 241), (-1, 0, 100, 100), (0, 0, 0, 100)])
def test_roi_that_does_not_fit_raises(roi):
    pre = Preprocessor(INPUT_HW, roi_xywh=roi)
    with pytest.raises(ConfigError, match="960x540"):
        pre(smooth_frame())
    with pytest.raises(ConfigError):
        pre.letterbox_for((540, 960))


def test_input_is_never_modified():
    frame = smooth_frame(seed=4)
    frame.flags.writeable = False  # read-only input works
    before = frame.copy()
    for kwargs in (
        {},
        {"color": "RGB"},
        {"roi_xywh": (0, 0, 640, 384)},  # scale 1: content is the crop itself
        {"roi_xywh": (0, 0, 640, 384), "color": "RGB"},
        {"camera": camera(), "undistort": True},
    ):
        out, _ = Preprocessor(INPUT_HW, **kwargs)(frame)
        np.testing.assert_array_equal(frame, before)
        assert not np.shares_memory(out, frame)
        assert out.flags.writeable


def test_scale_one_roi_is_exact_crop():
    frame = smooth_frame(seed=5)
    out, lb = Preprocessor(INPUT_HW, roi_xywh=(100, 50, 640, 384))(frame)
    assert lb.scale == 1.0
    np.testing.assert_array_equal(out, frame[50:434, 100:740])


@pytest.mark.parametrize(
    "frame_hw, roi, box",
    [
        ((540, 960), None, (301, 152, 505, 317)),
        ((720, 1280), None, (100, 400, 171, 611)),
        ((640, 480), None, (40, 300, 441, 350)),
        ((540, 960), (120, 200, 700, 300), (301, 252, 505, 417)),
    ],
)
def test_rectangle_lands_where_letterbox_predicts(frame_hw, roi, box):
    frame = np.zeros((*frame_hw, 3), np.uint8)
    x1, y1, x2, y2 = box
    frame[y1:y2, x1:x2] = 255  # pixel-edge box (x1, y1, x2, y2) in frame pixels
    out, lb = Preprocessor(INPUT_HW, roi_xywh=roi)(frame)
    predicted = lb.boxes_to_input(np.array([box], np.float32))
    found = bright_box(out)
    np.testing.assert_allclose(found, predicted, atol=1.5)
    np.testing.assert_allclose(lb.boxes_to_frame(found), [box], atol=1.5)


# --------------------------------------------------------------------------------------------------------
# Plan caching


def test_repeated_calls_identical_and_second_size():
    pre = Preprocessor(INPUT_HW)
    frame = smooth_frame(seed=6)
    a, lb_a = pre(frame)
    b, lb_b = pre(frame)
    np.testing.assert_array_equal(a, b)
    assert lb_a == lb_b
    assert pre.letterbox_for((540, 960)) is pre.letterbox_for((540, 960))
    assert not np.shares_memory(a, b)  # each call returns a fresh array

    big = smooth_frame(720, 1280, seed=7)
    c, lb_c = pre(big)
    assert lb_c.frame_size == (720, 1280) and lb_c.scale == pytest.approx(0.5)
    np.testing.assert_array_equal(c, plain_letterbox(big, lb_c))
    d, lb_d = pre(frame)  # the first size still uses its own plan
    np.testing.assert_array_equal(d, a)
    assert lb_d == lb_a


def test_repeated_calls_identical_with_undistortion():
    pre = Preprocessor(INPUT_HW, camera=camera(), undistort=True)
    frame = smooth_frame(seed=8)
    a, _ = pre(frame)
    b, _ = pre(frame)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------------------
# Undistortion


def reference_undistorted(frame: np.ndarray, cam: CameraModel, lb: Letterbox) -> np.ndarray:
    """Two-step reference: cv2.undistort at frame resolution (same K), then the plain letterbox."""
    h, w = frame.shape[:2]
    cam = cam.scaled_to(w, h)
    return plain_letterbox(cv2.undistort(frame, cam.K, cam.D), lb)


@pytest.mark.parametrize("seed", [0, 1])
def test_undistort_matches_two_step_reference(seed):
    frame = smooth_frame(seed=seed)
    cam = camera()
    out, lb = Preprocessor(INPUT_HW, camera=cam, undistort=True)(frame)
    assert lb == letterbox_geometry((540, 960), INPUT_HW)  # undistortion keeps the frame geometry
    ref = reference_undistorted(frame, cam, lb)
    not_undistorted = plain_letterbox(frame, lb)
    err = mad(lb.crop_content(out), lb.crop_content(ref))
    baseline = mad(lb.crop_content(not_undistorted), lb.crop_content(ref))
    assert err < 3.0, err
    assert err < baseline / 5, (err, baseline)
    assert np.all(out[:12] == 114) and np.all(out[372:] == 114)


def test_undistort_with_roi_matches_reference():
    frame = smooth_frame(seed=9)
    cam = camera()
    roi = (80, 200, 800, 300)
    out, lb = Preprocessor(INPUT_HW, camera=cam, undistort=True, roi_xywh=roi)(frame)
    assert lb.roi_xywh == roi
    ref = reference_undistorted(frame, cam, lb)
    err = mad(lb.crop_content(out), lb.crop_content(ref))
    baseline = mad(lb.crop_content(plain_letterbox(frame, lb)), lb.crop_content(ref))
    assert err < 3.0 and err < baseline / 5, (err, baseline)


def test_zero_distortion_is_plain_letterbox():
    frame = smooth_frame(seed=10)
    cam = camera(dist=(0.0, 0.0, 0.0, 0.0, 0.0))
    out, lb = Preprocessor(INPUT_HW, camera=cam, undistort=True)(frame)
    plain, lb_plain = Preprocessor(INPUT_HW)(frame)
    assert lb == lb_plain
    assert mad(out, plain) < 0.5
    assert int(np.abs(out.astype(int) - plain.astype(int)).max()) <= 3
    no_coeffs, _ = Preprocessor(INPUT_HW, camera=camera(dist=()), undistort=True)(frame)
    assert mad(no_coeffs, plain) < 0.5


def test_camera_without_undistort_is_plain_letterbox():
    frame = smooth_frame(seed=11)
    out, _ = Preprocessor(INPUT_HW, camera=camera(), undistort=False)(frame)
    plain, _ = Preprocessor(INPUT_HW)(frame)
    np.testing.assert_array_equal(out, plain)


def test_camera_calibrated_at_1280x720_scales_to_960x540():
    frame = smooth_frame(seed=12)
    cam_hd = camera(1280, 720)
    assert cam_hd.K[0, 0] == pytest.approx(800) and cam_hd.K[0, 2] == 640
    hd, lb = Preprocessor(INPUT_HW, camera=cam_hd, undistort=True)(frame)
    native, _ = Preprocessor(INPUT_HW, camera=camera(), undistort=True)(frame)
    assert mad(hd, native) < 0.1
    ref = reference_undistorted(frame, camera(), lb)
    assert mad(lb.crop_content(hd), lb.crop_content(ref)) < 3.0


def test_other_aspect_ratio_raises_config_error():
    pre = Preprocessor(INPUT_HW, camera=camera(), undistort=True)
    with pytest.raises(ConfigError, match="aspect ratio"):
        pre(smooth_frame(480, 640))  # 4:3 frame, 16:9 camera


def test_undistort_without_camera_raises():
    with pytest.raises(ValueError, match="camera"):
        Preprocessor(INPUT_HW, undistort=True)


@pytest.mark.parametrize("distorted", [False, True])
def test_image_to_ground_inverts_projection_of_ground_points(distorted):
    """``image_to_ground(distorted=True)`` undoes ``project(distort=True)``: lanes and box contacts are
    placed from the frame's own pixels when the frame was not undistorted."""
    from dataclasses import replace

    from perception.camera_model import Mounting

    cam = replace(camera(640, 360, dist=(-0.2, 0.05, 0.0, 0.0, 0.0)), mounting=Mounting(1.4, 2.0, 0.5, 0.3))
    ground = np.array([[6.0, 1.8, 0.0], [15.0, -1.7, 0.0], [30.0, 3.5, 0.0], [45.0, 0.0, 0.0]])
    uv, depth = cam.project(ground, distort=distorted)
    assert np.all(depth > 0) and np.all(np.isfinite(uv))
    back = cam.image_to_ground(uv, distorted=distorted)
    np.testing.assert_allclose(back, ground[:, :2], rtol=1e-5, atol=1e-4)
    if distorted:  # the same pixels read as pinhole pixels land elsewhere
        assert np.abs(cam.image_to_ground(uv) - ground[:, :2]).max() > 0.05
