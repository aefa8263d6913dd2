"""Augmentation keeps image, mask and boxes consistent (perception/data/augment.py).

The core property: a scene whose mask marks each object with its own value (10, 11, ...) and whose boxes
are the exact extents of those regions; after any augmentation every kept box must still enclose its
object's remaining mask pixels, and (without rotation/perspective) be tight around them.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.data.augment import Augment, build_augment
from perception.data.boxes import boxes_from_instance_mask
from perception.data.sample import IGNORE, DatasetError, Sample
from perception.preprocess import Preprocessor, letterbox_geometry

OFF = dict(
    hflip_p=0.0,
    affine_p=0.0,
    perspective_p=0.0,
    brightness_contrast_p=0.0,
    gamma_p=0.0,
    hue_saturation_p=0.0,
    weather_p=0.0,
    blur_p=0.0,
    noise_p=0.0,
    jpeg_p=0.0,
)


def only(size: tuple[int, int], **kw) -> Augment:
    """A train pipeline with every transform off except those given."""
    return build_augment("train", size, **{**OFF, **kw})


def scene(h: int = 90, w: int = 160, seed: int = 0, name: str = "scene") -> Sample:
    """Road scene with objects of unique mask values 10.. and their exact boxes; labels = mask values."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)
    seg = np.zeros((h, w), np.uint8)
    seg[h // 2 :] = 1
    seg[h // 2 + 10 : h // 2 + 12] = 2  # a lane line
    # objects: cut by the left border, near the right border, an ellipse, a small sign, one on the bottom
    x0 = int(rng.integers(0, 10))
    seg[30:60, 0 : 20 + x0] = 10
    seg[20:45, w - 30 - x0 : w - 4] = 11
    cv2.ellipse(seg, (w // 2 + x0, h // 2), (18, 9), float(rng.integers(0, 90)), 0, 360, 12, -1)
    seg[8:12, 40 + x0 : 44 + x0] = 13
    seg[h - 15 : h, 50:75] = 14
    values = {v: v for v in (10, 11, 12, 13, 14)}
    boxes, labels, _ = boxes_from_instance_mask(seg, values)
    return Sample(image=image, name=name, seg=seg, lane_labelled=True, boxes=boxes, labels=labels, meta={"src": 1})


def check_consistent(out: Sample, tight: bool, values=(0, 1, 2, 10, 11, 12, 13, 14)) -> None:
    """Each kept box encloses its object's mask pixels (1 px slack); tight within 2 px if ``tight``."""
    seg = out.seg
    assert set(np.unique(seg).tolist()) <= set(values) | {IGNORE}
    height, width = seg.shape
    assert (out.boxes[:, 0::2] >= 0).all() and (out.boxes[:, 0::2] <= width).all()
    assert (out.boxes[:, 1::2] >= 0).all() and (out.boxes[:, 1::2] <= height).all()
    assert len(set(out.labels.tolist())) == len(out.labels)  # one box per object
    for (x1, y1, x2, y2), v in zip(out.boxes, out.labels, strict=True):
        ys, xs = np.nonzero(seg == v)
        if len(xs) == 0:
            assert not tight, f"object {v} kept with box {[x1, y1, x2, y2]} but no mask pixels left"
            continue
        ext = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # exclusive edges, like the boxes
        assert ext[0] >= x1 - 1 and ext[1] >= y1 - 1 and ext[2] <= x2 + 1 and ext[3] <= y2 + 1, (
            f"object {v}: mask extent {ext} not inside box {[x1, y1, x2, y2]}"
        )
        if tight:
            assert np.abs(np.subtract(ext, (x1, y1, x2, y2))).max() <= 2, (
                f"object {v}: box {[x1, y1, x2, y2]} not tight on mask extent {ext}"
            )
    # No silent false negatives: an object still visibly present in the mask keeps a box.
    for v in values:
        if v < 10:
            continue
        ys, xs = np.nonzero(seg == v)
        if len(xs) and xs.max() - xs.min() >= 3 and ys.max() - ys.min() >= 3:
            assert v in out.labels, f"object {v} visible in the mask ({len(xs)} px) but its box was dropped"


def test_flip_maps_box_to_hand_computed_mirror():
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    seg = np.zeros((40, 60), np.uint8)
    seg[5:9, 3:6] = 10  # columns 3..5, rows 5..8 → box (3, 5, 6, 9)
    sample = Sample(
        image, "f", seg=seg, boxes=np.array([[3, 5, 6, 9]], np.float32), labels=np.array([0]), ignore=np.array([True])
    )
    out = only((40, 60), hflip_p=1.0)(sample, rng_seed=0)
    # width 60: x1' = 60 - 6 = 54, x2' = 60 - 3 = 57; y unchanged
    np.testing.assert_array_equal(out.boxes, [[54, 5, 57, 9]])
    np.testing.assert_array_equal(out.image, image[:, ::-1])
    np.testing.assert_array_equal(out.seg, seg[:, ::-1])
    assert out.labels.tolist() == [0] and out.ignore.tolist() == [True]
    assert out.meta["augment"]["applied"] == ["HorizontalFlip"]
    np.testing.assert_allclose(out.meta["augment"]["matrix"], [[-1, 0, 60], [0, 1, 0], [0, 0, 1]], atol=1e-9)


def test_val_letterbox_matches_runtime_geometry_and_pads_mask_with_ignore():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)
    seg = rng.integers(0, 3, (60, 100), dtype=np.uint8)
    boxes = np.array([[10, 20, 30, 40], [0, 0, 100, 60]], np.float32)
    sample = Sample(image, "v", seg=seg, boxes=boxes, labels=np.array([1, 2]))
    out = build_augment("val", (64, 96))(sample)
    # Hand-computed: scale = min(64/60, 96/100) = 0.96, content 58x96, pad_y = (64 - 58) // 2 = 3, pad_x = 0.
    lb = letterbox_geometry((60, 100), (64, 96))
    assert (lb.scale, lb.pad_x, lb.pad_y, lb.content_hw) == (0.96, 0, 3, (58, 96))
    runtime, _ = Preprocessor((64, 96), pad_value=114)(image)
    np.testing.assert_array_equal(out.image, runtime)
    assert (out.image[:3] == 114).all() and (out.image[61:] == 114).all()
    assert (out.seg[:3] == IGNORE).all() and (out.seg[61:] == IGNORE).all()
    assert set(np.unique(out.seg[3:61]).tolist()) <= {0, 1, 2}
    np.testing.assert_array_equal(out.seg[3:61], cv2.resize(seg, (96, 58), interpolation=cv2.INTER_NEAREST_EXACT))
    np.testing.assert_allclose(out.boxes, [[9.6, 22.2, 28.8, 41.4], [0, 3, 96, 60.6]], atol=1e-4)
    np.testing.assert_allclose(out.meta["augment"]["matrix"], [[0.96, 0, 0], [0, 0.96, 3], [0, 0, 1]], atol=1e-6)
    assert out.meta["augment"]["applied"] == []


def test_train_with_everything_off_equals_val():
    sample = scene()
    a = only((96, 128))(sample, rng_seed=3)
    b = build_augment("val", (96, 128))(sample)
    for field in ("image", "seg", "boxes", "labels", "ignore"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize(
    "kw, tight",
    [
        (dict(hflip_p=1.0), True),
        (dict(affine_p=1.0, scale=(1.3, 1.5), translate=(-0.15, 0.15), rotate=(0, 0)), True),  # crop-like zoom
        (dict(affine_p=1.0, scale=(0.6, 0.8), translate=(-0.1, 0.1), rotate=(0, 0)), True),  # zoom out
        (dict(hflip_p=0.5, affine_p=1.0, scale=(0.75, 1.25), translate=(-0.2, 0.2), rotate=(0, 0)), True),
        (dict(affine_p=1.0, scale=(0.9, 1.1), rotate=(-15, 15)), False),  # rotation: boxes only enclose
        (dict(perspective_p=1.0, perspective_scale=(0.03, 0.08)), False),
    ],
    ids=["flip", "crop", "zoom-out", "affine", "rotate", "perspective"],
)
def test_boxes_follow_their_objects(kw, tight):
    augment = only((96, 128), **kw)
    for seed in range(12):
        check_consistent(augment(scene(seed=seed), rng_seed=seed), tight)


# Everything on, geometry and weather more often than the defaults.
_FULL = build_augment("train", (96, 128), hflip_p=0.5, affine_p=0.9, perspective_p=0.3, weather_p=0.3)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(scene_seed=st.integers(0, 1000), aug_seed=st.integers(0, 2**32))
def test_full_train_pipeline_keeps_boxes_on_objects(scene_seed, aug_seed):
    out = _FULL(scene(seed=scene_seed), rng_seed=aug_seed)
    assert out.image.shape == (96, 128, 3) and out.seg.shape == (96, 128)
    check_consistent(out, tight=False)


def test_visibility_rule_keeps_faint_boxes_as_ignore():
    """Shift by (+50, +25) px in a 200x100 image; visibilities hand-computed from the box sizes."""
    image = np.random.default_rng(4).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    seg = np.full((100, 200), 1, np.uint8)
    boxes = np.array(
        [
            [120, 10, 160, 50],  # → x 170..210, visible 30/40 = 0.75: kept
            [135, 50, 175, 70],  # → x 185..225, visible 15/40 = 0.375: kept
            [142, 10, 182, 30],  # → x 192..232, visible 8/40 = 0.2 < 0.25: kept as ignore
            [149, 40, 189, 60],  # → x 199..239, 1 px wide inside < 2: dropped
            [160, 50, 190, 70],  # → x 210..240, outside: dropped
            [10, 10, 20, 20],  # → 60..70, fully visible, already ignore: stays ignore
            [40, 70, 60, 90],  # → y 95..115, visible 5/20 = 0.25 exactly: kept, not ignored
        ],
        np.float32,
    )
    ignore = np.array([False, False, False, False, False, True, False])
    sample = Sample(image, "vis", seg=seg, boxes=boxes, labels=np.arange(7, dtype=np.int64), ignore=ignore)
    shift = only((100, 200), affine_p=1.0, scale=(1, 1), translate=(0.25, 0.25), rotate=(0, 0))
    out = shift(sample, rng_seed=0)
    np.testing.assert_allclose(
        out.boxes,
        [[170, 35, 200, 75], [185, 75, 200, 95], [192, 35, 200, 55], [60, 35, 70, 45], [90, 95, 110, 100]],
        atol=1e-3,
    )
    assert out.labels.tolist() == [0, 1, 2, 5, 6]
    assert out.ignore.tolist() == [False, False, True, True, False]
    assert out.meta["augment"]["boxes_dropped"] == 2 and out.meta["augment"]["boxes_ignored"] == 1
    assert (out.image[:25] == 114).all() and (out.image[:, :50] == 114).all()
    assert (out.seg[:25] == IGNORE).all() and (out.seg[:, :50] == IGNORE).all()
    np.testing.assert_array_equal(out.image[25:, 50:], image[:75, :150])
    np.testing.assert_array_equal(out.seg[25:, 50:], seg[:75, :150])
    np.testing.assert_allclose(out.meta["augment"]["matrix"], [[1, 0, 50], [0, 1, 25], [0, 0, 1]], atol=1e-9)


def test_pad_and_uncovered_areas_stay_pad_grey_after_photometric():
    sample = scene(seed=6)  # its mask has no IGNORE pixels, so IGNORE in the output marks pad / uncovered
    colour = dict(brightness_contrast_p=1.0, noise_p=1.0, jpeg_p=1.0, blur_p=1.0)
    zoom_out = only((96, 128), affine_p=1.0, scale=(0.6, 0.6), translate=(0.1, 0.1), rotate=(3, 3), **colour)
    plain = only((96, 128), **colour)  # letterbox bars only: 90x160 → 72x128 content, 12 px bars
    for augment in (zoom_out, plain):
        out = augment(sample, rng_seed=1)
        outside = out.seg == IGNORE
        assert 0.1 < outside.mean() < 0.9
        assert (out.image[outside] == 114).all()
        assert (out.image[~outside] != 114).any(axis=-1).mean() > 0.9
    assert outside[:12].all() and outside[84:].all() and not outside[12:84].any()


def test_partial_labels_stay_none_and_meta_is_kept():
    full = scene()
    no_seg = Sample(full.image, "a", seg=None, boxes=full.boxes, labels=full.labels, meta={"k": 1})
    no_box = Sample(full.image, "b", seg=full.seg, lane_labelled=True, boxes=None, labels=None)
    augment = build_augment("train", (96, 128), affine_p=1.0)
    for seed in range(3):
        a, b = augment(no_seg, seed), augment(no_box, seed)
        assert a.seg is None and a.boxes is not None and a.lane_labelled is False
        assert b.boxes is None and b.labels is None and b.ignore is None and b.seg is not None and b.lane_labelled
        assert a.meta["k"] == 1 and a.meta["augment"]["seed"] == seed
    assert no_seg.meta == {"k": 1}  # the input's meta is not touched
    empty = Sample(full.image, "c", boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64))
    out = augment(empty, 0)
    assert out.boxes.shape == (0, 4) and out.labels.shape == (0,)  # annotated-empty stays empty, not None


def test_inputs_not_mutated_and_seeds_are_reproducible():
    sample = scene(seed=5)
    copies = {f: getattr(sample, f).copy() for f in ("image", "seg", "boxes", "labels", "ignore")}
    augment = build_augment("train", (96, 128), affine_p=1.0, brightness_contrast_p=1.0, noise_p=1.0)
    a, b, c = augment(sample, 7), augment(sample, 7), augment(sample, 8)
    for f, v in copies.items():
        np.testing.assert_array_equal(getattr(sample, f), v)
    for f in ("image", "seg", "boxes", "labels", "ignore"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.boxes, c.boxes)
    # A fresh seed is recorded, and replaying it reproduces the sample.
    d = augment(sample)
    e = augment(sample, d.meta["augment"]["seed"])
    np.testing.assert_array_equal(d.image, e.image)
    np.testing.assert_array_equal(d.boxes, e.boxes)


def test_transforms_draw_independently():
    """Guards against albumentations' Compose(seed=...) giving each transform the same seed."""
    augment = only((90, 160), hflip_p=0.5, affine_p=0.5, brightness_contrast_p=0.5, gamma_p=0.5)
    geometric, photometric = set(), set()
    for seed in range(40):
        applied = augment(scene(), seed).meta["augment"]["applied"]
        geometric.add(("HorizontalFlip" in applied, "Affine" in applied))
        photometric.add(("RandomBrightnessContrast" in applied, "RandomGamma" in applied))
    assert geometric == photometric == {(False, False), (False, True), (True, False), (True, True)}


def test_matrix_maps_input_boxes_to_output_boxes():
    augment = only((96, 128), hflip_p=0.5, affine_p=1.0, scale=(0.6, 0.8), rotate=(0, 0), translate=(0, 0))
    sample = scene()
    for seed in range(5):
        out = augment(sample, seed)
        m = out.meta["augment"]["matrix"]
        x1, y1, x2, y2 = sample.boxes.T.astype(np.float64)
        pts = np.stack([np.stack([x1, y1, np.ones_like(x1)], 1), np.stack([x2, y2, np.ones_like(x1)], 1)], 1) @ m.T
        pts = pts[..., :2] / pts[..., 2:]
        mapped = np.concatenate([pts.min(1), pts.max(1)], 1)  # zoomed out: nothing cut
        kept = np.searchsorted(sample.labels, out.labels)  # the 4 px sign may fall under 2 px and drop
        np.testing.assert_allclose(out.boxes, mapped[kept], atol=1e-3)


def test_bad_arguments_and_bad_boxes_raise():
    with pytest.raises(ValueError, match=r"\['train', 'val'\]"):
        build_augment("test", (96, 128))
    with pytest.raises(ValueError, match="hflip_p"):
        build_augment("train", (96, 128), hflip_p=1.5)
    image = np.zeros((50, 50, 3), np.uint8)
    outside = Sample(image, "frames/0001.png", boxes=np.array([[60, 0, 70, 10]], np.float32), labels=np.array([0]))
    with pytest.raises(DatasetError, match="frames/0001.png"):
        build_augment("val", (64, 64))(outside)
    with pytest.raises(ValueError, match="rng_seed"):
        build_augment("val", (64, 64))(scene(), rng_seed=-1)


def test_real_camvid_frame():
    root = SHARED_DATA / "camvid"
    if not (root / "train").is_dir():
        pytest.skip(f"CamVid not found at {root} (set PERCEPTION_SHARED_DATA)")
    path = sorted((root / "train").glob("*.png"))[0]
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    raw = cv2.imread(str(root / "trainannot" / path.name), cv2.IMREAD_GRAYSCALE)
    lut = np.full(256, IGNORE, np.uint8)
    lut[:11] = 0
    lut[3] = 1  # Road → drivable
    seg = lut[raw]
    augment = build_augment("train", (192, 256), weather_p=0.5)
    for seed in range(4):
        out = augment(Sample(image, path.name, seg=seg), seed)
        assert out.image.shape == (192, 256, 3) and out.seg.shape == (192, 256)
        assert set(np.unique(out.seg).tolist()) <= {0, 1, IGNORE}
        assert (out.seg == 1).mean() > 0.05  # the road survives


def test_night_and_rain_darken_the_image_only_and_replay_with_their_seed():
    sample = scene(seed=7)
    base = only((96, 128))(sample, rng_seed=0)
    night = only((96, 128), night_p=1.0)
    out = night(sample, rng_seed=3)
    assert "NightDrive" in out.meta["augment"]["applied"]
    content = out.seg != IGNORE
    assert out.image[content].mean() < 0.6 * base.image[content].mean()
    assert (out.image[~content] == 114).all(), "letterbox bars stay the pad grey"
    np.testing.assert_array_equal(out.seg, base.seg)
    np.testing.assert_array_equal(out.boxes, base.boxes)
    np.testing.assert_array_equal(night(sample, rng_seed=3).image, out.image)
    rain = only((96, 128), rain_p=1.0)(sample, rng_seed=3)
    assert rain.meta["augment"]["applied"] == ["RandomRain"]
    assert not np.array_equal(rain.image, base.image)
    with pytest.raises(ValueError, match="night_p"):
        only((96, 128), night_p=1.5)


def test_night_glare_brightens_a_dark_frame_where_the_lights_are():
    from perception.data.augment import NightDrive

    t = NightDrive(gain=(0.2, 0.2), gamma=(1.5, 1.5), glares=(2, 2), p=1.0)
    img = np.full((60, 100, 3), 128, np.uint8)
    dark = t.apply(img, gain=0.2, gamma=1.5, cast=(1.0, 1.0, 1.0), lights=[])
    lit = t.apply(img, gain=0.2, gamma=1.5, cast=(1.0, 1.0, 1.0), lights=[(30.0, 30.0, 3.0, 1.0)])
    assert dark.max() == dark.min() == round(255 * (128 / 255) ** 1.5 * 0.2)
    assert lit[30, 30].min() > dark[30, 30].max() + 50 and lit[5, 90].max() == dark[5, 90].max()


def test_bonnet_is_background_cuts_the_boxes_it_covers_and_leaves_other_draws_alone():
    from perception.data.augment import Bonnet, _cut_by_bonnet
    from perception.data.synth.effects import hood_mask

    sample = scene(seed=7)
    plain = only((90, 160))(sample, rng_seed=5)
    out = only((90, 160), hood_p=1.0)(sample, rng_seed=5)
    assert out.meta["augment"]["applied"] == ["Bonnet"]
    covered = (out.image != plain.image).any(axis=2)
    assert covered[-1].all() and not covered[:60].any(), "the bottom rows only"
    assert (out.seg[covered] == 0).all(), "a bonnet is never road"
    np.testing.assert_array_equal(out.seg[~covered], plain.seg[~covered])
    # the object on the bottom edge (mask value 14, rows 75..89) is behind the bonnet: cut or gone
    assert out.boxes[:, 3].max() <= 90 and len(out.boxes) <= len(plain.boxes)
    # hood_p 0 is the plain pipeline bit for bit: the bonnet draws from its own stream
    np.testing.assert_array_equal(only((90, 160), hood_p=0.0)(sample, rng_seed=5).image, plain.image)
    # by hand: a flat bonnet edge at row 80 in a 100-row frame
    mask = np.zeros((100, 50), bool)
    mask[80:] = True
    boxes = np.array([[0, 10, 10, 50], [0, 60, 10, 90], [0, 70, 10, 100], [0, 85, 10, 95]], np.float32)
    b, labels, ignore = _cut_by_bonnet(boxes, np.arange(4), np.zeros(4, bool), mask)
    np.testing.assert_array_equal(b, [[0, 10, 10, 50], [0, 60, 10, 80], [0, 70, 10, 80]])
    assert labels.tolist() == [0, 1, 2] and ignore.tolist() == [False, False, True]
    assert hood_mask(100, 50, 0.1)[-1].all()
    with pytest.raises(ValueError, match="bonnet"):
        Bonnet(height=(0.2, 0.1))
